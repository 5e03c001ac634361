"""What a mode declares about its arithmetic: the input of the error model (docs/verdict.md).

A mode's baseline is computed from its declaration, so the bound a kernel is judged against
grows only with rounding the kernel's algorithm really does:

- ``algorithm``: ``"recurrent"`` (one step at a time, state in registers) or ``"chunk"``
  (chunk-local gate cumsum, intra-chunk scores, inter-chunk state passing);
- ``chunk``: the chunk length a chunk mode uses (16, 32, 64);
- ``store``: the dtype its intermediates (UT inverse A, w, u, v_new, chunk states h, intra-chunk
  scores) are stored in between kernels: ``"input"`` (the input dtype: fla) or ``"fp32"``;
- ``dot``: how fp32 ``tl.dot`` operands are treated on a GPU: ``"ieee"`` (exact) or ``"tf32"``
  (operands truncated to TF32, 10 mantissa bits, round toward zero, as measured on an H200);
  ``"fp32-ieee"``: exact for fp32 inputs, TF32 for half inputs (the built-ins' ``dot_precision``);
  half-precision operands are exact products with fp32 accumulation either way;
- ``inverse``: the UT inverse's structure for delta-rule chunk modes: ``"substitution"`` (row by
  row forward substitution, fp32) or ``"blocked"`` (16x16 diagonal blocks merged with dots at the
  ``dot`` precision, as fla's solve_tril); None for ops without one;
- ``state``: the dtype a recurrent mode keeps its state in (``"fp32"`` or ``"input"``).

Under the Triton interpreter a ``"tf32"`` declaration is honoured only when the interpreter
shim applies the truncation (:mod:`fla_check.backend`); otherwise dots are exact there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from fla_check.errors import DeclarationError  # noqa: F401 (re-exported)

EPS32 = 2.0**-23  # fp32 machine epsilon
CANCEL_ULPS = 8.0  # fp32 ulps a cancelling fp32 sum may err by, per term scale and sqrt(step)

ALGORITHMS = ("recurrent", "chunk")
STORES = ("input", "fp32")
DOTS = ("ieee", "tf32", "fp32-ieee")
INVERSES = (None, "substitution", "blocked")
TF32_TRUNC = 2.0**-10  # TF32 truncation of an fp32 operand: relative, round toward zero


@dataclass(frozen=True)
class Arithmetic:
    """A mode's declared arithmetic (see the module doc)."""

    algorithm: str = "recurrent"
    chunk: int = 64
    store: str = "fp32"
    dot: str = "ieee"
    inverse: Optional[str] = None
    state: str = "fp32"

    def __post_init__(self) -> None:
        for name, value, valid in (("algorithm", self.algorithm, ALGORITHMS), ("store", self.store, STORES),
                                   ("dot", self.dot, DOTS), ("inverse", self.inverse, INVERSES),
                                   ("state", self.state, STORES)):
            if value not in valid:
                raise DeclarationError(f"arithmetic {name}={value!r}; valid: {', '.join(map(str, valid))}")
        if self.chunk not in (16, 32, 64, 128):
            raise DeclarationError(f"arithmetic chunk={self.chunk}; valid: 16, 32, 64, 128")

    def tf32(self, half_inputs: bool) -> bool:
        """Whether fp32-operand dots truncate to TF32 for inputs of this kind."""
        return self.dot == "tf32" or (self.dot == "fp32-ieee" and half_inputs)

    def cancellation_allowance(self, half_inputs: bool) -> float:
        """How far a cancelling sum (dg = reverse cumsum of ``q dq - k dk``) may err, relative to
        its terms' reach (:class:`fla_check.verdict.compare.Cancellation`): 8 fp32 ulps (its fp32
        accumulation), or a quarter of a TF32 truncation (2^-12) for fp32 inputs through TF32
        dots -- there every operand of the dots forming dq and dk, the inputs included, is
        truncated independently, so terms equal in exact arithmetic differ. Measured on an H200
        (docs/gpu/features-h200-5): 1.2-7 % of 2^-10 of the reach in 12 fp32 cases of fla's gated
        chunk backward, so a quarter keeps >= 3.4x headroom and still sees a dg 2 % off. Half
        inputs are exact in TF32 (bf16 keeps 7 mantissa bits, fp16 10): fp32-sized there."""
        return TF32_TRUNC / 4 if self.tf32(half_inputs) and not half_inputs else CANCEL_ULPS * EPS32

    def to_json(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "chunk": self.chunk, "store": self.store, "dot": self.dot,
                "inverse": self.inverse, "state": self.state}


RECURRENT_FP32 = Arithmetic()  # ModeSpec's default: a mode that declares nothing is judged as this
# What to declare for a chunk kernel of unknown precision: intermediates stored in the input
# dtype, TF32 dots, a blocked inverse -- the loosest arithmetic fla itself uses (docs/verdict.md)
UNKNOWN_DEFAULT = Arithmetic(algorithm="chunk", chunk=64, store="input", dot="tf32", inverse="blocked")
