"""ModeSpec declarations of chunk size and state layout: what a mode is called with, how it is
judged, and why it is UNSUPPORTED."""
import dataclasses

import torch

from fla_check import ops
from fla_check.ops import ModeSpec

KW = dict(dtype=torch.float32, varlen=False, initial_state=True, backward=False, interpreter=False)


def _mode(op: str, name: str) -> ModeSpec:
    return ops.get_mode(ops.get_op(op), name)


def test_builtin_chunk_modes_take_chunk_sizes_and_are_judged_at_that_chunk_length():
    for op in ops.OPS:
        chunk = _mode(op, "chunk")
        assert chunk.chunk_sizes == {16, 32, 64} and chunk.chunked
        for size in (16, 32, 64):
            assert chunk.unsupported_reason(**KW, chunk_size=size) is None
            assert chunk.takes_chunk_size(size) and chunk.declared(size) == dataclasses.replace(
                chunk.arithmetic, chunk=size)
        assert chunk.declared(None) == chunk.arithmetic and not chunk.takes_chunk_size(None)


def test_recurrent_modes_run_chunk_size_cases_unchanged():
    for op in ops.OPS:
        rec = _mode(op, "recurrent")
        assert not rec.chunked and rec.unsupported_reason(**KW, chunk_size=16) is None
        assert not rec.takes_chunk_size(16) and rec.declared(16) == rec.arithmetic


def test_fixed_chunk_and_kv_only_modes_say_why():
    fused = _mode("gla", "fused_chunk")
    assert fused.unsupported_reason(**KW, chunk_size=32) == (
        "builtin:fused_chunk does not support chunk_size=32: its chunk length is fixed (BT=16)")
    for op in ops.OPS:
        for mode in ops.get_op(op).modes.values():
            if mode.provider == "builtin" and mode.chunked:
                assert mode.unsupported_reason(**KW, state_v_first=True) == (
                    f"{mode.qualified} does not support state_v_first ([V, K] states): the built-in chunk kernels "
                    "index their states [K, V]")


def test_builtin_recurrent_modes_take_v_first_states():
    """Every built-in recurrent kernel indexes h0 / ht (dht / dh0) by the STATE_V_FIRST layout."""
    for op in ops.OPS:
        rec = _mode(op, "recurrent")
        assert rec.state_v_first and rec.unsupported_reason(**KW, state_v_first=True) is None
        assert rec.unsupported_reason(**{**KW, "backward": rec.backward, "varlen": True}, state_v_first=True) is None


def test_a_mode_that_declares_state_v_first_runs_v_first_cases():
    mode = ModeSpec("vk", "test", lambda *a, **kw: None, state_v_first=True)
    assert mode.unsupported_reason(**KW, state_v_first=True) is None
    assert ModeSpec("kv", "test", lambda *a, **kw: None).unsupported_reason(**KW, state_v_first=True) == (
        "test:kv does not support state_v_first ([V, K] states)")
