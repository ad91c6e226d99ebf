"""Optimization: rules, experiments, bandits, budget allocation and bid recommendations."""
