"""Kernels shared by several ops: chunk-local gate cumsum, the delta-rule UT transform, and the
varlen prologue helpers (sequence and chunk bounds from cu_seqlens) every kernel calls, and the
recurrent kernels' state offsets ([K, V] or V-first [V, K] initial and final states)."""
