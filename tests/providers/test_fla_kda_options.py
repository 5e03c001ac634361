"""fla's KDA modes with the in-kernel gate and its lower_bound, by keyword, against the float64
reference that applies them exactly (fused_recurrent_kda runs in the interpreter on CPU; chunk_kda
needs a GPU): an exact call passes, a bound used wrongly is caught, safe_gate is declared."""
import dataclasses

import pytest
import torch

from fla_check.cases import CaseConfig
from fla_check.ops import get_op
from fla_check.engine.runner import check_case
from fla_check.verdict.compare import Verdict
from optional_deps import needs_fla

CASE = dict(op="kda", dtype="fp32", B=1, T=21, H=1, K=16, V=16, initial_state=True, seed=4, gate_norm=0.05,
            gate_in_kernel=True)


@needs_fla
def test_modes_declare_lower_bound_and_recurrent_declines_safe_gate(fla_modes):
    modes = get_op("kda").modes
    assert {"lower_bound", "safe_gate"} <= modes["fla:chunk"].options
    rec = modes["fla:recurrent"]
    assert "lower_bound" in rec.options and "safe_gate" not in rec.options
    why = rec.unsupported_reason(dtype=torch.float32, varlen=False, initial_state=False, backward=False,
                                 interpreter=False, options=("gate_in_kernel", "lower_bound", "safe_gate"))
    assert "safe_gate" in why and "chunk-kernel path" in why


@needs_fla
@pytest.mark.parametrize("bound", [None, -5.0, -1.0])
def test_fla_recurrent_with_the_in_kernel_gate_passes(fla_modes, bound):
    r = check_case("kda", ["fla:recurrent", "recurrent"], CaseConfig(**CASE, lower_bound=bound))
    assert r.modes["fla:recurrent"].verdict is Verdict.OK, r.modes["fla:recurrent"].reason
    assert r.modes["recurrent"].verdict is Verdict.UNSUPPORTED and "gate_in_kernel" in r.modes["recurrent"].reason


def _broken(wrong):
    """fla:recurrent with its keywords changed by `wrong` (a planted misuse of the bound)."""
    from fla_check.providers import fla as fla_provider

    def call(q, k, v, **kw):
        return fla_provider.kda_recurrent(q, k, v, **wrong(kw))

    return dataclasses.replace(get_op("kda").modes["fla:recurrent"], provider="broken", target=call)


@needs_fla
@pytest.mark.parametrize("wrong,caught", [
    (lambda kw: kw, False),  # the exact call, through the same wrapper: quiet
    (lambda kw: {**kw, "lower_bound": kw["lower_bound"] * 1.02}, True),  # the bound 2% off
    (lambda kw: {**kw, "lower_bound": kw["lower_bound"] * 1.01}, True),  # 1% off
    (lambda kw: {k: v for k, v in kw.items() if k != "lower_bound"}, True),  # dropped: the softplus gate instead
], ids=["exact", "2pct", "1pct", "dropped"])
def test_a_misused_bound_is_caught_an_exact_one_passes(fla_modes, wrong, caught):
    r = check_case("kda", [_broken(wrong)], CaseConfig(**CASE, lower_bound=-5.0))
    mode = r.modes["broken:recurrent"]
    assert (mode.verdict in (Verdict.DIVERGED, Verdict.NONFINITE)) if caught else mode.verdict is Verdict.OK, \
        (mode.verdict, mode.reason)
