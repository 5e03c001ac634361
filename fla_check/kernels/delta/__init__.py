"""DeltaNet kernels. The implementations take an optional per-head gate (USE_G) and are shared
with Gated DeltaNet (fla_check.kernels.gated_delta wraps them)."""
