"""The provider interface: 'module:object' specs, entry-point discovery, registration, errors."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fla_check import ops
from fla_check.providers import (
    DuplicateProviderModeError,
    Provider,
    ProviderError,
    ProviderNotFoundError,
    ProviderOpError,
    ProviderSpecError,
    ProviderTypeError,
    discover,
    load_provider,
    register,
    resolve,
    unload_provider,
)
from fla_check.references import reference
from fake_dist import install_fake_dist

HERE = Path(__file__).parent
SPEC = "thirdparty_provider:provider"


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    yield
    unload_provider("thirdparty")


def _gla_inputs(B=2, T=9, H=2, K=6, V=5):
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(B, T, H, K, generator=gen) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen)
    return q, k, v, F.logsigmoid(torch.randn(B, T, H, K, generator=gen))


def _rel_err(x, ref):
    return ((x.double() - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("spec", [SPEC, "thirdparty_provider:make_provider"])
def test_module_object_spec_registers_qualified_modes(spec):
    provider = load_provider(spec)
    gla = ops.get_op("gla")
    assert provider.qualified_modes() == {"gla": ["thirdparty:ref", "thirdparty:buggy"]}
    assert {"thirdparty:ref", "thirdparty:buggy"} <= set(gla.modes)
    assert ops.get_mode(gla, "thirdparty:ref").provider == "thirdparty"
    assert ops.get_mode(gla, "chunk").provider == "builtin"  # bare names stay built-in
    with pytest.raises(ops.UnknownNameError, match="thirdparty:ref"):
        ops.get_mode(gla, "ref")


def test_thirdparty_modes_run_and_the_planted_bug_shows():
    load_provider(SPEC)
    gla = ops.get_op("gla")
    q, k, v, g = _gla_inputs()
    h0 = torch.randn(2, 2, 6, 5, generator=torch.Generator().manual_seed(1))
    ro, rh = reference(gla.step, q, k, v, g, initial_state=h0, output_final_state=True)
    o, ht = ops.get_mode(gla, "thirdparty:ref").load()(q, k, v, g=g, initial_state=h0, output_final_state=True)
    assert _rel_err(o, ro) < 1e-6 and _rel_err(ht, rh) < 1e-6
    ob, _ = ops.get_mode(gla, "thirdparty:buggy").load()(q, k, v, g=g, initial_state=h0)
    assert _rel_err(ob, ro) > 1e-2


def test_declared_capabilities_become_unsupported_reasons():
    load_provider(SPEC)
    buggy = ops.get_mode(ops.get_op("gla"), "thirdparty:buggy")
    kw = dict(varlen=False, initial_state=True, backward=False)
    assert buggy.unsupported_reason(dtype=torch.float32, **kw) is None
    assert "float16" in buggy.unsupported_reason(dtype=torch.float16, **kw)
    assert "cu_seqlens" in buggy.unsupported_reason(dtype=torch.float32, **{**kw, "varlen": True})
    assert buggy.unsupported_reason(dtype=torch.float32, **{**kw, "backward": True}) == \
        "thirdparty:buggy is forward only"


def test_loading_is_idempotent():
    before = dict(ops.get_op("gla").modes)
    first = load_provider(SPEC)
    n = len(ops.get_op("gla").modes)
    assert load_provider(SPEC) is first
    load_provider("thirdparty_provider:make_provider")  # equal modes, other spec
    assert register(first) == ["gla/thirdparty:ref", "gla/thirdparty:buggy"]
    assert len(ops.get_op("gla").modes) == n == len(before) + 2
    unload_provider("thirdparty")
    assert ops.get_op("gla").modes == before


def test_entry_point_discovery(tmp_path, monkeypatch):
    install_fake_dist(tmp_path, monkeypatch, f"thirdparty = {SPEC}\nbroken = thirdparty_provider:not_a_provider")
    found = {d.name: d for d in discover()}
    assert found["thirdparty"].provider.name == "thirdparty" and found["thirdparty"].error is None
    assert isinstance(found["broken"].error, ProviderTypeError) and found["broken"].provider is None
    assert "thirdparty:buggy" not in ops.get_op("gla").modes  # discovery does not register
    load_provider("thirdparty")  # by entry-point name, as `--provider thirdparty`
    assert "thirdparty:buggy" in ops.get_op("gla").modes


@pytest.mark.parametrize("spec, error, match", [
    ("", ProviderSpecError, "empty"),
    ("a:b:c", ProviderSpecError, "module:object"),
    (":provider", ProviderSpecError, "module:object"),
    ("thirdparty_provider:", ProviderSpecError, "module:object"),
    ("no_such_entry_point_name", ProviderNotFoundError, "no provider named"),
    ("no_such_module_xyz.sub:provider", ProviderNotFoundError, "no module named 'no_such_module_xyz'"),
    ("thirdparty_provider:missing", ProviderNotFoundError, "no attribute 'missing'"),
    ("thirdparty_provider:not_a_provider", ProviderTypeError, "names a int"),
    ("thirdparty_provider:returns_dict", ProviderTypeError, "returned a dict"),
    ("thirdparty_provider:needs_arg", ProviderTypeError, "no arguments"),
    ("thirdparty_provider:factory_raises", ProviderError, "RuntimeError: boom"),
    ("thirdparty_provider:unknown_op", ProviderOpError, "unknown op 'softmax'"),
    ("thirdparty_provider:reserved", ProviderSpecError, "reserved"),
    ("thirdparty_provider:mislabelled", ProviderSpecError, "other:ref"),
])
def test_bad_specs_raise_precise_errors(spec, error, match):
    before = {name: dict(op.modes) for name, op in ops.OPS.items()}
    with pytest.raises(error, match=match):
        load_provider(spec)
    assert {name: dict(op.modes) for name, op in ops.OPS.items()} == before


def test_unknown_op_error_is_also_the_registry_error():
    with pytest.raises(ops.UnknownNameError):
        register(resolve("thirdparty_provider:unknown_op"))


def test_duplicate_mode_name_is_refused_atomically():
    load_provider(SPEC)
    before = dict(ops.get_op("gla").modes)
    with pytest.raises(DuplicateProviderModeError, match="thirdparty:ref"):
        load_provider("thirdparty_provider:clashing")
    twice = Provider("thirdparty", {"delta": [], "gla": [before["thirdparty:ref"], before["thirdparty:ref"]]})
    with pytest.raises(DuplicateProviderModeError, match="twice"):
        register(twice)
    assert ops.get_op("gla").modes == before
