"""Where a recurrent kernel's state tile lies in its initial / final state tensors.

The built-in recurrent kernels keep the state tile S[BK, BV] (key rows, value columns) in
registers. Their state arguments (h0, ht, and dht, dh0 in the backward kernels) are [N, H, K, V]
(row stride V, fla's default) or, with ``state_v_first``, [N, H, V, K] (row stride K: fla's
``state_v_first=True``); the tile is loaded and stored at the offsets of the layout, so a
V-first state never goes through a host-side transpose.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def state_offsets(i_nh, o_k, o_v, K, V, V_FIRST: tl.constexpr):
    """[BK, BV] int64 offsets of state i_nh's tile (rows o_k, columns o_v) in a [.., K, V]
    state tensor (offset k*V + v) or, V_FIRST, a [.., V, K] one (offset v*K + k)."""
    base = tl.cast(i_nh, tl.int64) * K * V
    if V_FIRST:
        offsets = base + o_v[None, :] * K + o_k[:, None]
    else:
        offsets = base + o_k[:, None] * V + o_v[None, :]
    return offsets
