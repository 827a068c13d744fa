"""The customer and admin HTTP API (FastAPI)."""
