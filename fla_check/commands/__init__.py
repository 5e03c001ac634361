"""One subpackage per CLI command: its engine (the work) and its renderer (the tables)."""
