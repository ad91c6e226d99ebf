"""Billing: pricing, budgets and caps, the double-entry ledger, statements and postbacks."""

__all__: list[str] = []
