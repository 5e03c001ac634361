"""fla_check.references.graphs: a loop run window by window gives the bits of the whole loop (every
op's plain step loop, ragged rows, a tail shorter than a window); on a GPU the captured graph
replayed gives the eager loop's results, is shared by loops of nearby row counts, carries each
loop's own state in, and a failed capture falls back to the eager loop with a warning."""
import functools

import pytest
import torch

from fla_check.references import graphs
from fla_check.references.recurrence import DECAYED, _plain_steps, batched_readout
from fla_check.ops import get_op

OPS = ("gla", "simple_gla", "delta", "gated_delta", "kda")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


def _loop_inputs(op: str, rows: int, T: int, K: int = 5, V: int = 3, seed: int = 0, device: str = "cpu",
                 ragged: bool = True, read=None):
    """A plain loop's body (readouts of the form `read`), state and inputs (scaled q, k, v, decay,
    beta, running, keep) for `op`, rows of one head, float64; with `ragged`, rows stopping at their
    own lengths."""
    gen = torch.Generator().manual_seed(seed)
    spec = get_op(op)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    q, k, v = rand(rows, T, 1, K) * K**-0.5, rand(rows, T, 1, K) / K**0.5, rand(rows, T, 1, V)
    g = None
    if spec.gate == "key":
        g = -torch.rand(rows, T, 1, K, generator=gen, dtype=torch.float64)
    elif spec.gate == "head":
        g = -torch.rand(rows, T, 1, generator=gen, dtype=torch.float64)
    beta = torch.rand(rows, T, 1, generator=gen, dtype=torch.float64) if spec.has_beta else None
    step = spec.step
    if g is not None and step in DECAYED:
        step, g = DECAYED[step], g.exp()
    lengths = torch.randint(T // 2, T + 1, (rows,), generator=gen) if ragged else None
    running = None if lengths is None else torch.arange(T)[None, :] < lengths[:, None]
    state = rand(rows, 1, K, V)
    xs = [q, k, v, g, beta, running, None]
    move = lambda x: None if x is None else x.to(device)  # noqa: E731
    return functools.partial(_plain_steps, step, read=read), step, move(state), [move(x) for x in xs]


def _bits(x: torch.Tensor) -> torch.Tensor:
    return x.view(torch.int64)


READS = pytest.mark.parametrize("read", [None, batched_readout], ids=["sum", "bmm"])


@READS
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("window", [1, 4, 7, 13])
def test_window_by_window_gives_the_bits_of_the_whole_loop(op, window, read):
    body, _, state, xs = _loop_inputs(op, rows=3, T=13, seed=window, read=read)
    o, ht = body(state, xs)
    o_w, ht_w = graphs.windowed(body, body, state, xs, window)
    assert torch.equal(_bits(o), _bits(o_w)) and torch.equal(_bits(ht), _bits(ht_w))


def test_a_window_that_drops_the_carried_state_is_seen():
    """The comparison above fails when a window starts from the initial state instead of the
    carried one (what a graph that did not copy its state in would do)."""
    body, _, state, xs = _loop_inputs("gated_delta", rows=3, T=13)
    o, _ = body(state, xs)
    stale = lambda s, part: body(state, part)  # noqa: E731
    o_w, _ = graphs.windowed(stale, body, state, xs, 4)
    assert torch.equal(o[:, :4], o_w[:, :4]) and not torch.equal(o[:, 4:8], o_w[:, 4:8])


def test_the_cpu_runs_the_loop_whole(monkeypatch):
    """No graph and no windows on a CPU: the body is called once, on the whole sequence (and no graph kept:
    the cache starts empty here, as a GPU host's worker may have captured graphs in earlier tests)."""
    monkeypatch.setattr(graphs, "_graphs", type(graphs._graphs)())
    body, step, state, xs = _loop_inputs("gla", rows=2, T=4 * graphs.WINDOW)
    calls = []
    o, _ = graphs.over_windows(lambda s, part: calls.append(part[0].shape[1]) or body(s, part), step, state, xs)
    assert calls == [4 * graphs.WINDOW] and not graphs._graphs


@cuda
@READS
@pytest.mark.parametrize("op", OPS)
def test_the_replayed_graph_gives_the_eager_results(op, read):
    """Rows not a power of two, T not a multiple of the window, ragged rows; then a loop of fewer
    rows and another state through the same graph (the graph's rows padded, its state copied in)."""
    graphs._graphs.clear()
    T = 2 * graphs.WINDOW + 5
    for rows, seed in ((6, 0), (5, 1)):
        body, step, state, xs = _loop_inputs(op, rows=rows, T=T, K=16, V=8, seed=seed, device="cuda", read=read)
        o, ht = body(state, xs)
        o_g, ht_g = graphs.over_windows(body, step, state, xs)
        assert len(graphs._graphs) == 1
        torch.testing.assert_close(o_g, o, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(ht_g, ht, rtol=1e-14, atol=1e-14)
        assert torch.equal(_bits(o_g), _bits(o)) and torch.equal(_bits(ht_g), _bits(ht)), "not bit for bit"


@cuda
def test_a_failed_capture_runs_the_loop_eagerly(monkeypatch):
    graphs._graphs.clear()
    graphs._failed.clear()

    def refuse(*args, **kwargs):
        raise RuntimeError("capture refused")

    monkeypatch.setattr(torch.cuda, "CUDAGraph", refuse)
    body, step, state, xs = _loop_inputs("gla", rows=4, T=3 * graphs.WINDOW, K=16, V=8, device="cuda")
    with pytest.warns(RuntimeWarning, match="capture refused"):
        o_g, ht_g = graphs.over_windows(body, step, state, xs)
    o, ht = body(state, xs)
    assert torch.equal(o_g, o) and torch.equal(ht_g, ht) and not graphs._graphs
    graphs._failed.clear()
