"""Worker entrypoints: which workflows and activities run on which task queue."""
