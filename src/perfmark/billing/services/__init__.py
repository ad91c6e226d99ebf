"""Billing use cases: posting, budgets and holds, approvals, statements, postbacks."""

__all__: list[str] = []
