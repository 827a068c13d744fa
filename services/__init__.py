"""Domain logic with no Temporal and no HTTP in it: ledger, router, limits, passwords, rules."""
