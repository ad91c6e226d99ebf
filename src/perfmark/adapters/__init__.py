"""Adapters to the outside world: the SQL store, the event lake, the write-ahead log, HTTP."""
