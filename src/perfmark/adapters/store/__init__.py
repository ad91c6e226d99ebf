"""The SQL store (SQLAlchemy 2): configuration, money, counters and queues."""
