"""The HTTP face of perfmark: tracking endpoints, the management API and the dashboard."""
