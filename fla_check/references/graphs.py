"""A step loop over time run as a CUDA graph of a window of steps, replayed window after window.

On a GPU the float64 reference's loop is bound by the host: a step is a few tiny ops, each a launch
of microseconds (the batched reference of 64 cases at T = 1024 took 2.2-2.7 ms per case, 104-161
launches, docs/gpu/perf-h200-33). A graph of :data:`WINDOW` steps, captured once per shape and
replayed, launches a window's kernels in one call: per window the inputs are copied into the
graph's static buffers, the graph replayed (it leaves the new state in its state buffer) and the
outputs copied out. The kernels are the loop's own, on the same shapes: the same results (tests
compare bits on a GPU). A graph has a power of two of rows, so batches of nearby sizes share it:
a loop of fewer rows uses the first ones (the others hold what an earlier loop left there; every op
of a step is per row). The last ``T % WINDOW`` steps run eagerly.

Only for deterministic loops: a captured random draw would replay the same numbers.
"""
from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from typing import Callable, Hashable, Optional, Sequence

import torch
from torch import Tensor

# body(state, inputs with time on dim 1) -> (outputs [R, T, ...], final state)
Body = Callable[[Tensor, Sequence[Optional[Tensor]]], tuple[Tensor, Tensor]]

WINDOW = 32  # steps per graph
GRAPHS_KEPT = 4  # graphs kept (least recently used dropped, its memory pool with it)
MAX_STATE_BYTES = 64 * 2**20  # larger states: the device's work dominates, the loop runs eagerly

_graphs: "OrderedDict[Hashable, _WindowGraph]" = OrderedDict()
_failed: set = set()  # keys whose capture raised: eager from then on
_lock = threading.Lock()  # a graph's static buffers hold one loop at a time


def over_windows(body: Body, key: Hashable, state: Tensor, inputs: Sequence[Optional[Tensor]]) -> tuple[Tensor, Tensor]:
    """``body(state, inputs)``, on a GPU window by window through a captured graph (`key` names the
    body: loops of one key, shape and dtypes share a graph); eagerly on a CPU, for fewer steps than
    two windows, for a state of more than :data:`MAX_STATE_BYTES`, or where the capture failed."""
    T = inputs[0].shape[1]
    if not state.is_cuda or T < 2 * WINDOW or state.nbytes > MAX_STATE_BYTES:
        return body(state, inputs)
    rows = 1 << max(0, state.shape[0] - 1).bit_length()
    full = (key, rows, tuple(state.shape[1:]), state.dtype, state.device,
            tuple(None if x is None else (tuple(x.shape[2:]), x.dtype) for x in inputs))
    with _lock:
        graph = _graph(full, body, rows, state, inputs)
        if graph is None:
            return body(state, inputs)
        return windowed(graph.run, body, state, inputs, WINDOW)


def windowed(run: Body, body: Body, state: Tensor, inputs: Sequence[Optional[Tensor]],
             window: int) -> tuple[Tensor, Tensor]:
    """`body` over `inputs` as ``run`` of each whole window of `window` steps in turn (the state
    carried from one to the next), then ``body`` of the steps left: (outputs, final state)."""
    T = inputs[0].shape[1]
    whole = T // window * window
    out: Optional[Tensor] = None
    for t0 in list(range(0, whole, window)) + ([whole] if whole < T else []):
        part = [None if x is None else x[:, t0:t0 + window] for x in inputs]
        o, state = (run if t0 < whole else body)(state, part)
        if out is None:
            out = o.new_empty((o.shape[0], T) + tuple(o.shape[2:]))
        out[:, t0:t0 + o.shape[1]].copy_(o)
    return out, state.clone()


def _graph(key: Hashable, body: Body, rows: int, state: Tensor,
           inputs: Sequence[Optional[Tensor]]) -> Optional["_WindowGraph"]:
    """The graph of `key`, captured now if not kept; None where its capture failed."""
    if key in _failed:
        return None
    graph = _graphs.get(key)
    if graph is not None:
        _graphs.move_to_end(key)
        return graph
    try:
        graph = _WindowGraph(body, rows, state, [None if x is None else x[:, :WINDOW] for x in inputs])
    except RuntimeError as exc:  # a graph is an optimization: the loop runs eagerly instead
        _failed.add(key)
        warnings.warn(f"fla-check: the reference loop runs without a CUDA graph (its capture failed: {exc})",
                      RuntimeWarning, stacklevel=3)
        return None
    _graphs[key] = graph
    while len(_graphs) > GRAPHS_KEPT:
        _graphs.popitem(last=False)
    return graph


class _WindowGraph:
    """One window of `body` captured on static buffers of `rows` rows."""

    def __init__(self, body: Body, rows: int, state: Tensor, window: Sequence[Optional[Tensor]]):
        self.state = state.new_zeros((rows,) + tuple(state.shape[1:]))
        self.inputs = [None if x is None else x.new_zeros((rows,) + tuple(x.shape[1:])) for x in window]
        device = state.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # a run before the capture: lazily made workspaces (cuBLAS) exist then
            body(self.state.clone(), self.inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.out, new = body(self.state, self.inputs)
            self.state.copy_(new)

    def run(self, state: Tensor, window: Sequence[Optional[Tensor]]) -> tuple[Tensor, Tensor]:
        """The window's outputs (rows of `state`) and the new state (the graph's buffer: valid until
        its next run) from `state` (copied in unless it is that buffer already)."""
        n = state.shape[0]
        if state.data_ptr() != self.state.data_ptr():  # not the state this graph left: copied in
            self.state[:n].copy_(state)
        for buffer, x in zip(self.inputs, window):
            if buffer is not None:
                buffer[:n].copy_(x)
        self.graph.replay()
        return self.out[:n], self.state[:n]
