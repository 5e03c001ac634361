"""fla's Gated DeltaNet modes with grouped value heads and every in-kernel option, by keyword,
against the float64 reference that applies them exactly (fla's recurrent kernel runs in the
interpreter on CPU; its chunk kernels need a GPU)."""
import pytest

from fla_check.cases import CaseConfig
from fla_check.verdict.compare import Verdict
from fla_check.engine.runner import check_case
from optional_deps import needs_fla


@needs_fla
@pytest.mark.parametrize("options", [dict(), dict(qk_l2norm=True, qk_scale=1e-3, gate_in_kernel=True, beta_sigmoid=True)])
def test_fla_recurrent_gva_ratio_3_with_options(fla_modes, options):
    config = CaseConfig(op="gated_delta", dtype="fp32", B=1, T=19, H=2, K=16, V=16, value_ratio=3,
                        initial_state=True, seed=5, **options)
    r = check_case("gated_delta", ["fla:recurrent", "recurrent"], config)
    assert r.modes["fla:recurrent"].verdict is Verdict.OK, r.modes["fla:recurrent"].reason
    # the built-in recurrent kernel takes the same in-kernel options (l2norm, gate, beta sigmoid)
    assert r.modes["recurrent"].verdict is Verdict.OK, r.modes["recurrent"].reason


@needs_fla
def test_fla_gate_in_kernel_is_checked_not_ignored(fla_modes):
    """Dropping use_gate_in_kernel (the raw a used as a log gate) is caught."""
    from fla_check.providers import fla as fla_provider

    config = CaseConfig(op="gated_delta", dtype="fp32", B=1, T=19, H=1, K=16, V=16, value_ratio=2,
                        gate_in_kernel=True, seed=2)
    import dataclasses
    from fla_check.ops import get_op

    mode = get_op("gated_delta").modes["fla:recurrent"]

    def no_gate(q, k, v, **kw):
        kw.pop("use_gate_in_kernel"), kw.pop("A_log"), kw.pop("dt_bias")
        return fla_provider.gated_delta_recurrent(q, k, v, **kw)

    broken = dataclasses.replace(mode, provider="broken", target=no_gate)
    r = check_case("gated_delta", [broken], config)
    assert r.modes["broken:recurrent"].verdict in (Verdict.DIVERGED, Verdict.NONFINITE)
