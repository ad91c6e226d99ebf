"""Pure business rules: imports only the standard library, perfmark's value modules and itself."""
