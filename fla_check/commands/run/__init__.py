"""``fla-check run`` and ``fla-check replay``: the search (``fla_check.engine``) and its renderer."""
