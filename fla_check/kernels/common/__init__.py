"""Kernels shared by several ops: chunk-local gate cumsum and the delta-rule UT transform."""
