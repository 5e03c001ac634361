"""Count Tensor -> Python transfers (each one a host sync on a GPU), and host -> device tensor
constructions, so CPU tests can show a loop makes none per step."""
from __future__ import annotations

import torch

TRANSFERS = ("item", "tolist", "cpu", "__bool__", "__float__", "__int__")


def host_transfers(monkeypatch) -> list[str]:
    """Patch the transfer methods of torch.Tensor (and torch.tensor) to record their names
    in the returned list, in call order."""
    calls: list[str] = []
    for name in TRANSFERS:
        original = getattr(torch.Tensor, name)

        def spy(self, *a, _name=name, _original=original, **kw):
            calls.append(_name)
            return _original(self, *a, **kw)
        monkeypatch.setattr(torch.Tensor, name, spy)
    make = torch.tensor

    def tensor(*a, **kw):
        calls.append("tensor")
        return make(*a, **kw)
    monkeypatch.setattr(torch, "tensor", tensor)
    return calls
