"""The device tests put their tensors on: the backend's (``fla_check.backend.get_backend().device``).

cuda on a GPU host (compiled Triton), cpu elsewhere (the Triton interpreter, with fla-check's shim
installed as in every run). Tests draw their inputs on the CPU from seeded generators, so the same
numbers are drawn everywhere, then move them here; in-process runs pass ``device=DEVICE``.
"""
from fla_check.backend import get_backend

DEVICE: str = get_backend().device
