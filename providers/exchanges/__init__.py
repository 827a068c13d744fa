"""Execution adapters for liquidity providers (docs/architecture.md §C.2)."""
