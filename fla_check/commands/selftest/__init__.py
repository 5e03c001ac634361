"""``fla-check selftest``: plant known kernel bugs (mutants) and check the search catches each."""
