"""The management API (FastAPI): one module per resource area."""
