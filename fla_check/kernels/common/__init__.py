"""Kernels shared by several ops: chunk-local gate cumsum, the delta-rule UT transform, and the
varlen prologue helpers (sequence and chunk bounds from cu_seqlens) every kernel calls."""
