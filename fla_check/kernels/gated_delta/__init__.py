"""Gated DeltaNet entry points: thin wrappers over the shared delta-rule kernels with USE_G."""
