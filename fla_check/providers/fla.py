"""flash-linear-attention (PyPI ``fla-core``, extra ``fla-check[fla]``) as the ``fla`` provider.

Modes ``fla:chunk`` and ``fla:recurrent`` for gla, simple_gla, delta, gated_delta and kda. fla's positional
orders differ between modes (``chunk_gla(q,k,v,g)`` but ``fused_recurrent_gla(q,k,v,gk)``;
``chunk_gated_delta_rule(q,k,v,g,beta)`` but ``fused_recurrent_gated_delta_rule(q,k,v,g,gk,gv,beta)``),
so every argument is passed by keyword. Gated DeltaNet modes take grouped value heads (fla 0.6.0:
v, g, beta with HV = r H heads, ``i_h = i_hv // (HV // H)``) and the in-kernel options
``use_qk_l2norm_in_kernel``, ``use_gate_in_kernel`` (with ``A_log``, ``dt_bias``) and
``use_beta_sigmoid_in_kernel``, passed by keyword as the case asks for them; KDA modes take the same
three (``dt_bias`` per key channel) and ``lower_bound``, ``chunk_kda`` also ``safe_gate``.

Chunk size and state layout, per fla 0.6.0's signatures (:data:`CHUNK_SIZES`, :data:`STATE_V_FIRST`):
``chunk_size`` is read from ``**kwargs`` by chunk_simple_gla (a power of 2), chunk_delta_rule and
chunk_gated_delta_rule (16/32/64) and chunk_kda (32/64 only); chunk_gla has no ``**kwargs`` and
no chunk_size (64). ``state_v_first`` is a parameter of chunk_gla, chunk_simple_gla,
chunk_gated_delta_rule, chunk_kda and their fused_recurrent counterparts; the delta rule's two
entry points have none (chunk_delta_rule would swallow it in ``**kwargs``: a silently ignored
layout, so those modes are UNSUPPORTED for v-first cases). fla is imported lazily, after
``FLA_DISABLE_BACKEND_DISPATCH=1`` (test the Triton path, not FlashQLA/TileLang) and the
backend selection; this module itself imports neither fla nor triton. :func:`build` imports one
fla module, ``fla.ops.common.chunk_o``, to read fla's own flags for its #640 guard (below).

fla #640: fla refuses gated ``chunk_bwd_dqkwg`` on Hopper GPUs with Triton >= 3.4.0 and < 3.7.1
(a RuntimeError: fla says the kernel gives incorrect results there). The backward of the modes
that reach it (:data:`DQKWG_GATED`) is then declared unsupported, naming #640, instead of every
backward case ending in that error; ``FLA_CHECK_FLA_UNGUARDED=640`` lifts the guard in this
process instead, so that fla-check tests fla's claim, and the modes carry a caveat every run prints.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import os
import sys
import warnings
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Callable, Optional

import torch
from torch import Tensor

from fla_check.ops import ModeSpec
from fla_check.verdict.arithmetic import RECURRENT_FP32, Arithmetic

FLA_CHUNK = Arithmetic("chunk", 64, store="input", dot="tf32")
FLA_DELTA_CHUNK = Arithmetic("chunk", 64, store="input", dot="tf32", inverse="blocked")
# fused_recurrent_delta_rule stores u = v - S^T k in the input dtype for its backward (dbeta, dk)
FLA_DELTA_RECURRENT = Arithmetic("recurrent", store="input")
from fla_check.providers import Provider, ProviderUnavailableError
from fla_check.errors import FlaSetupError, FlaUnguardedError  # noqa: F401 (re-exported)

NAME = "fla"
ModeOutput = tuple[Tensor, Optional[Tensor]]
INSTALL_HINT = "install fla-check[fla] (pip install 'fla-check[fla]': fla-core and einops)"
NO_FP32 = frozenset({torch.float16, torch.bfloat16})
ALL = frozenset({torch.float32, torch.float16, torch.bfloat16})
CHUNK_ON_INTERPRETER = (
    "fla's chunk kernels call `i_t.to(tl.int64)` on a Python-int loop index, which the Triton "
    "interpreter rejects (InterpreterError: 'int' object has no attribute 'to'); run on a GPU"
)
KDA_RECURRENT_NO_BWD = (
    "fla's fused_recurrent_kda is forward only (a plain function, no autograd.Function: its output "
    "has no gradient graph)"
)
GDN_RECURRENT_NO_BWD = (
    "fla's fused_recurrent_gated_delta_rule is forward only (NotImplementedError: \"Backward pass "
    "is not implemented yet ... compute dg without materializing the full hidden states\")"
)


# On a GPU, fla autotunes every new shape (89 s for chunk_gla's first call on an H100); a
# consistency search draws many shapes, so this variable pins each kernel to its first config.
# Configs change tiling, not the algorithm, so the numerics under test stay fla's.
PIN_AUTOTUNE_ENV = "FLA_CHECK_PIN_AUTOTUNE"

# -- fla #640 ------------------------------------------------------------------------------------
# fla 0.6.0's chunk_bwd_dqkwg raises before any launch when
# `g is not None and IS_NVIDIA_HOPPER and TRITON_ABOVE_3_4_0 and not TRITON_ABOVE_3_7_1`, with the
# flags chunk_o imported by name from fla.utils: they are read (and the guard lifted) in chunk_o.
GUARD_MODULE = "fla.ops.common.chunk_o"
GUARD_FLAGS = ("IS_NVIDIA_HOPPER", "TRITON_ABOVE_3_4_0", "TRITON_ABOVE_3_7_1")
LIFT_FLAG = "TRITON_ABOVE_3_7_1"  # chunk_o reads it only in the guard: True there lets the kernel run
UNGUARDED_ENV = "FLA_CHECK_FLA_UNGUARDED"
KNOWN_GUARDS = {"640": "fla #640: gated chunk_bwd_dqkwg refused on Hopper GPUs with Triton >= 3.4.0 and < 3.7.1"}
# The modes whose backward calls chunk_bwd_dqkwg with the gate (read off fla 0.6.0):
# chunk_simple_gla_bwd (fla/ops/simple_gla/chunk.py) and chunk_gated_delta_rule_bwd
# (fla/ops/gated_delta_rule/chunk.py). Not: chunk_delta_rule_bwd (g=None), chunk_gla and chunk_kda
# (their own backward kernels), the fused_recurrent modes (no chunk_o).
DQKWG_GATED = frozenset({("simple_gla", "chunk"), ("gated_delta", "chunk")})
_LIFTED: dict[str, object] = {}  # flag -> the value fla gave it, while fla-check has lifted the guard


def _pin_environment() -> None:
    """FLA_DISABLE_BACKEND_DISPATCH=1 must be set before fla.backends is imported."""
    os.environ["FLA_DISABLE_BACKEND_DISPATCH"] = "1"
    backends = sys.modules.get("fla.backends")
    if backends is not None and not getattr(backends, "_DISPATCH_DISABLED", True):
        raise FlaSetupError("fla was imported before fla-check set FLA_DISABLE_BACKEND_DISPATCH=1, so "
                            "its backend dispatch is active; set it in the environment or import "
                            "fla_check.providers.fla first")


def _before_import() -> None:
    """What must precede importing fla: the dispatch pin, then the backend (TRITON_INTERPRET)."""
    from fla_check.backend import select_backend

    _pin_environment()
    select_backend()


def _import_fla(module: str) -> ModuleType:
    with warnings.catch_warnings():  # fla warns that Triton is unsupported on CPU; the interpreter runs it
        warnings.filterwarnings("ignore", message="Triton is not supported on current platform")
        return importlib.import_module(module)


@functools.lru_cache(maxsize=None)
def fla_ops() -> SimpleNamespace:
    """Import fla's entry points (once), after pinning the environment and the backend; lifts
    the #640 guard here too when asked (a process may call fla without building the provider)."""
    from fla_check.providers import interpreter_shims

    _before_import()
    if interpreter_shims.is_interpreter() or os.environ.get(PIN_AUTOTUNE_ENV) == "1":
        interpreter_shims.pin_autotune(process_wide=True)
    with warnings.catch_warnings():  # fla warns that Triton is unsupported on CPU; the interpreter runs it
        warnings.filterwarnings("ignore", message="Triton is not supported on current platform")
        from fla.ops.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule
        from fla.ops.gla import chunk_gla, fused_recurrent_gla
        from fla.ops.simple_gla import chunk_simple_gla, fused_recurrent_simple_gla
        from fla.ops.kda import chunk_kda, fused_recurrent_kda

    dqkwg_guard()
    return SimpleNamespace(**{f.__name__: f for f in (
        chunk_gla, fused_recurrent_gla, chunk_simple_gla, fused_recurrent_simple_gla, chunk_delta_rule,
        fused_recurrent_delta_rule, chunk_gated_delta_rule, fused_recurrent_gated_delta_rule, chunk_kda,
        fused_recurrent_kda)})


def _fp32(x: Optional[Tensor]) -> Optional[Tensor]:
    return None if x is None else x.float()  # chunk_gla asserts an fp32 initial_state


def _adapter(fla_name: str, gate_kw: Optional[str], takes_beta: bool) -> Callable[..., ModeOutput]:
    """The uniform mode signature around one fla entry point, every argument by keyword."""

    def call(q: Tensor, k: Tensor, v: Tensor, *, g: Optional[Tensor] = None, beta: Optional[Tensor] = None,
             scale: Optional[float] = None, initial_state: Optional[Tensor] = None,
             output_final_state: bool = False, cu_seqlens: Optional[Tensor] = None, **options) -> ModeOutput:
        """`options`: in-kernel option keywords, chunk_size and state_v_first (only those the mode
        declares are ever passed)."""
        kwargs = dict(q=q, k=k, v=v, scale=scale, initial_state=_fp32(initial_state),
                      output_final_state=output_final_state, cu_seqlens=cu_seqlens, **options)
        if gate_kw is not None:
            kwargs[gate_kw] = g
        if takes_beta:
            kwargs["beta"] = beta
        return getattr(fla_ops(), fla_name)(**kwargs)

    call.__name__ = call.__qualname__ = f"fla_{fla_name}"
    call.__doc__ = f"fla.ops {fla_name} with fla-check's uniform mode signature."
    return call


# Built once, so that every Provider built in this process has equal ModeSpecs (idempotent loading).
gla_chunk = _adapter("chunk_gla", "g", False)
gla_recurrent = _adapter("fused_recurrent_gla", "gk", False)
simple_gla_chunk = _adapter("chunk_simple_gla", "g", False)
simple_gla_recurrent = _adapter("fused_recurrent_simple_gla", "g", False)
delta_chunk = _adapter("chunk_delta_rule", None, True)
delta_recurrent = _adapter("fused_recurrent_delta_rule", None, True)
gated_delta_chunk = _adapter("chunk_gated_delta_rule", "g", True)
gated_delta_recurrent = _adapter("fused_recurrent_gated_delta_rule", "g", True)
kda_chunk = _adapter("chunk_kda", "g", True)
kda_recurrent = _adapter("fused_recurrent_kda", "g", True)


GDN_OPTIONS = frozenset({"qk_l2norm", "gate_in_kernel", "beta_sigmoid"})  # fla 0.6.0, both GDN entry points
# fla 0.6.0: chunk_kda takes lower_bound and safe_gate, fused_recurrent_kda lower_bound only
KDA_CHUNK_OPTIONS = GDN_OPTIONS | {"lower_bound", "safe_gate"}
KDA_RECURRENT_OPTIONS = GDN_OPTIONS | {"lower_bound"}
KDA_RECURRENT_NO_SAFE_GATE = (
    "fla's fused_recurrent_kda has no safe_gate (a chunk-kernel path for bounded gates; its **kwargs would "
    "swallow the keyword unchecked)"
)


def unguarded() -> frozenset[str]:
    """The fla guards FLA_CHECK_FLA_UNGUARDED asks to lift (comma-separated; '640'), or
    FlaUnguardedError naming the known ones."""
    raw = os.environ.get(UNGUARDED_ENV, "")
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = sorted(names - KNOWN_GUARDS.keys())
    if unknown:
        known = "; ".join(f"{k} ({why})" for k, why in KNOWN_GUARDS.items())
        raise FlaUnguardedError(f"{UNGUARDED_ENV}={raw}: unknown fla guard {', '.join(unknown)}; known: {known}")
    return names


@dataclass(frozen=True)
class Guard:
    """fla's #640 guard in this process: whether fla's own condition holds, and whether it is lifted."""

    fires: bool = False  # fla refuses gated chunk_bwd_dqkwg here (its flags as fla set them)
    requested: bool = False  # FLA_CHECK_FLA_UNGUARDED=640
    triton: str = ""

    @property
    def reason(self) -> str:
        return (f"fla refuses gated chunk_bwd_dqkwg on Hopper GPUs with Triton >= 3.4.0 and < 3.7.1 (fla #640: "
                f"'produces incorrect results'; here Triton {self.triton}): upgrade Triton to >= 3.7.1, or set "
                f"{UNGUARDED_ENV}=640 to test fla's claim")

    @property
    def caveat(self) -> str:
        if not self.requested:
            return ""
        if not self.fires:
            return (f"{UNGUARDED_ENV}=640 set, but fla's #640 guard does not fire here (not a Hopper GPU, or "
                    f"Triton {self.triton} outside [3.4.0, 3.7.1)): nothing lifted")
        return (f"{UNGUARDED_ENV}=640: fla's #640 guard lifted in this process ({GUARD_MODULE}.{LIFT_FLAG} "
                f"= True): gated chunk_bwd_dqkwg runs on a Hopper GPU with Triton {self.triton}, where fla "
                "says it produces incorrect results")

    def fields(self) -> dict:
        """The ModeSpec fields of a mode whose backward reaches gated chunk_bwd_dqkwg."""
        if self.requested:
            return {"caveat": self.caveat}
        return {"backward": False, "backward_reason": self.reason} if self.fires else {}


def _guard_module() -> Optional[ModuleType]:
    """fla's chunk_o (where the guard is), imported after the environment pin; None without fla."""
    if any(importlib.util.find_spec(m) is None for m in ("fla", "einops")):
        return None
    _before_import()
    return _import_fla(GUARD_MODULE)


def dqkwg_guard() -> Guard:
    """fla's #640 guard, read from fla's own flags in chunk_o (no kernel call); lifted there when
    FLA_CHECK_FLA_UNGUARDED=640 asks and it fires. Idempotent: a lifted flag reads as fla set it."""
    requested = "640" in unguarded()
    module = _guard_module()
    if module is None:
        return Guard(requested=requested)
    absent = [f for f in GUARD_FLAGS if f not in _LIFTED and not hasattr(module, f)]
    if absent and requested:
        raise FlaUnguardedError(f"{UNGUARDED_ENV}=640: {GUARD_MODULE} has no {', '.join(absent)}; this fla's "
                                "#640 guard is not the one fla-check knows how to lift")
    flags = {f: _LIFTED.get(f, getattr(module, f, None)) for f in GUARD_FLAGS}
    hopper, above_3_4_0, above_3_7_1 = (flags[f] for f in GUARD_FLAGS)
    fires = not absent and bool(hopper and above_3_4_0 and not above_3_7_1)
    if fires and requested and LIFT_FLAG not in _LIFTED:
        _LIFTED[LIFT_FLAG] = getattr(module, LIFT_FLAG)
        setattr(module, LIFT_FLAG, True)
    triton = getattr(getattr(module, "triton", None), "__version__", "?")
    return Guard(fires=fires, requested=requested, triton=triton)


def restore_guard() -> None:
    """Undo the lift (fla's flag value back in chunk_o); a no-op when nothing was lifted."""
    module = sys.modules.get(GUARD_MODULE)
    for flag, value in list(_LIFTED.items()):
        if module is not None:
            setattr(module, flag, value)
        del _LIFTED[flag]


def _guarded(modes: dict[str, list[ModeSpec]], guard: Guard) -> dict[str, list[ModeSpec]]:
    """`modes` with the #640 declaration on the modes of DQKWG_GATED."""
    fields = guard.fields()
    return {op: [dataclasses.replace(m, **fields) if fields and (op, m.name) in DQKWG_GATED else m for m in specs]
            for op, specs in modes.items()}


_CHUNKS = frozenset({16, 32, 64})
# fla 0.6.0: chunk_size accepted by each chunk entry point (from **kwargs), and why not where it is not
CHUNK_SIZES = {"chunk_gla": frozenset(), "chunk_simple_gla": _CHUNKS, "chunk_delta_rule": _CHUNKS,
               "chunk_gated_delta_rule": _CHUNKS, "chunk_kda": frozenset({32, 64})}
NO_CHUNK_SIZE = {"chunk_gla": "chunk_gla has no chunk_size parameter (nor **kwargs): its chunks are 64",
                 "chunk_kda": "chunk_kda takes chunk_size 32 or 64 (ValueError otherwise)"}
# entry points with a state_v_first parameter ([N, H, V, K] initial and final states)
STATE_V_FIRST = frozenset({"chunk_gla", "fused_recurrent_gla", "chunk_simple_gla", "fused_recurrent_simple_gla",
                           "chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule", "chunk_kda",
                           "fused_recurrent_kda"})
NO_STATE_V_FIRST = {"chunk_delta_rule": "chunk_delta_rule has no state_v_first (its **kwargs would swallow it)",
                    "fused_recurrent_delta_rule": "fused_recurrent_delta_rule has no state_v_first parameter"}


def _mode(name: str, fn: Callable[..., ModeOutput], *, dtypes: frozenset = ALL, backward: bool = True,
          backward_reason: str = "", interpreter_reason: str = "", arithmetic: Arithmetic = RECURRENT_FP32,
          description: str = "", gva: bool = False, options: frozenset = frozenset(),
          option_reasons: tuple = ()) -> ModeSpec:
    """A ModeSpec of `fn` (chunk size and state layout as fla's entry point takes them)."""
    entry = fn.__name__.removeprefix("fla_")
    reasons = tuple((option, why) for option, why in (("chunk_size", NO_CHUNK_SIZE.get(entry)),
                                                      ("state_v_first", NO_STATE_V_FIRST.get(entry))) if why)
    return ModeSpec(name, NAME, fn, dtypes=dtypes, backward=backward, backward_reason=backward_reason,
                    interpreter_reason=interpreter_reason, arithmetic=arithmetic, description=description,
                    gva=gva, options=options, option_reasons=option_reasons + reasons,
                    chunk_sizes=CHUNK_SIZES.get(entry, frozenset()), state_v_first=entry in STATE_V_FIRST)


def build() -> Provider:
    """The fla Provider; imports only fla's chunk_o, to read the #640 guard's flags (none without fla)."""
    guard = dqkwg_guard()
    # fla 0.6.0's chunk kernels store h, A_inv, w, u, v_new in the input dtype, cast dot operands
    # to it, run fp32 tl.dot at the default precision (TF32 on sm80+) and merge solve_tril's 16x16
    # blocks with dots whose precision the autotuner picks (ieee or tf32: declared tf32, the
    # looser of the two). Measured on an H100: rel-RMSE 8.6e-4 with fp32 inputs (docs/fla-gpu.md).
    chunk = functools.partial(_mode, "chunk", interpreter_reason=CHUNK_ON_INTERPRETER, arithmetic=FLA_CHUNK)
    delta_chunk_mode = functools.partial(_mode, "chunk", interpreter_reason=CHUNK_ON_INTERPRETER,
                                         arithmetic=FLA_DELTA_CHUNK)
    recurrent = functools.partial(_mode, "recurrent")
    return Provider(NAME, _guarded({
        "gla": [chunk(gla_chunk, description="fla.ops.gla.chunk_gla"),
                recurrent(gla_recurrent, description="fla.ops.gla.fused_recurrent_gla (gate as gk)")],
        # chunk_simple_gla: chunk_fwd_h(states_in_fp32=False) keeps h in the input dtype, dots at
        # the default precision: the same declaration as chunk_gla
        "simple_gla": [chunk(simple_gla_chunk, description="fla.ops.simple_gla.chunk_simple_gla (gate as g)"),
                       recurrent(simple_gla_recurrent,
                                 description="fla.ops.simple_gla.fused_recurrent_simple_gla (gate as g)")],
        "delta": [delta_chunk_mode(delta_chunk, dtypes=NO_FP32,
                        description="fla.ops.delta_rule.chunk_delta_rule (asserts no fp32)"),
                  recurrent(delta_recurrent, arithmetic=FLA_DELTA_RECURRENT,
                            description="fla.ops.delta_rule.fused_recurrent_delta_rule")],
        "gated_delta": [delta_chunk_mode(gated_delta_chunk, gva=True, options=GDN_OPTIONS,
                                         description="fla.ops.gated_delta_rule.chunk_gated_delta_rule"),
                        recurrent(gated_delta_recurrent, backward=False, backward_reason=GDN_RECURRENT_NO_BWD,
                                  arithmetic=FLA_DELTA_RECURRENT, gva=True, options=GDN_OPTIONS,
                                  description="fla.ops.gated_delta_rule.fused_recurrent_gated_delta_rule")],
        # chunk_kda: fla's KDA chunk pipeline stores Akk/Aqk, A_inv, w, u, h in the input dtype like the
        # GDN one (declared as it, the loosest fla arithmetic); fused_recurrent_kda: fp32 state, fp32 u
        "kda": [delta_chunk_mode(kda_chunk, options=KDA_CHUNK_OPTIONS,
                                 description="fla.ops.kda.chunk_kda (g [B,T,H,K], beta by keyword)"),
                recurrent(kda_recurrent, backward=False, backward_reason=KDA_RECURRENT_NO_BWD,
                          options=KDA_RECURRENT_OPTIONS, option_reasons=(("safe_gate", KDA_RECURRENT_NO_SAFE_GATE),),
                          description="fla.ops.kda.fused_recurrent_kda (forward only)")],
    }, guard), description="flash-linear-attention (fla-core) Triton kernels")


def provider() -> Provider:
    """Entry point ``fla``: the fla Provider, or ProviderUnavailableError when fla-core is absent."""
    missing = [m for m in ("fla", "einops") if importlib.util.find_spec(m) is None]
    if missing:
        raise ProviderUnavailableError(f"the fla provider needs {' and '.join(missing)}: {INSTALL_HINT}")
    _pin_environment()
    return build()
