"""verdict/host.to_host: many device scalars in one transfer, in order, counts exact."""
import torch

from fla_check.verdict.host import to_host


def test_to_host_keeps_order_and_exact_counts():
    big = torch.tensor(2**53, dtype=torch.int64)
    assert to_host([torch.tensor(1.5), big, torch.tensor([True]).sum(), torch.tensor(-0.25, dtype=torch.float64)]) \
        == [1.5, float(2**53), 1.0, -0.25]
    assert to_host([]) == []


def test_to_host_fetches_once(monkeypatch):
    from host_spy import host_transfers

    values = [torch.randn(3).sum() for _ in range(10)]
    calls = host_transfers(monkeypatch)
    out = to_host(values)
    assert calls == ["cpu", "tolist"] and len(out) == 10
