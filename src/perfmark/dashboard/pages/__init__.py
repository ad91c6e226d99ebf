"""The dashboard's pages: each parses its input, calls a service and renders a template."""
