"""Background work: the event processor and scheduled jobs."""
