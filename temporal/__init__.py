"""Temporal plumbing shared by the API, the workers and the tests: client, converter, queues, attributes."""
