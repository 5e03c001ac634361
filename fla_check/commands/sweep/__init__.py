"""``fla-check sweep-mask-values``: which reset-mask gate fills are safe, per mode and dtype."""
