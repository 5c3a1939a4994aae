"""SQLite for the embedded mode: Django's own backend, with one process's writers queued on one lock."""
