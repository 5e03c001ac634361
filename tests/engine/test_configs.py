"""Autotune configs (engine/configs.py and check_case(configs=)): discovery, forcing, the sweep,
and the planted config-specific mutant caught by ``all`` and missed by ``first``."""
import json

import pytest
import torch

import fla_check.kernels  # noqa: F401 - selects the backend (TRITON_INTERPRET=1 without CUDA)
from fla_check.backend import get_backend
from fla_check.cases import CaseConfig
from fla_check.commands.run.render import render_failure, replay_command
from fla_check.commands.selftest.mutants import select
from fla_check.engine.configs import ConfigPolicy, autotune_scope, parse_policy, sweep_plan
from fla_check.engine.runner import check_case
from fla_check.errors import ConfigPolicyError, UsageError
from fla_check.report.console import make_console
from fla_check.verdict.compare import Verdict
from fla_check.verdict.results import CaseResult

import triton  # noqa: E402 - after the backend selection
import triton.language as tl  # noqa: E402
from triton.runtime.autotuner import Autotuner  # noqa: E402

DEVICE = get_backend().device
CASE = CaseConfig("simple_gla", "fp32", 1, 40, 1, 16, 64, seed=3)  # V=64: BV 64, 32, 16 all survive pruning


def _kernel():
    configs = [triton.Config({"BLOCK": b}, num_warps=w) for b, w in ((16, 4), (32, 4), (64, 4), (16, 8))]

    @triton.autotune(configs=configs, key=["n"],
                     prune_configs_by={"early_config_prune": lambda cs, nargs, **kw: [c for c in cs if c.kwargs["BLOCK"] < 64]})
    @triton.jit
    def toy_copy(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) + BLOCK, mask=offs < n)

    return toy_copy


def _launch(kernel):
    x = torch.zeros(40, dtype=torch.float32, device=DEVICE)
    y = torch.zeros_like(x)
    kernel[lambda meta: (triton.cdiv(40, meta["BLOCK"]),)](x, y, 40)
    return int(y[0].item())  # the BLOCK the launch ran with


def test_parse_policy():
    assert parse_policy(None) == ConfigPolicy() and parse_policy("all").sweeps
    assert parse_policy("sample:3") == ConfigPolicy("sample", 3)
    assert parse_policy("first", ["k_a:2"]).forced() == {"k_a": 2}
    for bad in ("some", "sample", "sample:0", "sample:x", "all:2"):
        with pytest.raises(ConfigPolicyError):
            parse_policy(bad)
    with pytest.raises(UsageError):
        parse_policy("first", ["nokernel"])
    with pytest.raises(ConfigPolicyError):
        parse_policy("picked", ["k:1"])


def test_scope_discovers_prunes_forces_and_restores():
    kernel = _kernel()
    original = Autotuner.run
    with autotune_scope(ConfigPolicy()) as seen:
        assert _launch(kernel) == 16  # pinned: the first config
    assert list(seen.kernels) == ["toy_copy"] and seen.kernels["toy_copy"].valid == (0, 1, 3)
    assert seen.kernels["toy_copy"].describe(3) == "BLOCK=16, num_warps=8, num_stages=3"
    with autotune_scope(ConfigPolicy(), {"toy_copy": 1}):
        assert _launch(kernel) == 32
    assert Autotuner.run is original and len(kernel.configs) == 4
    with pytest.raises(ConfigPolicyError, match="has 4 configs"):
        with autotune_scope(ConfigPolicy(), {"toy_copy": 9}):
            _launch(kernel)


def test_sweep_plan_skips_interpreter_duplicates_and_samples_by_seed():
    with autotune_scope(ConfigPolicy()) as seen:
        _launch(_kernel())
    k = seen.kernels["toy_copy"]
    assert sweep_plan(ConfigPolicy("all"), k, 0, interpreter=True) == [(1, None), (3, 0)]
    assert sweep_plan(ConfigPolicy("all"), k, 0, interpreter=False) == [(1, None), (3, None)]
    one = sweep_plan(ConfigPolicy("sample", 1), k, 5, interpreter=False)
    assert len(one) == 1 and one == sweep_plan(ConfigPolicy("sample", 1), k, 5, interpreter=False)


def test_builtin_autotuned_kernel_is_identical_at_every_config():
    spec_case = CASE
    outs = []
    for index in range(3):
        r = check_case("simple_gla", ["chunk"], spec_case, configs=parse_policy("first", [f"simple_gla_fwd_o_kernel:{index}"]))
        assert r.modes["chunk"].verdict is Verdict.OK
        outs.append([c.kernel.max_abs for c in r.modes["chunk"].outputs])
    assert outs[0] == outs[1] == outs[2]  # BV tiles the output columns: same arithmetic, same error


# config #3 differs from #1 only in num_warps: the interpreter ignores it (not run), a GPU runs it
WARPS_ONLY = Verdict.UNSUPPORTED if get_backend().interpreter else Verdict.OK


def test_config_specific_mutant_caught_by_all_missed_by_first():
    (mutant,) = select(ids=["simple_gla.chunk.config-specific"])
    assert mutant.configs == "all"
    spec = mutant.mode_specs()[0]
    first = check_case("simple_gla", [spec], CASE).modes["mutant:chunk"]
    assert first.verdict is Verdict.OK and first.configs == [] and first.config == ""
    case = check_case("simple_gla", [spec, "chunk"], CASE, configs=parse_policy("all"))
    bad, clean = case.modes["mutant:chunk"], case.modes["chunk"]
    assert bad.verdict is Verdict.DIVERGED and bad.config == "simple_gla_fwd_o_kernel:2"
    assert {c.ref: c.verdict for c in bad.configs} == {"simple_gla_fwd_o_kernel:1": Verdict.OK,
                                                       "simple_gla_fwd_o_kernel:2": Verdict.DIVERGED,
                                                       "simple_gla_fwd_o_kernel:3": WARPS_ONLY}
    assert "BV=16" in bad.reason and "num_warps" in bad.reason
    assert clean.verdict is Verdict.OK and [c.verdict for c in clean.configs][:2] == [Verdict.OK, Verdict.OK]
    # the replay of the one failing config reproduces it; the JSON keeps the configs
    forced = check_case("simple_gla", [spec], CASE, configs=parse_policy("first", [bad.config]))
    assert forced.modes["mutant:chunk"].verdict is Verdict.DIVERGED
    back = CaseResult.from_json(json.loads(json.dumps(case.to_json())))
    assert back.modes["mutant:chunk"].config == bad.config and back.modes["mutant:chunk"].configs == bad.configs
    console = make_console(no_color=True, width=160)
    with console.capture() as cap:
        render_failure(console, case, "mutant:chunk", 0, "test", None)
    text = cap.get()
    assert "failing autotune config: simple_gla_fwd_o_kernel:2 (BV=16, num_warps=4, num_stages=3)" in text
    if get_backend().interpreter:  # a warps-only config is the same program there, so not run
        assert "the same kernel as config #1" in text
    assert replay_command("r.json", 0, bad.config).endswith("--configs first --config simple_gla_fwd_o_kernel:2")


def test_unknown_forced_kernel_is_a_usage_error():
    with pytest.raises(ConfigPolicyError, match="no mode launched"):
        check_case("simple_gla", ["chunk"], CASE, configs=parse_policy("first", ["nope_kernel:0"]))


def test_picked_refused_on_the_interpreter():
    if not get_backend().interpreter:
        pytest.skip("GPU: picked runs the autotuner")
    with pytest.raises(ConfigPolicyError, match="needs a GPU"):
        check_case("simple_gla", ["chunk"], CASE, configs=parse_policy("picked"))


def test_a_config_that_does_not_fit_the_gpu_is_skipped_not_an_error():
    """H200, fla's gated chunk backward under --configs all: a dhu config needing 255 KB of shared
    memory (227 KB there) made the whole mode ERROR (docs/gpu/features-h200-5). Triton's autotuner
    prunes such configs itself, so the sweep lists it as not runnable and judges the others."""
    from triton.runtime.errors import OutOfResources

    from fla_check.engine.isolation import RemoteError
    from fla_check.engine.runner import _out_of_resources
    from fla_check.ops import ModeSpec, get_op

    toy, chunk = _kernel(), get_op("simple_gla").modes["chunk"].load()

    def fits_only_small_blocks(q, k, v, **kw):
        if _launch(toy) == 32:  # the config this GPU cannot hold
            raise OutOfResources(255500, 232448, "shared memory")
        return chunk(q, k, v, **kw)

    spec = ModeSpec("smem", "test", fits_only_small_blocks, arithmetic=get_op("simple_gla").modes["chunk"].arithmetic)
    mode = check_case("simple_gla", [spec], CASE, configs=parse_policy("all")).modes["test:smem"]
    assert mode.verdict is Verdict.OK, mode.reason
    skipped = {c.ref: c for c in mode.configs}["toy_copy:1"]
    assert skipped.verdict is Verdict.UNSUPPORTED and "not runnable on this GPU (OutOfResources: out of resource: " \
        "shared memory, Required: 255500" in skipped.reason
    assert _out_of_resources(RemoteError("OutOfResources", "out of resource", "")) \
        and not _out_of_resources(RemoteError("RuntimeError", "out of resource", "")) \
        and not _out_of_resources(ValueError("OutOfResources"))


def test_a_first_config_that_does_not_fit_is_passed_over_under_the_default_policy(monkeypatch):
    """The runner's scope (first configs) takes the next config where the first does not fit."""
    from triton.runtime.errors import OutOfResources

    from fla_check.ops import ModeSpec, get_op

    toy, clean = _kernel(), get_op("simple_gla").modes["chunk"]
    real = toy.fn.run

    def run(*args, **kwargs):
        if kwargs.get("BLOCK") == 16:
            raise OutOfResources(255500, 232448, "shared memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(toy.fn, "run", run)
    chunk = clean.load()
    blocks = []

    def mode(q, k, v, **kw):
        blocks.append(_launch(toy))
        return chunk(q, k, v, **kw)

    spec = ModeSpec("first-unfit", "test", mode, arithmetic=clean.arithmetic)
    result = check_case("simple_gla", [spec], CASE).modes["test:first-unfit"]
    assert result.verdict is Verdict.OK and blocks and set(blocks) == {32}
