"""Optimizer use cases: rules, experiments, budget allocation and bids over the reports."""
