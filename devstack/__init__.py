"""Local infrastructure for development and tests: embedded PostgreSQL, the Temporal dev server,
the sandboxes, the workers and the API, started and stopped as one stack.

The Makefile calls `python -m devstack <command>`; the test suite imports the same pieces.
"""
