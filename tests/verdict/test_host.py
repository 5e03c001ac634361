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


def test_to_host_casts_once_per_dtype():
    """Scalars of mixed dtypes (counts, fp32, fp64) cost a stack and a cast per dtype, not an op each."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        names: list = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Ops.names.append(func.name())
            return func(*args, **(kwargs or {}))

    values = [t for i in range(8) for t in (torch.tensor([1.0, -1.0]).isnan().sum(), torch.tensor(i + 0.5),
                                            torch.tensor(-i / 3, dtype=torch.float64))]
    want = [x for i in range(8) for x in (0.0, i + 0.5, -i / 3)]
    with Ops():
        assert to_host(values) == want
    assert Ops.names.count("aten::_to_copy") <= 3 and Ops.names.count("aten::stack") == 3
