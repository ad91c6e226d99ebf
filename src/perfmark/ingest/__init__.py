"""Tracking ingest: each request becomes an event through named steps, or a typed drop."""
