"""Synthetic traffic through the real endpoints: the demo's history and the market simulator."""
