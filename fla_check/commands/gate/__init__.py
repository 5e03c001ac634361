"""``fla-check gate`` and ``fla-check compare``: re-run or diff run reports, case by case."""
