"""fla_check.engine.batched.check_cases: the same verdicts and numbers as check_case case by case
(references batched per state shape), a subtly wrong mode caught the same way, backward cases and
foreign cases handled."""
import math

import pytest
import torch
from _fake_modes import PROVIDER, make_clean, registered

from fla_check import ops
from fla_check.engine.batched import check_cases
from fla_check.engine.runner import check_case
from fla_check.errors import CaseError
from fla_check.ops import ModeSpec
from fla_check.strategies import SpaceOptions, covering_configs
from fla_check.verdict.arithmetic import Arithmetic
from fla_check.verdict.compare import Verdict


CHUNK16 = Arithmetic("chunk", 16)  # an emulated baseline (the fake modes compute in fp32 either way)


def _off_by(step, factor):
    clean = make_clean(step)

    def scaled(q, k, v, **kw):
        o, ht = clean(q, k, v, **kw)
        return o * factor, ht

    return scaled


@pytest.fixture(autouse=True)
def fake_modes():
    with registered():
        for name in ("gla", "gated_delta", "kda"):
            step = ops.get_op(name).step
            ops.register_modes(name, [ModeSpec("off2pct", PROVIDER, _off_by(step, 1.015)),
                                      ModeSpec("emulated16", PROVIDER, make_clean(step), arithmetic=CHUNK16),
                                      ModeSpec("emulated16off", PROVIDER, _off_by(step, 1.015), arithmetic=CHUNK16)])
        yield


def _numbers(result):
    """Verdict and metrics of every mode's outputs, without the timings."""
    out = {}
    for label, r in result.modes.items():
        out[label] = (r.verdict, [(o.name, o.kernel.max_abs, o.kernel.rel_rms, o.baseline.max_abs, o.baseline.rel_rms)
                                  for o in r.outputs])
    return out


# A case's float64 reference alone and inside a batch is the same recurrence with its sums in another
# order (on the GPU a batched product against a product and a sum, replayed or not), so the two differ by
# float64 rounding grown over the steps: 2.7e-15 absolute at T = 432 on an H200. Every metric is a
# distance to that reference (a max or an rms of differences), so it moves by as much; 1e-12 absolute
# leaves room for longer cases and larger outputs while a different case or sample moves it by orders more.
FLOAT64_REORDERING = 1e-12


def _close(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=FLOAT64_REORDERING)


def _assert_same(alone, got):
    """`got` judged every mode it ran as `alone` did: verdicts exactly, metrics and baseline scales
    to the float64 rounding of a reordered reference."""
    a, b = _numbers(alone), _numbers(got)
    assert b and b.keys() <= a.keys()
    assert alone.baseline.keys() == got.baseline.keys()
    for name, scale in got.baseline.items():
        assert _close(scale.max_abs, alone.baseline[name].max_abs), name
        assert _close(scale.rel_rms, alone.baseline[name].rel_rms), name
    for label in b:
        assert a[label][0] is b[label][0], (got.config.short(), label)
        for (name, *numbers_a), (_, *numbers_b) in zip(a[label][1], b[label][1]):
            for x, y in zip(numbers_a, numbers_b):
                assert _close(x, y), (got.config.short(), label, name)


@pytest.mark.parametrize("op", ["gla", "gated_delta", "kda"])
def test_check_cases_judges_each_case_as_check_case_does(op):
    space = SpaceOptions(op=op, dtypes=("float32", "bfloat16"), max_seq_len=40, value_ratios=(1,), kernel_options=())
    configs = covering_configs(space, seed=5)[:8]  # what the fake modes run: no GVA, no in-kernel options
    modes = ["test:clean", "test:dropped", "test:off2pct"]
    batched = check_cases(op, modes, configs, isolation="none", invariance="none")
    assert [r.config for r in batched] == list(configs)
    verdicts = set()
    for config, got in zip(configs, batched):
        _assert_same(check_case(op, modes, config, isolation="none", invariance="none"), got)
        verdicts.add((got.modes["test:clean"].verdict, got.modes["test:off2pct"].verdict))
    # clean passes and 1.5 % off is caught in every case the modes run (not bf16 under the interpreter)
    assert verdicts - {(Verdict.UNSUPPORTED, Verdict.UNSUPPORTED)} == {(Verdict.OK, Verdict.DIVERGED)}


def test_backward_cases_run_one_by_one():
    configs = sorted(covering_configs(SpaceOptions(op="gla", max_seq_len=40, dtypes=("float32",)), seed=0),
                     key=lambda c: c.B * c.T)[:2]
    results = check_cases("gla", ["recurrent"], configs, backward=True, isolation="none", invariance="none")
    assert [r.backward for r in results] == [True, True]
    assert all(r.modes["recurrent"].verdict is Verdict.OK for r in results)
    assert all(any(o.name == "dq" for o in r.modes["recurrent"].outputs) for r in results)  # gradients judged


def test_no_cases_no_results():
    assert check_cases("gla", ["test:clean"], []) == []
    assert check_cases("gla", ["test:clean"], [], backward=True) == []


def test_a_case_of_another_op_is_refused_before_anything_runs():
    configs = covering_configs(SpaceOptions(op="delta", max_seq_len=40), seed=0)[:1]
    with pytest.raises(CaseError, match="another op"):
        check_cases("gla", ["test:clean"], configs)


def test_a_built_case_has_no_gradients():
    from fla_check.cases import build_case
    from fla_check.engine.runner import BuiltCase

    config = covering_configs(SpaceOptions(op="gla", max_seq_len=40), seed=0)[0]
    built = BuiltCase(build_case(config), {"o": torch.zeros(1), "ht": torch.zeros(1)})
    with pytest.raises(ValueError, match="no reference gradients"):
        check_case("gla", ["test:clean"], config, backward=True, built=built)


def test_a_search_covers_with_one_batched_reference_and_the_same_results(monkeypatch):
    """The covering phase of a ci search builds its cases ahead: one reference loop for all of them,
    each case judged as check_case judges it alone."""
    from fla_check.engine import batched
    from fla_check.engine.search import search

    sizes = []
    real = batched.reference_batch

    def counting(step, cases):
        sizes.append(len(cases))
        return real(step, cases)

    monkeypatch.setattr(batched, "reference_batch", counting)
    modes = ["test:clean", "test:off2pct"]
    result = search("gla", modes, dtypes=["fp32"], profile="ci", seed=0)  # on the backend's device
    covering = result.options["covering"]
    assert covering > 1 and sizes == [2 * covering]  # each case's reference and its readout terms
    for case in result.cases[-covering:]:  # the modes that had not failed yet
        _assert_same(check_case("gla", modes, case.config), case)


def test_a_long_group_is_cut_into_batches_within_the_memory_cap(monkeypatch):
    from fla_check.engine import batched

    sizes = []
    real = batched.reference_batch
    monkeypatch.setattr(batched, "reference_batch", lambda step, cases: sizes.append(len(cases)) or real(step, cases))
    monkeypatch.setattr(batched, "reference_elements", lambda device: 40_000)  # a few small cases per batch
    space = SpaceOptions(op="gla", max_seq_len=40, kernel_options=())  # every case has readout terms
    configs = [c for seed in (2, 3, 4) for c in covering_configs(space, seed=seed)]
    results = check_cases("gla", ["test:clean"], configs, isolation="none", invariance="none")
    assert len(sizes) > 1 and sum(sizes) == 2 * len(configs) and max(sizes) < len(configs)
    for config, got in zip(configs, results):
        _assert_same(check_case("gla", ["test:clean"], config, isolation="none", invariance="none"), got)


def test_the_readout_terms_join_the_reference_loop():
    """With `readout`, a decay-only case's recurrent fp32 readout terms come from the batch, equal
    to what the baseline computes alone; none for the delta rule or without `readout`."""
    from fla_check.engine.batched import build_ahead, wants_readout
    from fla_check.verdict.baselines import _readout_terms

    configs = covering_configs(SpaceOptions(op="gla", max_seq_len=40, kernel_options=()), seed=3)[:6]
    assert wants_readout("gla", ["recurrent", "chunk"]) and not wants_readout("gla", ["chunk"])
    for built in build_ahead("gla", configs, readout=True):
        alone = _readout_terms(ops.get_op("gla"), built.inputs, truth=False)
        torch.testing.assert_close(built.readout, alone, rtol=1e-12, atol=1e-300)
    assert all(b.readout is None for b in build_ahead("gla", configs[:2]))
    delta = covering_configs(SpaceOptions(op="delta", max_seq_len=40), seed=3)[:2]
    assert all(b.readout is None for b in build_ahead("delta", delta, readout=True))


@pytest.mark.parametrize("op", ["gla", "gated_delta"])
def test_cases_of_one_shape_share_one_baseline_emulation_with_their_own_samples(op, monkeypatch):
    """check_cases samples the baselines of same-shaped cases per dtype in one batch: each
    case gets the samples it gets alone (same scales, same verdicts), a clean chunk-declared mode
    passes and one 1.5 % off is caught in every case."""
    from dataclasses import replace

    from fla_check.engine import batched

    sizes = []
    real = batched.batched_deviations
    monkeypatch.setattr(batched, "batched_deviations", lambda op_, arith, cases, *a: sizes.append(
        (arith.algorithm, len(cases))) or real(op_, arith, cases, *a))
    shape = covering_configs(SpaceOptions(op=op, max_seq_len=40, value_ratios=(1,), kernel_options=()), seed=1)[0]
    configs = [replace(shape, dtype=dtype, seed=seed) for dtype in ("float32", "bfloat16") for seed in (1, 2, 3)]
    modes = ["test:emulated16", "test:emulated16off", "test:clean"]
    batched_results = check_cases(op, modes, configs, isolation="none", invariance="none")
    # per dtype one emulation (emulated16 and emulated16off share their declaration) and one rounding (clean)
    assert sorted(sizes) == [("chunk", 3), ("chunk", 3), ("recurrent", 3), ("recurrent", 3)]
    scales = set()
    for config, got in zip(configs, batched_results):
        _assert_same(check_case(op, modes, config, isolation="none", invariance="none"), got)
        assert got.modes["test:emulated16"].verdict is Verdict.OK, config.short()
        assert got.modes["test:emulated16off"].verdict is Verdict.DIVERGED, config.short()
        scales.add(got.modes["test:emulated16"].outputs[0].baseline.rel_rms)
    assert len(scales) == len(configs)  # every case its own samples


def test_a_gpu_batch_holds_what_fits_its_memory_and_the_cpu_keeps_the_fixed_cap(monkeypatch):
    from fla_check.engine import batched

    monkeypatch.setattr(batched, "memory_budget", lambda device: 2**36)  # 64 GiB free to the harness
    assert batched.reference_elements("cpu") == batched.BATCH_ELEMENTS
    assert batched.reference_elements("cuda") == 2**36 // (8 * batched.REFERENCE_COPIES)
    monkeypatch.setattr(batched, "memory_budget", lambda device: 2**20)  # a nearly full GPU: the fixed cap still
    assert batched.reference_elements("cuda") == batched.BATCH_ELEMENTS


def test_the_judging_fetches_do_not_grow_with_the_cases(monkeypatch):
    """Every case's outputs are judged in one host transfer and the pairwise agreements in one
    more, however many cases check_cases gets (one of each per case before check_many)."""
    from host_spy import host_transfers

    space = SpaceOptions(op="gla", dtypes=("float32",), max_seq_len=40, value_ratios=(1,), kernel_options=())
    configs = [c for seed in (3, 4, 5) for c in covering_configs(space, seed=seed)]  # cu_seqlens: tolist(), not cpu()
    modes = ["test:clean", "test:off2pct", "test:emulated16"]
    check_cases("gla", modes, configs[:2], isolation="none", invariance="none")  # imports, lazy registries
    fetches = []
    for n in (2, len(configs)):
        calls = host_transfers(monkeypatch)
        results = check_cases("gla", modes, configs[:n], isolation="none", invariance="none")
        assert {r.modes["test:off2pct"].verdict for r in results} == {Verdict.DIVERGED}
        fetches.append(calls.count("cpu"))
        monkeypatch.undo()
    assert len(configs) > 4 and fetches[0] == fetches[1] == 2


def test_inputs_built_in_threads_are_those_built_one_by_one(monkeypatch):
    from fla_check.cases import build_case
    from fla_check.engine import batched

    space = SpaceOptions(op="gated_delta", max_seq_len=40)
    configs = [c for seed in (1, 2) for c in covering_configs(space, seed=seed)]
    fields = ("q", "k", "v", "g", "beta", "initial_state", "cu_seqlens", "reset_mask", "A_log", "dt_bias")
    for got, config in zip(batched.built_inputs(configs, "cpu"), configs, strict=True):
        want = build_case(config)
        for name in fields:
            a, b = getattr(got, name), getattr(want, name)
            assert (a is None and b is None) or torch.equal(a, b), (config.short(), name)
    real = batched.build_case

    def failing(config, device):
        if config is configs[3]:
            raise RuntimeError("no inputs for this one")
        return real(config, device)

    monkeypatch.setattr(batched, "build_case", failing)
    with pytest.raises(RuntimeError, match="no inputs for this one"):
        batched.built_inputs(configs, "cpu")


def _same_shape_cases(op="gla"):
    from dataclasses import replace

    shape = covering_configs(SpaceOptions(op=op, max_seq_len=40, value_ratios=(1,), kernel_options=()), seed=1)[0]
    return [replace(shape, dtype=dtype, seed=seed) for dtype in ("float32", "bfloat16") for seed in (1, 2)]


def test_baselines_behind_in_a_thread_are_those_computed_ahead():
    """The baselines a background thread computes beside the calls (as on a GPU) are the very
    numbers baselines_ahead computes in the caller, and check_cases judges with them."""
    from fla_check.engine import batched

    configs = _same_shape_cases()
    modes = ["test:emulated16", "test:clean"]
    built = batched.build_ahead("gla", configs, readout=True)
    ahead = [case.baselines for case in batched.baselines_ahead("gla", modes, configs, built)]
    with batched.baselines_behind("gla", modes, configs, built, thread=True) as behind:
        assert behind.pool is not None  # a thread, not the at-once path
        found = behind()
    assert len(found) == len(ahead) and all(len(case) == 2 for case in ahead)  # both declarations, every case
    for mine, theirs in zip(found, ahead):
        assert mine.keys() == theirs.keys()
        for arith in mine:
            for name in mine[arith]:
                assert [float(t) for t in mine[arith][name]] == [float(t) for t in theirs[arith][name]]


def test_check_many_judges_with_the_baselines_it_is_handed(monkeypatch):
    """check_many reads the baselines computed meanwhile instead of sampling its own: handed
    baselines a million times too large, a mode 1.5 % off passes (the check of the hand-off is
    one that can fail); with none handed it is caught again; a count that does not match the
    cases is refused."""
    from fla_check.engine import batched
    from fla_check.engine.runner import check_many

    configs = _same_shape_cases()[:2]
    modes = ["test:emulated16off"]
    built = batched.build_ahead("gla", configs)
    with batched.baselines_behind("gla", modes, configs, built, thread=True) as behind:
        honest = behind()
    inflated = [{arith: {name: [t * 1e6 for t in rows] for name, rows in dev.items()} for arith, dev in case.items()}
                for case in honest]
    run = lambda given: check_many("gla", modes, configs, built=built, baselines=given,  # noqa: E731
                                   isolation="none", invariance="none")
    assert {r.modes["test:emulated16off"].verdict for r in run(lambda: honest)} == {Verdict.DIVERGED}
    assert {r.modes["test:emulated16off"].verdict for r in run(lambda: inflated)} == {Verdict.OK}
    with pytest.raises(ValueError, match="1 cases' baselines for 2 cases"):
        run(lambda: honest[:1])


def test_an_error_behind_raises_where_the_baselines_are_read_and_the_thread_ends_first(monkeypatch):
    import threading

    from fla_check.engine import batched

    configs = _same_shape_cases()
    built = batched.build_ahead("gla", configs)
    started = threading.Event()

    def failing(*args, **kwargs):
        started.set()
        raise RuntimeError("emulation broke")

    monkeypatch.setattr(batched, "batched_deviations", failing)
    with pytest.raises(RuntimeError, match="emulation broke"):
        with batched.baselines_behind("gla", ["test:emulated16"], configs, built, thread=True) as behind:
            assert started.wait(30)
            behind()
    assert not [t for t in threading.enumerate() if t.name.startswith("fla-check-baselines")]


def test_a_thread_is_worth_it_for_long_cases_only():
    """On a GPU the baselines go behind the calls when they are large (gla at T = 256 holds about
    2 GiB per case at its peak, gated_delta at T = 1024 about 1 GiB); short cases keep one thread."""
    from fla_check.backend import get_backend
    from fla_check.cases import CaseConfig
    from fla_check.engine import batched

    def worth(op, modes, T):
        configs = [CaseConfig(op=op, dtype="float32", B=1, T=T, H=4, K=64, V=64, seed=s) for s in (1, 2)]
        built = [batched.BuiltCase(batched.build_case(c), {}) for c in configs]
        groups = batched.baseline_groups(op, modes, configs, built, get_backend())  # the process's own backend
        return batched.worth_a_thread(groups, len(built))

    gla = ["recurrent", "chunk", "fused_chunk"]
    assert worth("gla", gla, 256) and worth("gla", gla, 1024) and not worth("gla", gla, 64)
    assert worth("gated_delta", ["recurrent", "chunk"], 1024) and not worth("gated_delta", ["recurrent", "chunk"], 256)
    assert not worth("gla", ["recurrent"], 1024)  # the recurrent baseline rounds the exact answer: little work
    assert not batched.worth_a_thread(batched.baseline_groups("gla", gla, [], [], get_backend()), 0)


def test_even_batches_cut_as_few_batches_as_fit_of_near_equal_size():
    from fla_check.engine.batched import even_batches

    members = list(range(64))
    assert [len(b) for b in even_batches(members, 21)] == [16, 16, 16, 16]  # not 21, 21, 21 and one alone
    assert [len(b) for b in even_batches(members, 9)] == [8] * 8
    assert even_batches(members, 64) == [members] and even_batches([], 5) == []
    assert sum(even_batches(members, 7), []) == members


def test_a_baseline_batch_out_of_memory_is_halved_with_the_same_numbers(monkeypatch):
    """The memory budget is an estimate: a batch that runs out of memory is split in halves (down
    to cases left to their judges) instead of stopping the run, and every case gets the numbers
    it gets in the batch that fits. The check can fail: without harness_stage's translation of
    the error (what the split catches) it escapes."""
    from dataclasses import replace

    from fla_check.engine import batched

    shapes = _same_shape_cases()
    configs = shapes + [replace(shapes[0], seed=3)]  # fp32: 3 cases, bf16: 2
    modes = ["test:emulated16"]
    built = batched.build_ahead("gla", configs)
    ahead = [case.baselines for case in batched.baselines_ahead("gla", modes, configs, built)]
    real, failed = batched.batched_deviations, []

    def tight(op, arith, cases, *args, **kwargs):
        if len(cases) > 2:
            failed.append(len(cases))
            raise torch.OutOfMemoryError("CUDA out of memory (planted)")
        return real(op, arith, cases, *args, **kwargs)

    monkeypatch.setattr(batched, "batched_deviations", tight)
    halved = [case.baselines for case in batched.baselines_ahead("gla", modes, configs, built)]
    assert failed == [3]  # fp32's batch of 3 ran out; its halves (1: left to its judge, 2) and bf16's 2 did not
    assert [bool(case) for case in halved] == [False, True, True, True, True]  # seed 1 of fp32 left alone
    for mine, theirs in zip(halved, ahead):
        for arith in mine:
            assert {n: [float(t) for t in r] for n, r in mine[arith].items()} == \
                {n: [float(t) for t in r] for n, r in theirs[arith].items()}
    monkeypatch.setattr(batched, "harness_stage", _no_stage)
    with pytest.raises(torch.OutOfMemoryError):
        batched.baselines_ahead("gla", modes, configs, built)


class _no_stage:
    """harness_stage without its translation of out-of-memory errors."""

    def __init__(self, *args):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_baselines_behind_run_on_one_stream_per_device(monkeypatch):
    """torch's caching allocator reuses a freed block only on the stream that allocated it: a new
    stream per batch (the next of torch's pool each time) grew the cache until allocations failed and
    torch freed all of it (perf-h200-55). Every batch's baselines on a device share one stream, the
    calls beside them another."""
    from fla_check.engine import batched

    made = []

    def stream(device, priority=0):
        made.append((device, priority))
        return object()

    monkeypatch.setattr(batched, "_STREAMS", {})
    monkeypatch.setattr(batched.torch.cuda, "Stream", stream)
    first, second = (torch.device("cuda", 0), torch.device("cuda", 1))
    assert batched.process_stream(first) is batched.process_stream(first)
    assert batched.process_stream(second) is not batched.process_stream(first)
    assert batched.process_stream(first, -1) is not batched.process_stream(first)
    assert made == [(first, 0), (second, 0), (first, -1)]


class _FakeStream:
    def __init__(self, device, priority=0):
        self.device, self.priority, self.waited = device, priority, []

    def wait_stream(self, other):
        self.waited.append(other)


def test_the_calls_beside_the_baselines_run_ahead_on_a_high_priority_stream(monkeypatch):
    """With baselines behind on a stream, the block's work runs on the device's high-priority stream,
    which first waits for the caller's stream, and the caller's waits for it after (an error too);
    with none behind, the caller's stream is left alone."""
    from fla_check.engine import batched

    device = torch.device("cuda", 0)
    caller, entered = _FakeStream(device), []

    class entering:
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            entered.append(self.stream)

        def __exit__(self, *exc):
            entered.append(None)

    monkeypatch.setattr(batched, "_STREAMS", {})
    monkeypatch.setattr(batched.torch.cuda, "Stream", _FakeStream)
    monkeypatch.setattr(batched.torch.cuda, "current_stream", lambda dev=None: caller)
    monkeypatch.setattr(batched.torch.cuda, "stream", entering)
    behind = batched.process_stream(device)
    with pytest.raises(RuntimeError), batched.ahead_of(behind):
        calls = entered[0]
        assert calls.priority < behind.priority and calls.waited == [caller] and caller.waited == []
        raise RuntimeError("a call failed")
    assert entered == [calls, None] and caller.waited == [calls]
    with batched.ahead_of(None):
        pass
    assert entered == [calls, None] and caller.waited == [calls]
