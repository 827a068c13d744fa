"""Temporal workflows: one module per saga. No I/O here; activities do it."""
