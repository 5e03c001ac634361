"""One test case: a frozen, JSON-round-trippable configuration and the tensors it stands for.

A :class:`CaseConfig` names everything that decides a case (op, dtype, shape, gate regime,
beta range, initial state, packing and its segment layout, mask fill, seed). The tensors are
built from it by :func:`build_case` with a seeded ``torch.Generator``, so a configuration
printed in a report rebuilds exactly the same inputs anywhere.

Packing:
- ``none``: every batch row is one sequence.
- ``mask``: each row is packed with several sequences (``segments[b]`` = their lengths);
  the op's gate is filled with ``mask_fill`` at every segment start after the first, the way
  users pack with ``gk.masked_fill(reset_mask, fill)``.
- ``varlen``: ``B == 1`` and ``segments[0]`` are the ``cu_seqlens`` lengths (0 allowed).

Grouped value heads and in-kernel options (Gated DeltaNet, as fla 0.6.0 takes them by keyword):
``value_ratio`` r makes v, g, beta, the output and the states carry HV = r H heads (q, k keep H);
``qk_l2norm`` passes raw q, k (scaled by ``qk_scale``: small norms make fla's 1e-6 epsilon
count) for ``use_qk_l2norm_in_kernel``; ``gate_in_kernel`` passes the raw gate input ``a``
(``logsigmoid`` skipped, the gate regime spreads ``a``) plus ``A_log``, ``dt_bias`` [HV];
``beta_sigmoid`` passes beta logits. KDA takes the same three (its ``dt_bias`` per key channel,
[HV * K]) plus ``lower_bound`` (a float < 0, with ``gate_in_kernel``: the bounded gate
``lower_bound * sigmoid(exp(A_log) (a + dt_bias))``) and ``safe_gate`` (fla's kernel path for gates
bounded in [-5, 0); fla requires ``lower_bound`` in [-5, 0) with the in-kernel gate, and pre-computed
gates must be bounded by the caller: only the former is drawn, so ``safe_gate`` needs both). The
reference applies each exactly (:mod:`fla_check.references.options`).

Chunking and state layout (every op): ``chunk_size`` (None: not passed, the kernel's own default,
64 for fla's and the built-in chunk kernels; else 16, 32 or 64, passed as ``chunk_size=``) and
``state_v_first`` (states in fla's V-first ``[N, HV, V, K]`` layout: the case's initial state is
handed to the mode transposed and the mode's final state read back transposed, in one place,
:meth:`CaseInputs.state_layout`; the reference is unchanged). Which modes take them:
:class:`fla_check.ops.ModeSpec` (``chunk_sizes``, ``state_v_first``).

Mask fills are floats or the symbols ``-0.1max``, ``-max``, ``-inf``, resolved against
``torch.finfo`` of the kernel dtype; a float beyond the dtype's range becomes -inf, as casting
an fp32 gate would make it.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from fla_check.errors import CaseError  # noqa: F401 (re-exported)
from fla_check.references.options import Prepare, make_prepare

Fill = Union[str, float]

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
DTYPE_ALIASES = {"fp32": "float32", "f32": "float32", "fp16": "float16", "f16": "float16",
                 "half": "float16", "bf16": "bfloat16"}
PACKINGS = ("none", "mask", "varlen")
GATE_OPS = {"gla": "key", "gated_delta": "head", "delta": None, "simple_gla": "head", "kda": "key"}
BETA_OPS = {"gla": False, "delta": True, "gated_delta": True, "simple_gla": False, "kda": True}
GVA_RATIOS = (1, 2, 3, 4, 8)  # HV / H as shipped models use them (Qwen3-Next 2, Qwen3.5 up to 4, ratio 3 too)
GVA_OPS = frozenset({"gated_delta"})
# case field -> fla keyword of the in-kernel option (passed as True; lower_bound passes its value)
KERNEL_OPTIONS = {"qk_l2norm": "use_qk_l2norm_in_kernel", "gate_in_kernel": "use_gate_in_kernel",
                  "beta_sigmoid": "use_beta_sigmoid_in_kernel", "lower_bound": "lower_bound",
                  "safe_gate": "safe_gate"}
_GDN_OPTIONS = ("qk_l2norm", "gate_in_kernel", "beta_sigmoid")
OP_OPTIONS: dict[str, tuple[str, ...]] = {"gated_delta": _GDN_OPTIONS, "kda": _GDN_OPTIONS + ("lower_bound", "safe_gate")}
OPTION_OPS = frozenset(OP_OPTIONS)
OPTION_REQUIRES = {"lower_bound": ("gate_in_kernel",), "safe_gate": ("gate_in_kernel", "lower_bound")}
SAFE_GATE_MIN = -5.0  # fla 0.6.0 chunk_kda: safe_gate with the in-kernel gate needs lower_bound in [-5, 0)
DEFAULT_LOWER_BOUND = -5.0  # fla's recommended value (chunk_kda docstring), the one models ship
CHUNK_SIZES = (16, 32, 64)  # explicit chunk_size values a case may ask for (None: the kernel's default)
STATE_LAYOUTS = ("kv", "vk")  # state layouts: [K, V] (the default) and [V, K] (state_v_first)
SYMBOLIC_FILLS = ("-0.1max", "-max", "-inf")
GUARD_STEPS = 64  # NaN padding around every kernel input, in time steps (one chunk)
_FILL_RE = re.compile(r"^-(\d*\.?\d*)\*?(?:finfo\.)?max$")


def op_options(op: str) -> tuple[str, ...]:
    """The in-kernel options `op` takes (names of KERNEL_OPTIONS, in catalog order)."""
    return OP_OPTIONS.get(op, ())


def usable_options(names) -> tuple[str, ...]:
    """`names` without the options whose prerequisites (OPTION_REQUIRES) are missing from them."""
    names = tuple(names)
    return tuple(n for n in names if all(r in names for r in OPTION_REQUIRES.get(n, ())))


def option_values(names) -> dict[str, Any]:
    """Case field values that switch the options `names` on (lower_bound: DEFAULT_LOWER_BOUND)."""
    return {n: DEFAULT_LOWER_BOUND if n == "lower_bound" else True for n in names}


def dtype_name(dtype: Union[str, torch.dtype]) -> str:
    """Canonical dtype name ('float32', 'float16', 'bfloat16') from a name, alias or torch dtype."""
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    name = DTYPE_ALIASES.get(dtype.strip().lower(), dtype.strip().lower())
    if name not in DTYPES:
        raise CaseError(f"unknown dtype {dtype!r}; use one of: float32 (fp32), float16 (fp16), bfloat16 (bf16)")
    return name


def canonical_fill(fill: Union[str, float, int]) -> Fill:
    """'-0.1max', '-max', '-inf' (symbols) or a finite float <= 0; raises CaseError otherwise.
    A fill is a log-gate (the state is multiplied by exp(fill)): a positive one would amplify
    the state at a sequence start instead of resetting it."""
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        value = float(fill)
    else:
        text = str(fill).strip().lower().replace(" ", "")
        match = _FILL_RE.match(text)
        if match:
            coef = match.group(1)
            if coef in ("", "1", "1.0"):
                return "-max"
            if coef in ("0.1", ".1"):
                return "-0.1max"
            raise CaseError(f"mask fill {fill!r}: only -0.1max and -max are symbolic; give other values as floats")
        try:
            value = float(text)
        except ValueError:
            raise CaseError(f"mask fill {fill!r} is not a number nor one of {', '.join(SYMBOLIC_FILLS)}") from None
    if not value <= 0:  # NaN, +inf and positive values
        raise CaseError(f"mask fill {fill!r}: a log-gate fill must be <= 0 (a negative log-decay, "
                        "e.g. -20, -0.1max or -inf)")
    return "-inf" if value == -math.inf else value


def resolve_fill(fill: Fill, dtype: torch.dtype) -> float:
    """The numeric gate value of a (canonical) fill in `dtype`."""
    fill = canonical_fill(fill)
    if fill == "-inf":
        return -math.inf
    if fill == "-max":
        return -torch.finfo(dtype).max
    if fill == "-0.1max":
        return -0.1 * torch.finfo(dtype).max
    return float(fill)


@dataclass(frozen=True)
class CaseConfig:
    """Everything that decides one case; tensors are rebuilt from it by :func:`build_case`."""

    op: str
    dtype: str
    B: int
    T: int
    H: int
    K: int
    V: int
    gate_norm: float = 1.0  # g = logsigmoid(x) / gate_norm, gate_norm in [0.01, 10]
    zero_gate_frac: float = 0.0  # this fraction of gates is exactly 0 (no decay)
    near_zero_decay: bool = False  # gates scaled by 1e-3: exp(g) close to 1
    beta_max: float = 1.0  # beta ~ U[0, beta_max] (1 or 2)
    initial_state: bool = False
    packing: str = "none"
    segments: tuple[tuple[int, ...], ...] = ()  # per row: segment lengths (see module doc)
    mask_fill: Optional[Fill] = None  # gate value at segment starts (packing == "mask")
    seed: int = 0
    value_ratio: int = 1  # GVA: v, g, beta, o and the states have HV = value_ratio * H heads
    qk_l2norm: bool = False  # use_qk_l2norm_in_kernel: raw q, k (times qk_scale) are passed
    qk_scale: float = 1.0  # magnitude of the raw q, k of qk_l2norm cases (1 otherwise)
    gate_in_kernel: bool = False  # use_gate_in_kernel: raw a, A_log, dt_bias are passed
    beta_sigmoid: bool = False  # use_beta_sigmoid_in_kernel: beta logits are passed
    lower_bound: Optional[float] = None  # KDA with gate_in_kernel: g = lower_bound * sigmoid(exp(A_log) (a + dt_bias))
    safe_gate: bool = False  # KDA: fla's safe_gate kernel path (needs lower_bound in [-5, 0))
    chunk_size: Optional[int] = None  # chunk_size= passed to the mode (None: its default, 64)
    state_v_first: bool = False  # states handed over and read back as [.., V, K] (state_v_first=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        object.__setattr__(self, "segments", tuple(tuple(int(n) for n in row) for row in self.segments))
        if self.mask_fill is not None:
            object.__setattr__(self, "mask_fill", canonical_fill(self.mask_fill))
        if self.lower_bound is not None:
            if isinstance(self.lower_bound, bool):
                raise CaseError(f"lower_bound must be a float, got {self.lower_bound!r}")
            object.__setattr__(self, "lower_bound", float(self.lower_bound))
        _validate(self)

    # -- derived views -------------------------------------------------------------------
    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def HV(self) -> int:
        """Value heads (of v, g, beta, o and the states): value_ratio * H."""
        return self.value_ratio * self.H

    @property
    def options(self) -> tuple[str, ...]:
        """The in-kernel options this case asks for (names of KERNEL_OPTIONS)."""
        return tuple(name for name in KERNEL_OPTIONS if getattr(self, name) not in (False, None))

    @property
    def state_layout(self) -> str:
        """'kv' ([K, V] states, the default) or 'vk' (state_v_first)."""
        return "vk" if self.state_v_first else "kv"

    @property
    def varlen(self) -> bool:
        return self.packing == "varlen"

    @property
    def num_states(self) -> int:
        """N of the state tensors: B, or the number of varlen sequences."""
        return len(self.segments[0]) if self.varlen else self.B

    def segment_starts(self, row: int = 0) -> list[int]:
        """Start positions of the segments of `row` (``[0]`` when unpacked)."""
        if self.packing == "none":
            return [0]
        lengths = self.segments[row]
        return [sum(lengths[:i]) for i in range(len(lengths))]

    def cu_seqlens(self) -> Optional[list[int]]:
        """cu_seqlens for varlen cases, else None."""
        if not self.varlen:
            return None
        return self.segment_starts(0) + [self.T]

    def max_segment_len(self) -> int:
        """The longest run of steps sharing one state (the accumulation length)."""
        if self.packing == "none":
            return self.T
        return max((n for row in self.segments for n in row), default=0)

    def describe_segments(self) -> str:
        """Human-readable segment layout, e.g. 'row 0: starts [0, 5, 6] lengths [5, 1, 9]'."""
        if self.packing == "none":
            return "unpacked (one sequence per row)"
        label = "cu_seqlens" if self.varlen else "reset mask"
        rows = [f"row {b}: starts {self.segment_starts(b)} lengths {list(lengths)}"
                for b, lengths in enumerate(self.segments)]
        return f"{label}; " + "; ".join(rows)

    def short(self) -> str:
        """One-line id in the spirit of fla's test ids."""
        heads = f"H{self.H}" + (f"HV{self.HV}" if self.value_ratio > 1 else "")
        parts = [self.op, self.dtype, f"B{self.B}T{self.T}{heads}K{self.K}V{self.V}"]
        parts += [f"lower_bound={self.lower_bound:g}" if o == "lower_bound" else o for o in self.options]
        if self.chunk_size is not None:
            parts.append(f"chunk{self.chunk_size}")
        if self.state_v_first:
            parts.append("vk")
        if self.qk_l2norm and self.qk_scale != 1.0:
            parts.append(f"qk{self.qk_scale:g}")
        if GATE_OPS[self.op]:
            parts.append(f"n{self.gate_norm:g}")
        if self.packing != "none":
            parts.append(f"{self.packing}{[list(r) for r in self.segments]}")
        if self.packing == "mask":
            parts.append(f"fill={self.mask_fill}")
        if self.initial_state:
            parts.append("h0")
        parts.append(f"seed={self.seed}")
        return "-".join(parts)

    # -- JSON ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Every field, but the GVA, in-kernel option, chunk size and state layout fields only
        when not at their default (reports of cases without them read as before)."""
        data = asdict(self)
        data["segments"] = [list(row) for row in self.segments]
        for name in _OPTIONAL_FIELDS:
            if data[name] == _DEFAULTS[name]:
                del data[name]
        return data

    @classmethod
    def from_json(cls, data: Union[dict[str, Any], str]) -> "CaseConfig":
        if isinstance(data, str):
            data = json.loads(data)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise CaseError(f"unknown case fields: {', '.join(sorted(unknown))}")
        data = dict(data)
        data["segments"] = tuple(tuple(row) for row in data.get("segments", ()))
        return cls(**data)


_OPTIONAL_FIELDS = ("value_ratio", "qk_l2norm", "qk_scale", "gate_in_kernel", "beta_sigmoid", "lower_bound", "safe_gate",
                    "chunk_size", "state_v_first")
_DEFAULTS = {f.name: f.default for f in fields(CaseConfig)}


def _validate(c: CaseConfig) -> None:
    if c.op not in GATE_OPS:
        raise CaseError(f"unknown op {c.op!r}; valid ops: {', '.join(GATE_OPS)}")
    for name in ("B", "H", "K", "V"):
        if getattr(c, name) < 1:
            raise CaseError(f"{name} must be >= 1, got {getattr(c, name)}")
    if c.T < 1:
        raise CaseError(f"T must be >= 1, got {c.T}")
    if not 0.0 <= c.zero_gate_frac <= 1.0:
        raise CaseError(f"zero_gate_frac must be in [0, 1], got {c.zero_gate_frac}")
    if c.gate_norm <= 0:
        raise CaseError(f"gate_norm must be > 0, got {c.gate_norm}")
    if c.packing not in PACKINGS:
        raise CaseError(f"packing must be one of {PACKINGS}, got {c.packing!r}")
    _validate_options(c)
    _validate_segments(c)


def _validate_options(c: CaseConfig) -> None:
    if c.value_ratio not in GVA_RATIOS:
        raise CaseError(f"value_ratio must be one of {GVA_RATIOS}, got {c.value_ratio}")
    if c.value_ratio > 1 and c.op not in GVA_OPS:
        raise CaseError(f"op {c.op} has no grouped value heads (value_ratio {c.value_ratio}); "
                        f"GVA ops: {', '.join(sorted(GVA_OPS))}")
    if c.options and c.op not in OPTION_OPS:
        raise CaseError(f"op {c.op} takes no in-kernel options ({', '.join(c.options)})")
    other = [o for o in c.options if o not in op_options(c.op)]
    if other:
        raise CaseError(f"op {c.op} does not take {', '.join(other)}; it takes {', '.join(op_options(c.op))}")
    _validate_bound(c)
    if not c.qk_scale > 0 or (not c.qk_l2norm and c.qk_scale != 1.0):
        raise CaseError(f"qk_scale must be > 0, and 1 unless qk_l2norm is set; got {c.qk_scale}")
    if c.beta_sigmoid and c.beta_max != 1.0:
        raise CaseError("beta_sigmoid cases pass logits (sigmoid in (0, 1)): beta_max must be 1")
    if c.gate_in_kernel and c.packing == "mask":
        raise CaseError("gate_in_kernel cannot pack by a gate fill (the fill would go through softplus); "
                        "pack with cu_seqlens")
    if c.chunk_size is not None and (isinstance(c.chunk_size, bool) or c.chunk_size not in CHUNK_SIZES):
        raise CaseError(f"chunk_size must be one of {', '.join(map(str, CHUNK_SIZES))} or None (the kernel's "
                        f"default), got {c.chunk_size!r}")
    if not isinstance(c.state_v_first, bool):
        raise CaseError(f"state_v_first must be true or false, got {c.state_v_first!r}")


def _validate_bound(c: CaseConfig) -> None:
    """lower_bound and safe_gate, as fla 0.6.0 takes them (see the module doc)."""
    if c.lower_bound is not None:
        if not (math.isfinite(c.lower_bound) and c.lower_bound < 0):
            raise CaseError(f"lower_bound must be a finite log-decay < 0, got {c.lower_bound}")
        if not c.gate_in_kernel:
            raise CaseError("lower_bound needs gate_in_kernel (fla uses it only for the gate it computes: "
                            "lower_bound * sigmoid(exp(A_log) (a + dt_bias)))")
    if c.safe_gate and (not c.gate_in_kernel or c.lower_bound is None or not SAFE_GATE_MIN <= c.lower_bound < 0):
        raise CaseError(f"safe_gate needs gate_in_kernel and lower_bound in [{SAFE_GATE_MIN:g}, 0) (fla's "
                        "ValueError; pre-computed gates bounded by the caller are not drawn)")


def _validate_segments(c: CaseConfig) -> None:
    if c.packing == "none":
        if c.segments:
            raise CaseError("segments given but packing is 'none'")
        return
    if c.packing == "mask":
        if GATE_OPS[c.op] is None:
            raise CaseError(f"op {c.op} has no gate to mask; pack with cu_seqlens (packing='varlen')")
        if c.mask_fill is None:
            raise CaseError("packing='mask' needs a mask_fill")
        if len(c.segments) != c.B:
            raise CaseError(f"mask packing needs one segment row per batch row ({c.B}), got {len(c.segments)}")
        if any(n < 1 for row in c.segments for n in row):
            raise CaseError("mask-packed segments must have length >= 1")
    if c.varlen:
        if c.B != 1 or len(c.segments) != 1:
            raise CaseError("varlen packing needs B == 1 and exactly one row of sequence lengths")
        if any(n < 0 for n in c.segments[0]) or not c.segments[0]:
            raise CaseError("varlen lengths must be >= 0 and at least one sequence")
    for b, row in enumerate(c.segments):
        if sum(row) != c.T:
            raise CaseError(f"segment lengths of row {b} sum to {sum(row)}, not T={c.T}")


def guarded(x: Optional[Tensor], fill: float = math.nan) -> Optional[Tensor]:
    """A contiguous copy of `x` placed inside a NaN-filled buffer (`fill`: 0 for a plain call).

    ``GUARD_STEPS`` time steps' worth of NaN (``prod(shape[2:])`` elements each) sit on both
    sides, so a kernel that reads past either end of the tensor (an unmasked load of a head
    dim that is not a power of two, a sequence offset off by one) gets NaN -- reported as
    NONFINITE -- instead of whatever happens to lie next in memory. Reads inside the tensor
    (row t's padding lanes are row t+1's data) are not guarded; the last row's are.
    """
    if x is None:
        return None
    if not x.is_floating_point():
        return x.clone()
    pad = GUARD_STEPS * max(1, math.prod(x.shape[2:]))
    buf = torch.full((x.numel() + 2 * pad,), fill, dtype=x.dtype, device=x.device)
    view = buf[pad:pad + x.numel()].view(x.shape)
    view.copy_(x)
    return view


@dataclass
class CaseInputs:
    """The kernel inputs of one case (in the kernel dtype) plus the packing metadata."""

    q: Tensor
    k: Tensor
    v: Tensor
    g: Optional[Tensor]
    beta: Optional[Tensor]
    initial_state: Optional[Tensor]  # float32 [N,H,K,V]
    cu_seqlens: Optional[Tensor]  # int64 [N+1]
    reset_mask: Optional[Tensor]  # bool [B,T], True at segment starts > 0 (mask packing)
    options: tuple[str, ...] = ()  # in-kernel options (names of KERNEL_OPTIONS)
    A_log: Optional[Tensor] = None  # float32 [HV] (gate_in_kernel)
    dt_bias: Optional[Tensor] = None  # float32 [HV], KDA's [HV * K] (gate_in_kernel)
    lower_bound: Optional[float] = None  # KDA's bounded in-kernel gate
    chunk_size: Optional[int] = None  # chunk_size= for the mode (None: not passed)
    state_v_first: bool = False  # the mode takes and returns [.., V, K] states (see state_layout)

    @property
    def prepare(self) -> Optional[Prepare]:
        """What the kernel is asked to do to its raw inputs (options, GVA), for the reference and
        the emulation; None for a plain case (the GVA expansion alone is done by the recurrence)."""
        if not self.options:
            return None
        return make_prepare(qk_l2norm="qk_l2norm" in self.options, beta_sigmoid="beta_sigmoid" in self.options,
                            A_log=self.A_log, dt_bias=self.dt_bias, key_gate=self.g is not None and self.g.dim() == 4,
                            lower_bound=self.lower_bound)

    def option_kwargs(self) -> dict[str, Any]:
        """The options' keywords for a mode call (fla's names; A_log, dt_bias as fp32 copies)."""
        out: dict[str, Any] = {KERNEL_OPTIONS[name]: True for name in self.options}
        if "lower_bound" in self.options:
            out["lower_bound"] = self.lower_bound
        if "gate_in_kernel" in self.options:
            out.update(A_log=self.A_log.clone(), dt_bias=None if self.dt_bias is None else self.dt_bias.clone())
        if self.chunk_size is not None:
            out["chunk_size"] = self.chunk_size
        return out

    def state_layout(self, fn: Callable, guard: float = math.nan) -> Callable:
        """`fn` as the harness calls every mode: [K, V] states in and out. For a state_v_first
        case the mode gets ``state_v_first=True`` and the initial state transposed to [.., V, K]
        (a contiguous copy inside a `guard`-filled buffer, :func:`guarded`), and its final state
        is read back transposed; autograd flows through both transposes (dh0 comes back [K, V]).
        Otherwise `fn` itself. This is the only place the layout is adapted: modes never are."""
        if not self.state_v_first:
            return fn

        def v_first(q: Tensor, k: Tensor, v: Tensor, *, initial_state: Optional[Tensor] = None, **kwargs):
            h0 = None if initial_state is None else guarded(initial_state.transpose(-1, -2), guard)
            return _state_read_back(fn(q, k, v, initial_state=h0, state_v_first=True, **kwargs))

        v_first.__name__ = v_first.__qualname__ = f"{getattr(fn, '__name__', 'mode')}_state_v_first"
        return v_first

    def mode_args(self, guard: float = math.nan) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v for one mode call: NaN-guarded copies (see :func:`guarded`; `guard`: the fill)."""
        return guarded(self.q, guard), guarded(self.k, guard), guarded(self.v, guard)

    def mode_kwargs(self, guard: float = math.nan) -> dict[str, Any]:
        """Keyword arguments of the uniform mode signature (copies: kernels may write; float
        inputs NaN-guarded, see :func:`guarded`)."""
        return dict(g=guarded(self.g, guard), beta=guarded(self.beta, guard), scale=None,
                    initial_state=guarded(self.initial_state, guard), output_final_state=True,
                    cu_seqlens=None if self.cu_seqlens is None else self.cu_seqlens.clone(),
                    **self.option_kwargs())

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
        return self.q, self.k, self.v, self.g, self.beta


def _state_read_back(raw: Any) -> Any:
    """(o, ht^T) of a v-first mode's (o, ht [.., V, K]); anything else unchanged (a malformed
    return value is the runner's to report)."""
    if isinstance(raw, (tuple, list)) and len(raw) == 2 and isinstance(raw[1], Tensor) and raw[1].dim() >= 2:
        return raw[0], raw[1].transpose(-1, -2)
    return raw


def build_case(config: CaseConfig, device: Union[str, torch.device] = "cpu") -> CaseInputs:
    """Build the inputs of `config` deterministically from its seed (on CPU, then moved)."""
    gen = torch.Generator().manual_seed(config.seed)
    B, T, H, K, V, HV = config.B, config.T, config.H, config.K, config.V, config.HV
    q = torch.randn(B, T, H, K, generator=gen)
    k = torch.randn(B, T, H, K, generator=gen)
    v = torch.randn(B, T, HV, V, generator=gen)
    if config.qk_l2norm:  # raw q, k: the kernel normalizes them
        q, k = q * config.qk_scale, k * config.qk_scale
    elif BETA_OPS[config.op]:
        k = F.normalize(k, p=2.0, dim=-1)
    g = _build_gate(config, gen)
    beta = torch.rand(B, T, HV, generator=gen) * config.beta_max if BETA_OPS[config.op] else None
    h0 = torch.randn(config.num_states, HV, K, V, generator=gen) if config.initial_state else None
    A_log = dt_bias = None
    if config.gate_in_kernel:
        A_log, dt_bias = _gate_parameters(GATE_OPS[config.op], HV, K, gen)
    if beta is not None and config.beta_sigmoid:  # logits whose sigmoid spreads over (0, 1)
        beta = torch.logit((beta / config.beta_max).clamp(1e-3, 1 - 1e-3))
    reset = _reset_mask(config)
    dt = config.torch_dtype
    if g is not None and reset is not None:  # filled in fp32: fills beyond dt's range cast to -inf
        g = g.masked_fill(reset.view((B, T) + (1,) * (g.dim() - 2)), resolve_fill(config.mask_fill, dt))
    cast = lambda x: None if x is None else x.to(device=device, dtype=dt)  # noqa: E731
    g = cast(g)
    cu = config.cu_seqlens()
    return CaseInputs(
        q=cast(q), k=cast(k), v=cast(v), g=g, beta=cast(beta),
        initial_state=None if h0 is None else h0.to(device),
        cu_seqlens=None if cu is None else torch.tensor(cu, dtype=torch.int64, device=device),
        reset_mask=None if reset is None else reset.to(device),
        options=config.options,
        A_log=None if A_log is None else A_log.to(device),
        dt_bias=None if dt_bias is None else dt_bias.to(device),
        lower_bound=config.lower_bound,
        chunk_size=config.chunk_size, state_v_first=config.state_v_first,
    )


def _gate_parameters(kind: str, HV: int, K: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(A_log [HV], dt_bias) of an in-kernel gate, as models initialize them. KDA (`kind` "key",
    dt_bias per key channel [HV * K]): A = U(1, 16), dt_bias = softplus^-1(dt), dt = logU(1e-3, 0.1)
    (fla's tests). Gated DeltaNet (per head): A = U(0, 16) and, per head by a fair coin, fla's
    GatedDeltaNet layer's dt_bias = softplus^-1(logU(1e-3, 0.1)) or Qwen3-Next / Qwen3.5's
    dt_bias = 1; the latter puts a + dt_bias into softplus's bend and linear part (x in [2, 20))
    for ordinary a, where a wrong saturation threshold shows."""
    if kind == "key":
        A_log = torch.empty(HV).uniform_(1.0, 16.0, generator=gen).log()
    else:
        A_log = (16.0 * (1.0 - torch.rand(HV, generator=gen))).log()  # U(0, 16], never log 0
    channels = HV * K if kind == "key" else HV
    dt = torch.empty(channels).uniform_(math.log(1e-3), math.log(0.1), generator=gen).exp()
    dt_bias = dt + torch.log(-torch.expm1(-dt))  # softplus(dt_bias) = dt
    if kind != "key":
        dt_bias = torch.where(torch.rand(HV, generator=gen) < 0.5, torch.ones(HV), dt_bias)
    return A_log, dt_bias


def _build_gate(config: CaseConfig, gen: torch.Generator) -> Optional[Tensor]:
    kind = GATE_OPS[config.op]
    if kind is None:
        return None
    shape = (config.B, config.T, config.HV) + ((config.K,) if kind == "key" else ())
    x = torch.randn(shape, generator=gen)
    g = x / config.gate_norm if config.gate_in_kernel else F.logsigmoid(x) / config.gate_norm
    if config.near_zero_decay:
        g = g * 1e-3
    if config.zero_gate_frac > 0:
        g = g.masked_fill(torch.rand(shape, generator=gen) < config.zero_gate_frac, 0.0)
    return g


def _reset_mask(config: CaseConfig) -> Optional[Tensor]:
    if config.packing != "mask":
        return None
    mask = torch.zeros(config.B, config.T, dtype=torch.bool)
    for b in range(config.B):
        for start in config.segment_starts(b)[1:]:
            mask[b, start] = True
    return mask


# -- upstream gradients of backward cases (drawn from the case seed) -----------------------
# input name (as in the uniform signature) -> gradient name
GRAD_NAMES: dict[str, str] = {"q": "dq", "k": "dk", "v": "dv", "g": "dg", "beta": "dbeta", "initial_state": "dh0"}
GRADIENTS = frozenset(GRAD_NAMES.values())
_UPSTREAM_SALT = 0x9E3779B97F4A7C15  # upstream gradients use their own stream, not the inputs'


@dataclass(frozen=True)
class Upstream:
    """The upstream gradients of a case (float64)."""

    do: Tensor  # [B,T,HV,V]
    dht: Tensor  # [N,HV,K,V]

    def loss(self, o: Tensor, ht: Tensor) -> Tensor:
        return (o.double() * self.do).sum() + (ht.double() * self.dht).sum()


def upstream(config: CaseConfig, device: Union[str, torch.device] = "cpu") -> Upstream:
    """do and dht of `config`, deterministic in its seed (drawn on CPU, then moved), held as
    float64 but representable in the dtypes autograd hands them to a mode in: ``do`` in the case
    dtype (o's), ``dht`` in fp32 (ht's). Every pass, the reference included, then differentiates
    the same scalar, and the cast of ``do`` into a mode's backward loses nothing."""
    gen = torch.Generator().manual_seed((config.seed ^ _UPSTREAM_SALT) % 2**63)
    do = torch.randn(config.B, config.T, config.HV, config.V, generator=gen, dtype=torch.float64)
    dht = torch.randn(config.num_states, config.HV, config.K, config.V, generator=gen, dtype=torch.float64)
    do = do.to(config.torch_dtype).double()
    dht = dht.float().double()
    return Upstream(do.to(device), dht.to(device))
