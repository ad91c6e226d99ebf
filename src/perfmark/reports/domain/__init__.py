"""Pure report rules: the metric and dimension catalog, requests, derived metrics, calendars."""
