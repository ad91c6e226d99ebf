"""Pure billing rules: imports only the standard library, perfmark's value modules and itself."""

__all__: list[str] = []
