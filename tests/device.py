"""The device tests put their tensors on: the backend's (``fla_check.backend.get_backend().device``).

cuda on a GPU host (compiled Triton), cpu elsewhere (the Triton interpreter, with fla-check's shim
installed as in every run). Tests draw their inputs on the CPU from seeded generators, so the same
numbers are drawn everywhere, then move them here; in-process runs pass ``device=DEVICE``.
"""
import torch

from fla_check.backend import get_backend

DEVICE: str = get_backend().device


def assert_same_outputs(a: tuple, b: tuple, tol: float = 1e-5) -> None:
    """Two runs of one kernel that differ only in how it is tiled: equal bits in the interpreter (it sums
    in one order whatever the tile); compiled, within `tol` (a tile's reductions may round differently)."""
    for x, y in zip(a, b, strict=True):
        if DEVICE == "cpu":
            assert torch.equal(x, y)
        else:
            torch.testing.assert_close(x, y, rtol=tol, atol=tol)
