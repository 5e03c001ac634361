"""Run cases through modes and search the case space: runner, search, simplify, gradients, profiles, sharding."""
