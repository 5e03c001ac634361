"""The fla provider: declared capabilities, lazy loading, and fla's recurrent kernels vs float64.

Kernel tests need fla-core (`python3 -m pip install --no-deps fla-core==0.6.0 einops`); on CPU they
run fla's own Triton kernels in the interpreter with the autotuner pinned to its first config.
"""
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fla_check import ops
from fla_check.commands.selftest.mutate import load_mutant
from fla_check.providers import ProviderUnavailableError, resolve
from fla_check.providers import fla as fla_provider
from fla_check.references import reference
from device import DEVICE
from op_inputs import random_inputs
from optional_deps import HAVE_FLA, needs_fla, require
OPS = ["gla", "simple_gla", "delta", "gated_delta", "kda"]
SPEC = "fla_check.providers.fla:provider"


def _interpreter() -> bool:
    from fla_check.backend import get_backend

    return get_backend().interpreter


def _inputs(op, *, B=1, T=12, H=2, K=20, V=12, n_states=1, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v, g, beta = random_inputs(op, B, T, H, K, V, gen)
    h0 = torch.randn(n_states, H, K, V, generator=gen)
    cast = [None if x is None else x.to(DEVICE, dtype) for x in (q, k, v, g, beta)]
    return (*cast, h0.to(DEVICE))


def _rel(x, ref):
    return ((x.double() - ref).norm() / ref.norm()).item()


def test_entry_point_is_declared_in_pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10 (pyproject allows >= 3.10): tomli is its tomllib
        require("tomli", hint="Python 3.10 reads TOML with tomli: pip install tomli")
        import tomli as tomllib
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["fla_check.providers"]["fla"] == SPEC
    assert pyproject["project"]["optional-dependencies"]["fla"][0].startswith("fla-core")


def test_capabilities_are_declared_honestly(monkeypatch):
    if HAVE_FLA:  # off Hopper: fla's #640 guard (tests/providers/test_fla_guard.py) would refuse two backwards
        monkeypatch.setattr(fla_provider._guard_module(), "IS_NVIDIA_HOPPER", False)
    monkeypatch.delenv(fla_provider.UNGUARDED_ENV, raising=False)
    modes = {(op, m.name): m for op, specs in fla_provider.build().modes.items() for m in specs}
    kw = dict(dtype=torch.float16, varlen=True, initial_state=True, backward=True)
    for op in OPS:
        assert modes[op, "chunk"].unsupported_reason(**kw, interpreter=True) == fla_provider.CHUNK_ON_INTERPRETER
        assert modes[op, "chunk"].unsupported_reason(**kw, interpreter=False) is None
    assert "float32" in modes["delta", "chunk"].unsupported_reason(**{**kw, "dtype": torch.float32},
                                                                    interpreter=False)
    assert modes["gated_delta", "recurrent"].unsupported_reason(**kw) == fla_provider.GDN_RECURRENT_NO_BWD
    assert modes["kda", "recurrent"].unsupported_reason(**kw) == fla_provider.KDA_RECURRENT_NO_BWD
    assert modes["kda", "recurrent"].unsupported_reason(**{**kw, "backward": False}, interpreter=True) is None
    assert modes["gla", "recurrent"].unsupported_reason(**{**kw, "dtype": torch.float32}, interpreter=True) is None
    assert modes["simple_gla", "recurrent"].unsupported_reason(**{**kw, "dtype": torch.float32}, interpreter=True) is None
    assert modes["simple_gla", "chunk"].arithmetic == fla_provider.FLA_CHUNK  # h in the input dtype, TF32 dots


def test_missing_fla_gives_the_install_hint(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(fla_provider.importlib.util, "find_spec",
                        lambda name, *a: None if name == "fla" else real(name, *a))
    with pytest.raises(ProviderUnavailableError, match=r"install fla-check\[fla\]"):
        resolve(SPEC)


@needs_fla
def test_loading_pins_the_triton_path(fla_modes):
    assert os.environ["FLA_DISABLE_BACKEND_DISPATCH"] == "1"
    assert {m for m in ops.get_op("gated_delta").modes if m.startswith("fla:")} == {"fla:chunk", "fla:recurrent"}
    fla_provider.fla_ops()
    assert sys.modules["fla.backends"]._DISPATCH_DISABLED


@needs_fla
@pytest.mark.parametrize("varlen", [False, True], ids=["batch", "varlen"])
@pytest.mark.parametrize("op", OPS)
def test_recurrent_forward_matches_float64(fla_modes, op, varlen):
    cu = torch.tensor([0, 0, 1, 5, 12]) if varlen else None
    q, k, v, g, beta, h0 = _inputs(op, B=1 if varlen else 2, n_states=4 if varlen else 2)
    cu = None if cu is None else cu.to(q.device)
    spec = ops.get_op(op)
    fn = ops.get_mode(spec, "fla:recurrent").load()
    o, ht = fn(q, k, v, g=g, beta=beta, initial_state=h0, output_final_state=True, cu_seqlens=cu)
    ro, rh = reference(spec.step, q, k, v, g, beta, initial_state=h0, output_final_state=True, cu_seqlens=cu)
    assert o.dtype == torch.float32 and ht.dtype == torch.float32 and ht.shape == h0.shape
    assert _rel(o, ro) < 1e-5 and _rel(ht, rh) < 1e-5


@needs_fla
@pytest.mark.parametrize("op", ["gla", "simple_gla", "delta"])
def test_recurrent_backward_matches_float64(fla_modes, op):
    spec = ops.get_op(op)
    inputs = _inputs(op, B=2, T=10, n_states=2)
    gated = 4 if op == "delta" else 3  # index of g or beta: the op's differentiable gate
    leaves = [None if x is None else x.clone().requires_grad_() for x in inputs]
    refs = [None if x is None else x.double().requires_grad_() for x in inputs]
    fn = ops.get_mode(spec, "fla:recurrent").load()
    do = torch.randn(inputs[2].shape, generator=torch.Generator().manual_seed(1)).to(inputs[2].device)
    o, _ = fn(*leaves[:3], g=leaves[3], beta=leaves[4], initial_state=leaves[5])
    ro, _ = reference(spec.step, *refs[:5], initial_state=refs[5])
    (o * do).sum().backward()
    (ro * do.double()).sum().backward()
    for i in (0, 1, 2, gated, 5):
        assert _rel(leaves[i].grad, refs[i].grad) < 1e-5, f"input {i}"


@needs_fla
def test_gated_delta_recurrent_really_has_no_backward(fla_modes):
    q, k, v, g, beta, h0 = _inputs("gated_delta")
    o, _ = ops.get_mode(ops.get_op("gated_delta"), "fla:recurrent").load()(q.requires_grad_(), k, v, g=g, beta=beta)
    with pytest.raises(NotImplementedError, match="Backward pass is not implemented"):
        o.sum().backward()


@needs_fla
def test_kda_recurrent_really_has_no_backward(fla_modes):
    q, k, v, g, beta, _ = _inputs("kda")
    o, _ = ops.get_mode(ops.get_op("kda"), "fla:recurrent").load()(q.requires_grad_(), k, v, g=g, beta=beta)
    assert not o.requires_grad


@needs_fla
@pytest.mark.skipif(HAVE_FLA and not _interpreter(), reason="compiled Triton runs fla's chunk kernels")
@pytest.mark.parametrize("op", OPS)
def test_chunk_modes_really_fail_in_the_interpreter(fla_modes, op):
    q, k, v, g, beta, _ = _inputs(op, T=16, K=16, V=16, dtype=torch.float16)
    with pytest.raises(Exception, match="'int' object has no attribute 'to'"):
        ops.get_mode(ops.get_op(op), "fla:chunk").load()(q, k, v, g=g, beta=beta)


@needs_fla
def test_forward_check_catches_a_gate_passed_to_the_wrong_keyword():
    """Planted bug: the GLA gate fed to fla's value gate gv instead of gk (K == V so it runs)."""
    mutant = load_mutant("fla_check.providers.fla", [('"fused_recurrent_gla", "gk"',
                                                       '"fused_recurrent_gla", "gv"')], tag="gv")
    q, k, v, g, _, h0 = _inputs("gla", K=16, V=16)
    o, _ = mutant.gla_recurrent(q, k, v, g=g, initial_state=h0)
    ro, _ = reference(ops.get_op("gla").step, q, k, v, g, initial_state=h0)
    assert _rel(o, ro) > 1e-2


def test_chunk_size_and_state_v_first_are_declared_per_fla_signature():
    modes = {(op, m.name): m for op, specs in fla_provider.build().modes.items() for m in specs}
    kw = dict(dtype=torch.float16, varlen=False, initial_state=True, backward=False, interpreter=False)
    for op in ("simple_gla", "delta", "gated_delta"):  # chunk_size read from **kwargs (16/32/64)
        assert modes[op, "chunk"].chunk_sizes == {16, 32, 64}
    assert modes["kda", "chunk"].chunk_sizes == {32, 64}
    assert "chunk_kda takes chunk_size 32 or 64" in modes["kda", "chunk"].unsupported_reason(**kw, chunk_size=16)
    assert "chunk_gla has no chunk_size" in modes["gla", "chunk"].unsupported_reason(**kw, chunk_size=32)
    for op in OPS:  # fused_recurrent_*: no chunks, run unchanged
        assert modes[op, "recurrent"].unsupported_reason(**kw, chunk_size=16) is None
    for op in ("gla", "simple_gla", "gated_delta", "kda"):
        for name in ("chunk", "recurrent"):
            assert modes[op, name].unsupported_reason(**kw, state_v_first=True) is None
    assert "swallow" in modes["delta", "chunk"].unsupported_reason(**kw, state_v_first=True)
    assert "no state_v_first" in modes["delta", "recurrent"].unsupported_reason(**kw, state_v_first=True)


@needs_fla
@pytest.mark.parametrize("op", ["gla", "simple_gla", "gated_delta", "kda"])
def test_fla_recurrent_v_first_states_pass_through_the_harness(fla_modes, op):
    """fla's fused_recurrent kernels with state_v_first=True: [V, K] h0 in, [V, K] ht out (K != V),
    judged against the unchanged reference."""
    from fla_check.cases import CaseConfig
    from fla_check.engine.runner import check_case

    config = CaseConfig(op=op, dtype="float32", B=1, T=5, H=1, K=16, V=32, initial_state=True, state_v_first=True,
                        seed=2)
    r = check_case(op, ["fla:recurrent"], config, invariance="none")
    assert r.modes["fla:recurrent"].verdict.value == "OK", r.modes["fla:recurrent"].reason
