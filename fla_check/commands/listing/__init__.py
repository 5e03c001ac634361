"""``fla-check list``: ops, modes, providers, backend and its capabilities."""
