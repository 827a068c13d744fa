"""Thin, idempotent Temporal activities over `services/` and `providers/`."""
