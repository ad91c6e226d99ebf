"""Use cases: one module per area, taking and returning plain frozen data."""
