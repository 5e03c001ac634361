"""Op registry: what each op is, its reference recurrence, and its known kernel modes.

Every mode callable has the uniform keyword signature::

    fn(q, k, v, *, g=None, beta=None, scale=None, initial_state=None,
       output_final_state=False, cu_seqlens=None) -> (o, final_state | None)

`o` comes back in `q.dtype`, the final state in float32 `[N,H,K,V]`. A mode that declares
grouped value heads (``ModeSpec.gva``) also takes v, g, beta with HV = r H heads (o and the
states have HV), and a mode that declares in-kernel options (``ModeSpec.options``) takes their
keywords (fla's: ``use_qk_l2norm_in_kernel=True``, ``use_gate_in_kernel=True, A_log, dt_bias``,
``use_beta_sigmoid_in_kernel=True``, KDA's ``lower_bound=<float>``, ``safe_gate=True``); it is never
called with what it does not declare. Modes with
backward are differentiable under torch autograd.

Chunk size and state layout (``CaseConfig.chunk_size``, ``state_v_first``): a mode that lists a
chunk size in ``ModeSpec.chunk_sizes`` takes ``chunk_size=`` with it and is judged with its
declared arithmetic at that chunk length. A mode declared recurrent (``arithmetic.algorithm``)
has no chunks: a case's chunk_size is irrelevant to it, so it runs the case unchanged (without
the keyword) rather than being UNSUPPORTED -- its verdict on the case stays meaningful, and the
other dimensions of the case stay covered for it. Any other mode is UNSUPPORTED for a chunk size
it does not list. ``ModeSpec.state_v_first``: takes ``state_v_first=True`` with its initial and
final states as ``[N, HV, V, K]`` (the harness transposes them, :meth:`fla_check.cases.CaseInputs.state_layout`);
else UNSUPPORTED for v-first cases. ``option_reasons`` give the why-not of ``chunk_size`` and
``state_v_first`` too. Kernel modules are imported lazily
(``"module:attr"``) so that importing the registry never imports triton.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Optional

import torch

from fla_check.references import delta_step, gated_delta_step, gla_step, kda_step, simple_gla_step
from fla_check.references.recurrence import StepFn
from fla_check.verdict.arithmetic import RECURRENT_FP32, Arithmetic
from fla_check.errors import UnknownNameError, ModeRegistrationError, DuplicateModeError  # noqa: F401 (re-exported)

# What the built-in kernels do (read off their sources; docs/verdict.md):
_GLA_CHUNK = Arithmetic("chunk", 64, store="input", dot="fp32-ieee")  # h and operands in the input dtype
_GLA_FUSED = Arithmetic("chunk", 16, store="fp32", dot="fp32-ieee")  # fp32 operands, TF32 dots for half inputs
# delta chunk: w, u, v_new, h stored in the input dtype and dotted as half operands for half inputs
# (A_inv kept fp32, rounded as a W/U operand), q/k-only products exact, the remaining fp32-operand
# dots (the inverse's merges; all dots of fp32 inputs) IEEE for fp32 inputs and TF32 for half
# inputs, 16x16 blocks of the UT inverse merged with dots (fla_check/kernels/delta/chunk.py)
_DELTA_CHUNK = Arithmetic("chunk", 64, store="input", dot="fp32-ieee", inverse="blocked")
_SIMPLE_GLA_CHUNK = Arithmetic("chunk", 64, store="fp32", dot="ieee")  # loads to fp32, h fp32, IEEE dots
# KDA chunk: fp32 intermediates, IEEE fp32 dots, blocked inverse merged with IEEE dots (fla_check/kernels/kda/chunk.py)
_KDA_CHUNK = Arithmetic("chunk", 64, store="fp32", dot="ieee", inverse="blocked")

ALL_DTYPES = frozenset({torch.float32, torch.float16, torch.bfloat16})


@dataclass(frozen=True)
class ModeSpec:
    """One way of computing an op (a built-in Triton kernel or a provider's function)."""

    name: str
    provider: str
    target: str | Callable  # "module:attr" (lazy) or the callable itself
    dtypes: frozenset = ALL_DTYPES
    varlen: bool = True
    initial_state: bool = True
    backward: bool = False
    backward_reason: str = ""
    description: str = ""
    interpreter_reason: str = ""  # non-empty: cannot run under the Triton interpreter, and why
    triton: bool = True  # runs Triton kernels (built-ins, fla); False: plain torch, never limited by the interpreter
    arithmetic: Arithmetic = RECURRENT_FP32  # declared arithmetic: what the error model's baseline emulates
    gva: bool = False  # takes HV = r*H value heads (value head j reads key head j // r)
    options: frozenset = frozenset()  # in-kernel options it takes (names of fla_check.cases.KERNEL_OPTIONS)
    option_reasons: tuple = ()  # (option, why not) for options it does not take, shown as the reason
    caveat: str = ""  # non-empty: the provider changed how the library behaves for this mode (e.g. lifted a
    # guard); every run that checks the mode records it (options.caveats) and prints it
    chunk_sizes: frozenset = frozenset()  # chunk_size= values it takes (module doc: recurrent modes need none)
    state_v_first: bool = False  # takes state_v_first=True ([.., V, K] initial and final states)

    @property
    def chunked(self) -> bool:
        """Whether it computes in chunks (declared arithmetic): a recurrent mode has no chunk size."""
        return self.arithmetic.algorithm == "chunk"

    def takes_chunk_size(self, chunk_size: Optional[int]) -> bool:
        """Whether a case's `chunk_size` is passed to this mode (not for None, nor a recurrent mode)."""
        return chunk_size is not None and self.chunked and chunk_size in self.chunk_sizes

    def declared(self, chunk_size: Optional[int] = None) -> Arithmetic:
        """Its declared arithmetic on a case with `chunk_size` (the chunk length it runs at)."""
        if self.takes_chunk_size(chunk_size):
            return replace(self.arithmetic, chunk=chunk_size)
        return self.arithmetic

    @property
    def qualified(self) -> str:
        return f"{self.provider}:{self.name}"

    def load(self) -> Callable:
        """Import and return the callable (first call imports triton)."""
        if callable(self.target):
            return self.target
        module, _, attr = self.target.partition(":")
        if self.provider == "builtin":
            from fla_check.backend import select_backend

            select_backend()
        return getattr(importlib.import_module(module), attr)

    def unsupported_reason(self, *, dtype: torch.dtype, varlen: bool, initial_state: bool,
                           backward: bool, interpreter: Optional[bool] = None, value_ratio: int = 1,
                           options: Iterable[str] = (), chunk_size: Optional[int] = None,
                           state_v_first: bool = False) -> Optional[str]:
        """Why this mode cannot run a case with these features, or None.

        `interpreter=None` means "as selected in this process" (TRITON_INTERPRET=1).
        """
        if interpreter is None:
            interpreter = os.environ.get("TRITON_INTERPRET") == "1"
        if interpreter and self.interpreter_reason:
            return self.interpreter_reason
        if dtype not in self.dtypes:
            return f"{self.qualified} does not support {str(dtype).removeprefix('torch.')}"
        if varlen and not self.varlen:
            return f"{self.qualified} does not support cu_seqlens"
        if initial_state and not self.initial_state:
            return f"{self.qualified} does not support initial_state"
        if backward and not self.backward:
            return self.backward_reason or f"{self.qualified} has no backward"
        if value_ratio > 1 and not self.gva:
            return f"{self.qualified} does not support grouped value heads (HV = {value_ratio} H)"
        for option in options:
            if option not in self.options:
                return self._why_not(option)
        if chunk_size is not None and self.chunked and chunk_size not in self.chunk_sizes:
            return self._why_not("chunk_size", f"chunk_size={chunk_size}")
        if state_v_first and not self.state_v_first:
            return self._why_not("state_v_first", "state_v_first ([V, K] states)")
        return None

    def _why_not(self, option: str, what: str = "") -> str:
        why = dict(self.option_reasons).get(option, "")
        return f"{self.qualified} does not support {what or option}" + (f": {why}" if why else "")


@dataclass(frozen=True)
class OpSpec:
    """A linear-attention op: its inputs and its step-wise recurrence."""

    name: str
    step: StepFn
    gate: Optional[str]  # "key" ([B,T,H,K]), "head" ([B,T,H]) or None
    has_beta: bool
    description: str
    modes: dict[str, ModeSpec] = field(default_factory=dict)

    @property
    def supports_mask_packing(self) -> bool:
        return self.gate is not None


_K = "fla_check.kernels"
_NO_BWD = "forward only (as in fla: no backward for the per-step gated delta rule)"
_L2NORM = frozenset({"qk_l2norm"})
# the built-in recurrent kernel computes all three of fla's GDN options in fp32 (kernels/delta/recurrent.py)
_GDN_IN_KERNEL = frozenset({"qk_l2norm", "gate_in_kernel", "beta_sigmoid"})
_CHUNKS = frozenset({16, 32, 64})  # every built-in chunk kernel takes chunk_size (16/32/64)
# The built-in recurrent kernels take state_v_first: their h0 / ht (dht / dh0) loads and stores
# switch offsets on a STATE_V_FIRST constexpr (fla_check.kernels.common.state). The chunk kernels
# index their states [K, V] (row stride V) throughout the state pass.
_KV_ONLY = ("state_v_first", "the built-in chunk kernels index their states [K, V]")
_NO_GATE_BETA = (("gate_in_kernel", "the built-in chunk kernels take a log gate (no A_log / dt_bias)"),
                 ("beta_sigmoid", "the built-in chunk kernels take beta, not logits"))
_BUILTIN = (_KV_ONLY,)

_KDA_NO_OPTIONS = (
    ("qk_l2norm", "the built-in kda kernels take normalized q, k"),
    ("gate_in_kernel", "the built-in kda kernels take a log gate (no A_log / dt_bias)"),
    ("beta_sigmoid", "the built-in kda kernels take beta, not logits"),
    ("lower_bound", "the built-in kda kernels take a log gate (no in-kernel lower_bound * sigmoid gate)"),
    ("safe_gate", "fla's safe_gate selects its tensor-core path for bounded gates; the built-in kda kernels "
                  "have one path and no in-kernel gate to bound"),
)

OPS: dict[str, OpSpec] = {
    "gla": OpSpec(
        "gla", gla_step, gate="key", has_beta=False,
        description="Gated Linear Attention, per-key-channel log gate",
        modes={
            "recurrent": ModeSpec("recurrent", "builtin", f"{_K}.gla.recurrent:gla_recurrent",
                                  backward=True, state_v_first=True, description="per-step fused recurrence"),
            "chunk": ModeSpec("chunk", "builtin", f"{_K}.gla.chunk:gla_chunk", backward=True,
                              arithmetic=_GLA_CHUNK, chunk_sizes=_CHUNKS, option_reasons=_BUILTIN,
                              description="chunk-local cumsum, sub-chunk blocks, state passing"),
            "fused_chunk": ModeSpec("fused_chunk", "builtin", f"{_K}.gla.fused_chunk:gla_fused_chunk",
                                    backward_reason="builtin:fused_chunk is forward only", arithmetic=_GLA_FUSED,
                                    option_reasons=(("chunk_size", "its chunk length is fixed (BT=16)"), _KV_ONLY),
                                    description="one program per (batch, head), q*exp(G)/k*exp(-G), BT=16"),
        },
    ),
    "delta": OpSpec(
        "delta", delta_step, gate=None, has_beta=True,
        description="DeltaNet (delta rule, no gate)",
        modes={
            "recurrent": ModeSpec("recurrent", "builtin", f"{_K}.delta.recurrent:delta_recurrent",
                                  backward=True, state_v_first=True, description="per-step fused recurrence"),
            "chunk": ModeSpec("chunk", "builtin", f"{_K}.delta.chunk:delta_chunk", backward=True,
                              arithmetic=_DELTA_CHUNK, chunk_sizes=_CHUNKS, option_reasons=_BUILTIN,
                              description="WY/UT transform, blocked inverse (16x16 blocks merged by dots), "
                                          "state passing"),
        },
    ),
    "gated_delta": OpSpec(
        "gated_delta", gated_delta_step, gate="head", has_beta=True,
        description="Gated DeltaNet, per-head log gate, decay before the delta update",
        modes={
            "recurrent": ModeSpec("recurrent", "builtin",
                                  f"{_K}.gated_delta.recurrent:gated_delta_recurrent",
                                  backward_reason=_NO_BWD, gva=True, options=_GDN_IN_KERNEL,
                                  state_v_first=True,
                                  description="per-step fused recurrence; q/k l2norm, the gate "
                                              "-exp(A_log) softplus(a + dt_bias) and sigmoid beta in the kernel"),
            "chunk": ModeSpec("chunk", "builtin", f"{_K}.gated_delta.chunk:gated_delta_chunk",
                              backward=True, arithmetic=_DELTA_CHUNK, gva=True, options=_L2NORM, chunk_sizes=_CHUNKS,
                              option_reasons=_NO_GATE_BETA + (_KV_ONLY,),
                              description="gated UT transform (blocked inverse), state passing; q/k l2norm by a "
                                          "Triton kernel before it"),
        },
    ),
    "simple_gla": OpSpec(
        "simple_gla", simple_gla_step, gate="head", has_beta=False,
        description="simple GLA, one scalar log gate per head (RetNet/Mamba2-style decay)",
        modes={
            "recurrent": ModeSpec("recurrent", "builtin", f"{_K}.simple_gla.recurrent:simple_gla_recurrent",
                                  backward=True, state_v_first=True, description="per-step fused recurrence"),
            "chunk": ModeSpec("chunk", "builtin", f"{_K}.simple_gla.chunk:simple_gla_chunk", backward=True,
                              arithmetic=_SIMPLE_GLA_CHUNK, chunk_sizes=_CHUNKS, option_reasons=_BUILTIN,
                              description="scalar chunk-local cumsum, exp(G_i - G_j) decay matrix, state passing"),
        },
    ),
    "kda": OpSpec(
        "kda", kda_step, gate="key", has_beta=True,
        description="Kimi Delta Attention, per-key-channel log gate, decay before the delta update",
        modes={
            "recurrent": ModeSpec("recurrent", "builtin", f"{_K}.kda.recurrent:kda_recurrent", backward=True,
                                  option_reasons=_KDA_NO_OPTIONS, state_v_first=True,
                                  description="per-step fused recurrence, checkpointed backward"),
            "chunk": ModeSpec("chunk", "builtin", f"{_K}.kda.chunk:kda_chunk",
                              option_reasons=_KDA_NO_OPTIONS + (_KV_ONLY,),
                              backward_reason="builtin:chunk of kda is forward only", arithmetic=_KDA_CHUNK,
                              chunk_sizes=_CHUNKS,
                              description="per-channel gated UT transform (sub-chunk bounded exponents), state passing"),
        },
    ),
}


def get_op(name: str) -> OpSpec:
    try:
        return OPS[name]
    except KeyError:
        raise UnknownNameError(f"unknown op {name!r}; valid ops: {', '.join(OPS)}") from None


def get_mode(op: OpSpec, name: str) -> ModeSpec:
    """Resolve 'chunk' or 'builtin:chunk' (or a provider-qualified name) for `op`.

    Bare names mean built-in modes; provider modes need their qualified name ('fla:chunk').
    """
    provider, _, bare = name.rpartition(":")
    for mode in op.modes.values():
        if mode.name == bare and (provider or "builtin") == mode.provider:
            return mode
    for key, mode in op.modes.items():
        if key == name:
            return mode
    valid = ", ".join(sorted(m.qualified if m.provider != "builtin" else m.name for m in op.modes.values()))
    raise UnknownNameError(f"unknown mode {name!r} for op {op.name}; valid modes: {valid}")


def register_modes(op_name: str, modes: Iterable[ModeSpec]) -> list[str]:
    """Add provider modes to `op_name` under their qualified names; returns those names.

    Idempotent: re-adding an equal ModeSpec is a no-op. All-or-nothing: nothing is added
    when one mode is invalid. Raises UnknownNameError, ModeRegistrationError, DuplicateModeError.
    """
    op = get_op(op_name)
    new: dict[str, ModeSpec] = {}
    for mode in modes:
        if not isinstance(mode, ModeSpec):
            raise ModeRegistrationError(f"expected a ModeSpec for op {op_name}, got {type(mode).__name__}")
        if mode.provider == "builtin":
            raise ModeRegistrationError(f"provider name 'builtin' is reserved ({mode.qualified})")
        for part in (mode.provider, mode.name):
            if not part or ":" in part or part != part.strip():
                raise ModeRegistrationError(f"invalid mode or provider name {mode.qualified!r}")
        key = mode.qualified
        old = new.get(key, op.modes.get(key))
        if old is not None and old != mode:
            raise DuplicateModeError(f"op {op_name} already has a different mode {key!r}")
        new[key] = mode
    op.modes.update(new)
    return list(new)


def remove_modes(provider: str) -> None:
    """Remove every mode of `provider` from every op (built-in modes cannot be removed)."""
    if provider == "builtin":
        raise ModeRegistrationError("built-in modes cannot be removed")
    for op in OPS.values():
        for key in [k for k, m in op.modes.items() if m.provider == provider]:
            del op.modes[key]
