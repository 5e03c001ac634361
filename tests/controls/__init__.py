"""Honest control kernels for the verdict's tests (plain torch, no Triton)."""
