"""One mode call (engine/call.py): guarded copies made outside the poisoned scope, the mode's own
allocations poisoned inside it."""
import math

import torch

import fla_check.engine.memory as memory
from fla_check.cases import CaseConfig, build_case
from fla_check.engine.call import call_mode
from fla_check.engine.memory import is_sentinel


def test_guards_are_built_before_the_poisoned_scope_and_the_mode_is_poisoned(monkeypatch):
    intercepted: list[str] = []
    original = memory._Poison.__torch_dispatch__

    def spy(self, func, types, args=(), kwargs=None):
        intercepted.append(func.overloadpacket.__name__)
        return original(self, func, types, args, kwargs)

    monkeypatch.setattr(memory._Poison, "__torch_dispatch__", spy)
    seen = {}

    def mode(q, k, v, g=None, beta=None, scale=None, initial_state=None, output_final_state=True,
             cu_seqlens=None):
        buf = q.untyped_storage()
        seen["guarded"] = buf.nbytes() > q.numel() * q.element_size()
        seen["guard_nan"] = math.isnan(torch.tensor([], dtype=q.dtype).set_(buf).flatten()[0].item())
        o = torch.empty_like(v)
        seen["poisoned"] = bool(is_sentinel(o).all())
        return v * 1.0, torch.zeros(q.shape[0], q.shape[2], q.shape[3], v.shape[3])

    inputs = build_case(CaseConfig(op="gla", dtype="float32", B=1, T=8, H=1, K=4, V=4, seed=0), "cpu")
    (o, _), grads, _ = call_mode(mode, inputs, None, "cpu")
    assert seen == {"guarded": True, "guard_nan": True, "poisoned": True}
    assert torch.equal(o, inputs.v) and grads == {}
    assert "empty_like" in intercepted  # the mode's allocation went through the poison
    assert "full" not in intercepted and "copy_" not in intercepted  # the guards did not
