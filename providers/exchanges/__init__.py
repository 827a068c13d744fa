"""Execution adapters for liquidity providers (seed §C.2)."""
