"""dg through TF32 dots on fp32 inputs (docs/verdict.md, "Cancelling sums"): the allowance for
fp32 inputs through TF32 dots leaves dg's check sharp.

The fla-like GLA proxy (TF32-truncated fp32 dots, forward and backward) run as simple GLA (a
per-head gate, whose dg sums the terms over K: the widest allowance) with dg formed from its own
dq and dk as kernels form it (tests/controls/kernel_dg.py) reproduces the H200 false alarm
(docs/gpu/features-h200-5): at T=1 the exact dg is 0 and the formed one is TF32-sized, DIVERGED
under the fp32-only allowance, OK under the TF32 one; and the same kernel with dg 2 % off is
DIVERGED in dg alone."""
import pytest
import torch
from controls import fla_like
from controls.kernel_dg import formed_dg, kernel_dg_mode

from fla_check.cases import CaseConfig, build_case, upstream
from fla_check.engine.runner import check_case
from fla_check.ops import ModeSpec
from fla_check.verdict.arithmetic import EPS32, Arithmetic
from fla_check.verdict.compare import Verdict

PROXY = fla_like.make_mode("gla", 64)


def _spec(name: str, factor: float = 1.0) -> ModeSpec:
    return ModeSpec(name, "kernel-dg", kernel_dg_mode(PROXY, factor), backward=True, triton=False,
                    arithmetic=fla_like.arithmetic("gla"),  # chunk 64, input-dtype stores, TF32 dots
                    description=f"fla-like GLA proxy, kernel-formed dg x{factor}")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/verdict/conftest.py


def test_formed_dg_equals_autograd_dg_in_exact_arithmetic():
    """The formula the kernels use is the log gate's gradient (float64, no rounding anywhere)."""
    cfg = CaseConfig(op="gla", dtype="float32", B=2, T=21, H=1, K=16, V=16, initial_state=True, seed=3)
    x, up = build_case(cfg, "cpu"), upstream(cfg, "cpu")
    from fla_check.ops import get_op
    from fla_check.references import reference

    leaves = [t.detach().double().requires_grad_() for t in (x.q, x.k, x.v, x.g, x.initial_state)]
    o, ht = reference(get_op("gla").step, leaves[0], leaves[1], leaves[2], leaves[3], None,
                      initial_state=leaves[4], output_final_state=True)
    dq, dk, _, dg, _ = torch.autograd.grad(up.loss(o, ht), leaves)
    assert torch.allclose(formed_dg(leaves[0], leaves[1], dq, dk, ht, up.dht), dg, rtol=1e-10, atol=1e-12)


def test_tf32_formed_dg_at_t1_needs_the_tf32_allowance(monkeypatch):
    """The H200 case's shape: T=1, K=V=16, no initial state, so the exact dg is 0."""
    cfg = CaseConfig(op="simple_gla", dtype="float32", B=1, T=1, H=1, K=16, V=16, seed=8)

    def dg_score():
        mode = check_case("simple_gla", [_spec("formed")], cfg, backward=True).modes["kernel-dg:formed"]
        return next(c for c in mode.outputs if c.name == "dg").score

    assert dg_score() < 1 / 3
    monkeypatch.setattr(Arithmetic, "cancellation_allowance", lambda self, half_inputs: 8 * EPS32)
    assert dg_score() > 1  # fp32 ulps of the terms: the false alarm


@pytest.mark.parametrize("T, K, h0", [(35, 16, True), (176, 64, False)])
def test_tf32_formed_dg_is_ok_and_two_percent_off_is_not(T, K, h0):
    cfg = CaseConfig(op="simple_gla", dtype="float32", B=1, T=T, H=1, K=K, V=K, initial_state=h0, seed=7 + T)
    result = check_case("simple_gla", [_spec("formed"), _spec("formed-x1.02", 1.02)], cfg, backward=True)
    honest, bad = result.modes["kernel-dg:formed"], result.modes["kernel-dg:formed-x1.02"]
    dg = next(c for c in honest.outputs if c.name == "dg")
    assert honest.verdict is Verdict.OK and dg.score < 1 / 3, (dg, honest.reason)
    assert bad.verdict is Verdict.DIVERGED and [c.name for c in bad.outputs if c.verdict is Verdict.DIVERGED] == ["dg"]
