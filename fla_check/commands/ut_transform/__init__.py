"""``fla-check ut-transform``: the UT/WY transform of the delta rule against float64."""
