"""Pure optimization math: statistics, allocation and rules, with no I/O."""
