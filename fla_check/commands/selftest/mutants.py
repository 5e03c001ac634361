"""Catalog of planted kernel bugs (mutants) for ``fla-check selftest``.

Each :class:`Mutant` rewrites ONE function of a built-in kernel module at run time (exact
textual ``(old, new)`` replacements, each matching exactly once inside that function, applied
by :func:`fla_check.commands.selftest.mutate.load_mutant`); the shipped kernels are never
touched. The mutated
module's entry is exposed as a mode of the op (a :class:`~fla_check.ops.ModeSpec` named
``mutant:<mode>``, with the capabilities of the clean mode) by importing fresh copies of the
modules between the mode's registered entry and the mutated module with their imported
functions rebound to the mutant's -- so ``gated_delta:chunk`` runs its own wrapper over a
mutated ``fla_check.kernels.delta.chunk`` (or ``common.ut_transform``) exactly as shipped.

Shared kernels get one mutant per op (``delta.*`` and ``gated_delta.*``): same rewrite, but
the gated one is exercised through the gated entry point and the gated search space.

Each targeted function's source hash is recorded in :data:`REVIEWED_HASHES`; when a kernel
edit changes one, tests/commands/test_mutants.py names the mutants to review and the command
that records the new hashes (``python3 -m fla_check.commands.selftest.mutants --rehash``).

A mutant with ``backward=True`` rewrites a backward kernel (a gradient scaled by 1.02): the
selftest searches it with gradients (``fla-check run --backward``); its forward is clean.

The field catalog (issue 15 part 7): a mutant with ``field`` plants a bug users reported, named by
its public thread ("fla #1134"; ``fla-check selftest --field`` runs only those, see
docs/field-bugs-caught.md); ``repeat`` turns the determinism check on for its search (a mutant
caught by NONDETERMINISTIC); ``gpu_only`` (the reason) marks one that needs shapes or hardware
the CPU interpreter cannot reach: skipped there, with the reason shown; ``large_index`` makes the
selftest check it on the large-index case (``fla-check run --large-index``, docs/large-index.md)
instead of searching: a pack past 2^31 elements (GPU). ``state_layouts`` makes its search draw
those state layouts (``fla-check run --state-layouts``): a bug in the V-first ([V, K]) state path
is only reached by a search that draws v-first cases.

:class:`UsageCase` is not a source mutant: a clean kernel used in a way known to break it
(packing by a -0.1*finfo.max gate fill), which the normal search must flag in the chunk mode
and not in the recurrent one.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional, Sequence

from fla_check.commands.selftest.mutate import function_hash, load_mutant, mutate_source
from fla_check.errors import MutationError, SelectionError
from fla_check.ops import ModeSpec, get_op

MUTANT_PROVIDER = "mutant"
_KERNELS = "fla_check.kernels"

KINDS: dict[str, str] = {
    "no-carry": "state not carried across chunks",
    "cumsum-off-by-one": "off-by-one at a chunk boundary in the gate cumsum",
    "gate-after-write": "gate applied after the write instead of before",
    "scale": "missing or doubled scale",
    "ut-sign": "UT inverse sign flipped",
    "beta-side": "beta applied to the wrong side",
    "h0-ignored": "initial state ignored",
    "cu-seqlens": "cu_seqlens offset off by one",
    "fp16-accumulator": "fp32 accumulator demoted to the input dtype",
    "unmasked-load": "masked load without mask for non-power-of-two K",
    "mask-fill": "-0.1*finfo.max packing fill (usage-level)",
    "o-late": "output x1.02 from the second chunk on",
    "ht-late": "final state x0.98 when the sequence spans more than one chunk",
    "fp16-state": "inter-chunk state held in fp16",
    "o-small": "output x1.003 everywhere (a 0.3% error)",
    "grad-scale": "one gradient x1.02 in a backward kernel",
    "decay-off-by-one": "intra-chunk decay exp(G_i - G_j) taken one position off",
    "last-gate-missing": "inter-chunk state decay misses the chunk's last gate",
    "gate-channel": "per-channel gate read from the wrong key channel",
    "gate-late": "gate read one step late",
    "gva-map": "grouped value heads: value head j reads key head j (or j mod H) instead of j // r",
    "l2norm-eps": "q/k l2norm epsilon outside the square root (x / (|x| + eps))",
    "l2norm-order": "q scaled before the l2norm (the norm removes the scale)",
    "softplus-saturation": "in-kernel gate: softplus(x) replaced by x too early (saturation threshold 1, not 20)",
    "beta-sigmoid": "in-kernel beta: the logits used without their sigmoid",
    "config-specific": "wrong at one autotune config only (fla #640-like miscompile at one block size)",
    "unwritten-tail": "output of a sequence's last partial chunk never stored (memory check: poisoned outputs)",
    "unwritten-state": "final state of an empty sequence never stored (memory check: poisoned outputs)",
    "overread-last-row": "load mask one element too wide: the last row reads past the tensor (fla #1134)",
    "past-cu-seqlens": "the last sequence runs to the tensor's T, not cu_seqlens[-1] (fla #892)",
    "non-contiguous": "strides ignored: inputs assumed contiguous (SGLang #22312; invariance check layout)",
    "split-state": "initial state dropped for short sequences (fla #285/#494; invariance check split)",
    "row-mixing": "batch index off by one for rows > 0 (invariance check batch)",
    "nondeterministic": "result changes between two identical calls (determinism check: FLA_CHECK_REPEAT)",
    "beta-bf16": "beta rounded to bf16 before the fp32 state update",
    "gate-bf16": "gate rounded to bf16 inside the fp32 recurrence",
    "gate-overflow": "exp(g_last - g) factorised as exp(g_last) * exp(-g): overflow, inf * 0 = NaN",
    "int32-offset": "int32 pointer offsets: wrap past 2^31 elements (GPU-only shapes)",
    "v-first-transposed": "state stored with the [K, V] offsets under state_v_first ([V, K] states)",
}


@dataclass(frozen=True)
class Mutant:
    """A planted bug: rewrite `function` of `module` with `replacements`; breaks `modes` of `op`."""

    id: str
    kind: str  # a key of KINDS
    op: str
    modes: tuple[str, ...]
    module: str
    function: str  # the function of `module` the replacements apply in ('name' or 'Class.name')
    replacements: tuple[tuple[str, str], ...]
    description: str
    backward: bool = False  # the bug is in a backward kernel: the selftest searches with gradients
    configs: str = "first"  # the autotune configs the selftest searches under (``--configs``)
    field: Optional[str] = None  # the public thread of the field bug it plants ("fla #1134"); None: synthetic
    gpu_only: str = ""  # why it can only be planted and caught on a GPU (skipped on CPU with this reason)
    repeat: str = "off"  # the determinism check's policy the selftest searches under (FLA_CHECK_REPEAT)
    large_index: bool = False  # checked on the large-index case (fla_check.engine.large_index), not searched
    state_layouts: Optional[tuple[str, ...]] = None  # the state layouts its search draws (``--state-layouts``;
    # None: [K, V] only, as every run that does not ask for them)

    @property
    def target(self) -> str:
        """``module:function``, the key of its reviewed hash."""
        return f"{self.module}:{self.function}"

    def source(self) -> str:
        """The mutated module source (MutationError when the function is missing or a pattern
        does not match exactly once inside it)."""
        return mutate_source(_module_source(self.module), list(self.replacements), self.function)

    def mode_specs(self) -> list[ModeSpec]:
        """One ``mutant:<mode>`` ModeSpec per affected mode, calling the mutated code."""
        tag = re.sub(r"\W", "_", self.id)
        mutated = load_mutant(self.module, list(self.replacements), tag=tag, function=self.function)
        specs = []
        for mode in self.modes:
            clean = get_op(self.op).modes[mode]
            fn = _entry_through(mutated, self.module, clean.target, tag)
            specs.append(dataclasses.replace(clean, provider=MUTANT_PROVIDER, target=fn,
                                             description=f"{self.id}: {self.description}"))
        return specs


@dataclass(frozen=True)
class UsageCase:
    """A clean kernel misused: `flagged` modes must fail, `clean` modes must pass."""

    id: str
    kind: str
    op: str
    flagged: tuple[str, ...]
    clean: tuple[str, ...]
    mask_fills: tuple[str, ...]
    description: str
    field: Optional[str] = None  # the public thread of the field bug; None: synthetic
    gpu_only: str = ""  # never: usage cases run on CPU

    @property
    def modes(self) -> tuple[str, ...]:
        return self.flagged + self.clean


def _module_source(module: str) -> str:
    return inspect.getsource(importlib.import_module(module))


# -- exposing a mutated module through a mode's entry point ---------------------------------
def _defined_in(value: object, module: str) -> bool:
    """Whether `value` (a function, class or Triton JIT function) was defined in `module`."""
    return getattr(getattr(value, "fn", value), "__module__", None) == module


def _kernel_imports(name: str) -> set[str]:
    """Kernel modules whose functions `name` imported (by the defining module of its globals)."""
    out = set()
    for value in vars(importlib.import_module(name)).values():
        if isinstance(value, ModuleType):
            continue
        src = getattr(getattr(value, "fn", value), "__module__", None)
        if isinstance(src, str) and src.startswith(_KERNELS) and src != name:
            out.add(src)
    return out


def _chain(entry: str, target: str) -> list[str]:
    """Modules from `entry` that (transitively) import `target`, dependencies first (excl. target)."""
    order: list[str] = []
    reaches: dict[str, bool] = {target: True}

    def visit(name: str) -> bool:
        if name not in reaches:
            reaches[name] = False
            reaches[name] = any([visit(dep) for dep in sorted(_kernel_imports(name))])
            if reaches[name]:
                order.append(name)
        return reaches[name]

    visit(entry)
    return order


def _entry_through(mutated: ModuleType, original: str, target: str | Callable, tag: str) -> Callable:
    """The mode entry `target` ("module:attr") with every path to `original` going to `mutated`."""
    if callable(target):
        raise ValueError("mutants need a mode whose target is a 'module:attr' string")
    module, _, attr = target.partition(":")
    replaced: dict[str, ModuleType] = {original: mutated}
    for name in _chain(module, original) if module != original else []:
        copy = load_mutant(name, [], tag=f"{tag}_via")
        for key, value in list(vars(copy).items()):
            for src, new in replaced.items():
                if not isinstance(value, ModuleType) and _defined_in(value, src):
                    setattr(copy, key, getattr(new, getattr(getattr(value, "fn", value), "__name__", key)))
        replaced[name] = copy
    return getattr(replaced[module], attr)


# -- the catalog ----------------------------------------------------------------------------
_GLA_R = f"{_KERNELS}.gla.recurrent"
_GLA_C = f"{_KERNELS}.gla.chunk"
_GLA_F = f"{_KERNELS}.gla.fused_chunk"
_DELTA_R = f"{_KERNELS}.delta.recurrent"
_DELTA_C = f"{_KERNELS}.delta.chunk"
_CUMSUM = f"{_KERNELS}.common.cumsum"
_L2NORM = f"{_KERNELS}.common.l2norm"
_GATES = f"{_KERNELS}.common.gates"
_UT = f"{_KERNELS}.common.ut_transform"
_KDA_R = f"{_KERNELS}.kda.recurrent"
_KDA_C = f"{_KERNELS}.kda.chunk"
_VARLEN = f"{_KERNELS}.common.varlen"

# cu_seqlens read one token late: in the shared prologue helper (every kernel of the mode that
# calls it), or at one kernel's call site (that kernel only), varlen packs only in both cases.
_BOS_LOAD_LATE = ("        bos = tl.load(cu_seqlens + i_n).to(tl.int64)\n",
                  "        bos = tl.load(cu_seqlens + i_n).to(tl.int64) + 1\n")
_SEQ_BOUNDS_CALL = "    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)\n"
_BOS_LATE = "    if IS_VARLEN:\n        bos = bos + 1\n"

# GLA recurrent forward: the loop head and the state update (both also exist in the backward
# kernel; the function scope picks the forward one, the context lines pin the spot).
_GLA_R_LOOP = ("        n_mv = m_v & (o_v * 0 + t < seq_len)\n"
               "        n_q = tl.load(p_q, mask=n_mk, other=0.0).to(tl.float32) * scale\n")
_GLA_R_UPDATE = ("        b_h = b_h * tl.exp(b_g)[:, None] + b_k[:, None] * b_v[None, :]\n"
                 "        b_o = tl.sum(b_h * b_q[:, None], 0)\n")
_DELTA_R_GVA = "    i_h = i_hv // (HV // H)\n"
# the delta rule's recurrent forward loads step t (n_*) while it computes step t - 1 (b_*)
_DELTA_R_LOADS = ("        n_q = tl.load(p_q, mask=n_mk, other=0.0).to(tl.float32)\n"
                  "        n_k = tl.load(p_k, mask=n_mk, other=0.0).to(tl.float32)\n"
                  "        n_v = tl.load(p_v, mask=n_mv, other=0.0).to(tl.float32)\n")
_DELTA_R_NORM = ("        if USE_QK_L2NORM:\n"
                 "            n_q = n_q / tl.sqrt(tl.sum(n_q * n_q, 0) + L2NORM_EPS)\n"
                 "            n_k = n_k / tl.sqrt(tl.sum(n_k * n_k, 0) + L2NORM_EPS)\n"
                 "        n_q = n_q * scale\n")
_DELTA_R_DECAY = "            b_h *= tl.exp(b_g)\n"
_DELTA_R_WRITE = ("        b_v = b_v - tl.sum(b_h * b_k[:, None], 0)\n"
                  "        if STORE_ERR:\n"
                  "            tl.store(p_err, b_v, mask=done)\n"
                  "            p_err += HV * V\n"
                  "        b_h += b_k[:, None] * (b_v * b_beta)[None, :]\n")
_DELTA_R_READ = ("        b_h += b_k[:, None] * (b_v * b_beta)[None, :]\n"
                 "        b_o = tl.sum(b_h * b_q[:, None], 0)\n")
_DELTA_C_LOOP = ("    for i_t in range(0, NT):\n"
                 "        p_h = h + ((boh + i_t) * H + i_h) * K * V\n")
_DELTA_BLOCKS = (1, 2, 3, 4)  # the state pass keeps its state in key blocks b_h1..b_h4
_GLA_C_LOOP = ("    for i_t in range(0, tl.cdiv(seq_len, BT)):\n"
               "        tl.store(h + ((boh + i_t) * H + i_h) * K * V + o_s, b_h.to(h.dtype.element_ty), mask=m_h)\n")
_GLA_F_LOOP = ("    for i_t in range(0, tl.cdiv(seq_len, BT)):\n"
               "        o_t = i_t * BT + o_c\n")
_RESET = "        if i_t > 0:\n            b_h = tl.zeros([BK, BV], dtype=tl.float32)\n"
_DELTA_RESET = "        if i_t > 0:\n" + "".join(f"            b_h{i} = tl.zeros([BK, BV], dtype=tl.float32)\n"
                                              for i in _DELTA_BLOCKS)


def _delta_family(op: str) -> list[Mutant]:
    """Mutants of the delta-rule kernels shared by DeltaNet and Gated DeltaNet, for `op`."""
    p = op
    return [
        Mutant(f"{p}.chunk.no-carry", "no-carry", op, ("chunk",), _DELTA_C, "chunk_delta_h_kernel",
               ((_DELTA_C_LOOP, _DELTA_C_LOOP.replace("    for i_t in range(0, NT):\n", "    for i_t in range(0, NT):\n" + _DELTA_RESET)),),
               "state passing restarts from zero at every chunk after the first"),
        Mutant(f"{p}.chunk.ut-sign", "ut-sign", op, ("chunk",), _UT, "ut_transform_fwd_kernel",
               (("    b_Ai = -tl.where(m_A, b_A, 0.0)\n", "    b_Ai = tl.where(m_A, b_A, 0.0)\n"),),
               "UT inverse (I - A)^-1 instead of (I + A)^-1 (the GDN paper's typo)"),
        Mutant(f"{p}.chunk.beta-side", "beta-side", op, ("chunk",), _UT, "ut_transform_fwd_kernel",
               (("    b_A = b_A * b_beta[:, None]\n", "    b_A = b_A * b_beta[None, :]\n"),),
               "A = K K^T diag(beta) instead of diag(beta) K K^T in the UT transform"),
        Mutant(f"{p}.chunk.scale", "scale", op, ("chunk",), _DELTA_C, "chunk_delta_o_kernel",
               (("    b_o = (b_o + tl.dot(b_A, b_v, input_precision=DOT_PRECISION)) * scale\n",
                 "    b_o = b_o * scale + tl.dot(b_A, b_v, input_precision=DOT_PRECISION)\n"),),
               "scale missing on the intra-chunk term of the output"),
        Mutant(f"{p}.chunk.h0-ignored", "h0-ignored", op, ("chunk",), _DELTA_C, "chunk_fwd",
               (("USE_INITIAL_STATE=h0 is not None, STORE_FINAL_STATE=output_final_state, **meta,",
                 "USE_INITIAL_STATE=False, STORE_FINAL_STATE=output_final_state, **meta,"),),
               "initial state not passed to the state-passing kernel"),
        Mutant(f"{p}.chunk.cu-seqlens", "cu-seqlens", op, ("chunk",), _DELTA_C, "chunk_delta_h_kernel",
               ((_SEQ_BOUNDS_CALL, _SEQ_BOUNDS_CALL + _BOS_LATE),),
               "state passing reads each sequence start one token late (cu_seqlens[n] + 1)"),
        Mutant(f"{p}.chunk.unmasked-load", "unmasked-load", op, ("chunk",), _DELTA_C, "chunk_delta_o_kernel",
               (("        b_q = tl.load(q + row_k[:, None] * K + o_k[None, :], mask=m_t[:, None] & m_k[None, :],\n",
                 "        b_q = tl.load(q + row_k[:, None] * K + o_k[None, :], mask=m_t[:, None],\n"),),
               "q loaded in the output kernel without the K mask (reads past K when K < BK)"),
        Mutant(f"{p}.recurrent.scale", "scale", op, ("recurrent",), _DELTA_R, "delta_rule_recurrent_fwd_kernel",
               ((_DELTA_R_NORM, _DELTA_R_NORM.replace("        n_q = n_q * scale\n", "")),),
               "scale missing on q"),
        Mutant(f"{p}.recurrent.h0-ignored", "h0-ignored", op, ("recurrent",), _DELTA_R, "delta_rule_recurrent_fwd",
               (("USE_G=g is not None, USE_INITIAL_STATE=h0 is not None,",
                 "USE_G=g is not None, USE_INITIAL_STATE=False,"),),
               "initial state not passed to the forward kernel"),
        Mutant(f"{p}.recurrent.cu-seqlens", "cu-seqlens", op, ("recurrent",), _DELTA_R,
               "delta_rule_recurrent_fwd_kernel", ((_SEQ_BOUNDS_CALL, _SEQ_BOUNDS_CALL + _BOS_LATE),),
               "each sequence starts one token late (cu_seqlens[n] + 1) in the forward kernel"),
        Mutant(f"{p}.recurrent.fp16-accumulator", "fp16-accumulator", op, ("recurrent",), _DELTA_R,
               "delta_rule_recurrent_fwd_kernel",
               ((_DELTA_R_READ, _DELTA_R_READ.replace(
                   "        b_h += b_k[:, None] * (b_v * b_beta)[None, :]\n",
                   "        b_h = (b_h + b_k[:, None] * (b_v * b_beta)[None, :]).to(p_o.dtype.element_ty).to(tl.float32)\n")),),
               "the state is rounded to the input dtype after every step"),
        Mutant(f"{p}.recurrent.unmasked-load", "unmasked-load", op, ("recurrent",), _DELTA_R,
               "delta_rule_recurrent_fwd_kernel",
               ((_DELTA_R_LOADS, _DELTA_R_LOADS.replace("n_k = tl.load(p_k, mask=n_mk, other=0.0)",
                                                        "n_k = tl.load(p_k, mask=o_k * 0 + t < seq_len, other=0.0)")),),
               "k loaded without the K mask (reads past K when K < BK)"),
    ]


_GATED_ONLY = [
    Mutant("gated_delta.recurrent.gate-after-write", "gate-after-write", "gated_delta", ("recurrent",), _DELTA_R,
           "delta_rule_recurrent_fwd_kernel",
           ((_DELTA_R_DECAY + _DELTA_R_WRITE, _DELTA_R_WRITE + "        if USE_G:\n" + _DELTA_R_DECAY),),
           "decay applied after the delta update instead of before it"),
    Mutant("gated_delta.chunk.cumsum-off-by-one", "cumsum-off-by-one", "gated_delta", ("chunk",), _CUMSUM,
           "chunk_local_cumsum_kernel",
           (("    tl.store(g_cum + p, tl.cumsum(b_g, axis=0, reverse=REVERSE), mask=m_t)\n",
             "    b_first = tl.sum(tl.where(o_t == i_t * BT, b_g, 0.0), 0)\n"
             "    tl.store(g_cum + p, tl.cumsum(b_g, axis=0, reverse=REVERSE) - b_first, mask=m_t)\n"),),
           "chunk-local cumsum starts one token after the chunk boundary (first gate dropped)"),
]

# GVA and in-kernel options (issue 16): Gated DeltaNet only
_DELTA_C_O_GVA = ("    row_k = (bos + o_t) * HK + i_h // (H // HK)  # key head of value head i_h (GVA)\n"
                  "    o_v = i_v * BV + tl.arange(0, BV)\n")
_EPS_OUT = ("            n_q = n_q / (tl.sqrt(tl.sum(n_q * n_q, 0)) + L2NORM_EPS)\n"
            "            n_k = n_k / (tl.sqrt(tl.sum(n_k * n_k, 0)) + L2NORM_EPS)\n")
_GATED_OPTIONS = [
    Mutant("gated_delta.recurrent.gva-map", "gva-map", "gated_delta", ("recurrent",), _DELTA_R,
           "delta_rule_recurrent_fwd_kernel",
           ((_DELTA_R_GVA, "    i_h = i_hv\n"),), "value head j reads key head j instead of j // r"),
    Mutant("gated_delta.recurrent.gva-interleave", "gva-map", "gated_delta", ("recurrent",), _DELTA_R,
           "delta_rule_recurrent_fwd_kernel",
           ((_DELTA_R_GVA, "    i_h = i_hv % H\n"),),
           "value head j reads key head j mod H (q/k repeated, not repeat_interleaved)"),
    Mutant("gated_delta.chunk.gva-map", "gva-map", "gated_delta", ("chunk",), _DELTA_C, "chunk_delta_o_kernel",
           ((_DELTA_C_O_GVA, _DELTA_C_O_GVA.replace("i_h // (H // HK)", "i_h")),),
           "output kernel: value head j reads q/k of key head j instead of j // r"),
    Mutant("gated_delta.chunk.gva-interleave", "gva-map", "gated_delta", ("chunk",), _DELTA_C, "chunk_delta_o_kernel",
           ((_DELTA_C_O_GVA, _DELTA_C_O_GVA.replace("i_h // (H // HK)", "i_h % HK")),),
           "output kernel: value head j reads q/k of key head j mod H (repeat, not repeat_interleave)"),
    Mutant("gated_delta.recurrent.l2norm-eps", "l2norm-eps", "gated_delta", ("recurrent",), _DELTA_R,
           "delta_rule_recurrent_fwd_kernel",
           ((_DELTA_R_NORM, _DELTA_R_NORM.replace(
               "            n_q = n_q / tl.sqrt(tl.sum(n_q * n_q, 0) + L2NORM_EPS)\n"
               "            n_k = n_k / tl.sqrt(tl.sum(n_k * n_k, 0) + L2NORM_EPS)\n", _EPS_OUT)),),
           "q, k divided by |x| + 1e-6 instead of sqrt(|x|^2 + 1e-6)"),
    Mutant("gated_delta.recurrent.l2norm-order", "l2norm-order", "gated_delta", ("recurrent",), _DELTA_R,
           "delta_rule_recurrent_fwd_kernel",
           ((_DELTA_R_LOADS + _DELTA_R_NORM, _DELTA_R_LOADS + "        n_q = n_q * scale\n"
             + _DELTA_R_NORM.replace("        n_q = n_q * scale\n", "")),),
           "q scaled before the l2norm instead of after it"),
    Mutant("gated_delta.chunk.l2norm-eps", "l2norm-eps", "gated_delta", ("chunk",), _L2NORM, "l2norm_fwd_kernel",
           (("    b_rstd = 1.0 / tl.sqrt(tl.sum(b_x * b_x, 1) + eps)\n",
             "    b_rstd = 1.0 / (tl.sqrt(tl.sum(b_x * b_x, 1)) + eps)\n"),),
           "l2norm kernel: x / (|x| + 1e-6) instead of x / sqrt(|x|^2 + 1e-6)"),
    # the in-kernel gate -exp(A_log) softplus(a + dt_bias): off by A log(1 + e^-x) for x in [1, 20)
    # (31% of softplus at x = 1, 13% at 2, 0.25% at 6): only cases whose a + dt_bias lands there see it.
    # At threshold 2 the ci search never does (a + dt_bias in [2, 5] needs a > 1 on a head with
    # Qwen's dt_bias = 1 and a small A, in an fp32 case: < 1e-5 of o otherwise); at 1 every a >= 0 there
    Mutant("gated_delta.recurrent.softplus-saturation", "softplus-saturation", "gated_delta", ("recurrent",), _GATES,
           "softplus",
           (("    return tl.where(x < 20.0, tl.log(1 + tl.exp(x)), x)\n",
             "    return tl.where(x < 1.0, tl.log(1 + tl.exp(x)), x)\n"),),
           "in-kernel gate: softplus(x) = x from x >= 1 instead of fla's 20 (log(1 + e^-x) lost in [1, 20))"),
    Mutant("gated_delta.recurrent.beta-sigmoid-missing", "beta-sigmoid", "gated_delta", ("recurrent",), _DELTA_R,
           "delta_rule_recurrent_fwd_kernel",
           (("        if USE_BETA_SIGMOID:\n            n_beta = tl.sigmoid(n_beta)\n", ""),),
           "use_beta_sigmoid_in_kernel ignored: beta logits used as beta"),
]

_GLA = [
    Mutant("gla.recurrent.gate-after-write", "gate-after-write", "gla", ("recurrent",), _GLA_R,
           "gla_recurrent_fwd_kernel",
           ((_GLA_R_UPDATE, _GLA_R_UPDATE.replace(
               "b_h = b_h * tl.exp(b_g)[:, None] + b_k[:, None] * b_v[None, :]",
               "b_h = (b_h + b_k[:, None] * b_v[None, :]) * tl.exp(b_g)[:, None]")),),
           "decay applied after the write k v^T instead of before it"),
    Mutant("gla.recurrent.scale", "scale", "gla", ("recurrent",), _GLA_R, "gla_recurrent_fwd_kernel",
           ((_GLA_R_LOOP, _GLA_R_LOOP.replace(".to(tl.float32) * scale\n", ".to(tl.float32)\n")),),
           "scale missing on q"),
    Mutant("gla.recurrent.h0-ignored", "h0-ignored", "gla", ("recurrent",), _GLA_R, "gla_recurrent_fwd",
           (("BV=BV, USE_H0=initial_state is not None,\n            STORE_HT=output_final_state,",
             "BV=BV, USE_H0=False,\n            STORE_HT=output_final_state,"),),
           "initial state not passed to the forward kernel"),
    Mutant("gla.recurrent.cu-seqlens", "cu-seqlens", "gla", ("recurrent",), _VARLEN, "sequence_bounds",
           (_BOS_LOAD_LATE,),
           "each sequence starts one token late (cu_seqlens[n] + 1) in the forward and backward kernels"),
    Mutant("gla.recurrent.fp16-accumulator", "fp16-accumulator", "gla", ("recurrent",), _GLA_R,
           "gla_recurrent_fwd_kernel",
           ((_GLA_R_UPDATE, _GLA_R_UPDATE.replace(
               "b_h = b_h * tl.exp(b_g)[:, None] + b_k[:, None] * b_v[None, :]",
               "b_h = (b_h * tl.exp(b_g)[:, None] + b_k[:, None] * b_v[None, :]).to(p_o.dtype.element_ty)"
               ".to(tl.float32)")),),
           "the state is rounded to the input dtype after every step"),
    Mutant("gla.recurrent.unmasked-load", "unmasked-load", "gla", ("recurrent",), _GLA_R, "gla_recurrent_fwd_kernel",
           ((_GLA_R_LOOP, _GLA_R_LOOP.replace("n_q = tl.load(p_q, mask=n_mk, other=0.0)", "n_q = tl.load(p_q)")),),
           "q loaded without the K mask (reads past K when K < BK)"),
    Mutant("gla.recurrent.v-first-transposed", "v-first-transposed", "gla", ("recurrent",), _GLA_R,
           "gla_recurrent_fwd_kernel",
           (("    if STORE_HT:\n        tl.store(ht + p_s, b_h, mask=m_h)\n",
             "    if STORE_HT:\n        tl.store(ht + i_nh * K * V + o_k[:, None] * V + o_v[None, :], b_h, mask=m_h)\n"),),
           "the final state stored at the [K, V] offsets k*V + v whatever the layout: under state_v_first the "
           "[N, H, V, K] ht gets the state written K-first (a transposed, for K != V scrambled, final state)",
           state_layouts=("kv", "vk")),
    Mutant("gla.chunk.no-carry", "no-carry", "gla", ("chunk",), _GLA_C, "chunk_fwd_h_kernel",
           ((_GLA_C_LOOP, _GLA_C_LOOP.replace("    for i_t in range(0, tl.cdiv(seq_len, BT)):\n",
                                              "    for i_t in range(0, tl.cdiv(seq_len, BT)):\n" + _RESET)),),
           "state passing restarts from zero at every chunk after the first"),
    Mutant("gla.chunk.cumsum-off-by-one", "cumsum-off-by-one", "gla", ("chunk",), _GLA_C, "chunk_local_cumsum_kernel",
           (("    tl.store(gc + offs, tl.cumsum(b_g, axis=0) * RCP_LN2, mask=m)\n",
             "    b_first = tl.sum(tl.where((o_t == i_t * BT)[:, None], b_g, 0.0), 0)\n"
             "    tl.store(gc + offs, (tl.cumsum(b_g, axis=0) - b_first[None, :]) * RCP_LN2, mask=m)\n"),),
           "chunk-local cumsum starts one token after the chunk boundary (first gate dropped)"),
    Mutant("gla.chunk.scale", "scale", "gla", ("chunk",), _GLA_C, "chunk_fwd_A_intra_kernel",
           (("        b_A = tl.where(o_c >= j, b_A * scale, 0.0)\n",
             "        b_A = tl.where(o_c >= j, b_A * scale * scale, 0.0)\n"),),
           "scale applied twice in the diagonal sub-chunk blocks of A"),
    Mutant("gla.chunk.h0-ignored", "h0-ignored", "gla", ("chunk",), _GLA_C, "chunk_fwd_h",
           (("BV=BV, USE_H0=h0 is not None, STORE_HT=output_final_state,",
             "BV=BV, USE_H0=False, STORE_HT=output_final_state,"),),
           "initial state not passed to the state-passing kernel"),
    Mutant("gla.chunk.cu-seqlens", "cu-seqlens", "gla", ("chunk",), _VARLEN, "sequence_bounds",
           (_BOS_LOAD_LATE,),
           "each sequence starts one token late (cu_seqlens[n] + 1) in every kernel"),
    Mutant("gla.chunk.unmasked-load", "unmasked-load", "gla", ("chunk",), _GLA_C, "chunk_fwd_o_kernel",
           (("    b_q = tl.load(q + row[:, None] * K + o_k[None, :], mask=m_qk, other=0.0)\n",
             "    b_q = tl.load(q + row[:, None] * K + o_k[None, :], mask=m_t[:, None], other=0.0)\n"),),
           "q loaded in the output kernel without the K mask (reads past K when K < BK)"),
    Mutant("gla.fused_chunk.no-carry", "no-carry", "gla", ("fused_chunk",), _GLA_F, "gla_fused_chunk_fwd_kernel",
           ((_GLA_F_LOOP, _GLA_F_LOOP.replace("    for i_t in range(0, tl.cdiv(seq_len, BT)):\n",
                                              "    for i_t in range(0, tl.cdiv(seq_len, BT)):\n" + _RESET)),),
           "state restarts from zero at every chunk after the first"),
    Mutant("gla.fused_chunk.cumsum-off-by-one", "cumsum-off-by-one", "gla", ("fused_chunk",), _GLA_F,
           "gla_fused_chunk_fwd_kernel",
           (("        b_G = tl.cumsum(b_g, axis=0)\n",
             "        b_G = tl.cumsum(b_g, axis=0) - tl.sum(tl.where((o_c == 0)[:, None], b_g, 0.0), 0)[None, :]\n"),),
           "chunk-local cumsum starts one token after the chunk boundary (first gate dropped)"),
    Mutant("gla.fused_chunk.scale", "scale", "gla", ("fused_chunk",), _GLA_F, "gla_fused_chunk_fwd_kernel",
           (("        b_qg = b_q * tl.exp(b_G) * scale\n", "        b_qg = b_q * tl.exp(b_G)\n"),),
           "scale missing on q"),
    Mutant("gla.fused_chunk.h0-ignored", "h0-ignored", "gla", ("fused_chunk",), _GLA_F, "gla_fused_chunk",
           (("USE_H0=a.initial_state is not None,", "USE_H0=False,"),),
           "initial state not passed to the kernel"),
    Mutant("gla.fused_chunk.cu-seqlens", "cu-seqlens", "gla", ("fused_chunk",), _VARLEN, "sequence_bounds",
           (_BOS_LOAD_LATE,),
           "each sequence starts one token late (cu_seqlens[n] + 1)"),
    Mutant("gla.fused_chunk.unmasked-load", "unmasked-load", "gla", ("fused_chunk",), _GLA_F,
           "gla_fused_chunk_fwd_kernel",
           (("        b_q = tl.load(q + row[:, None] * K + o_k[None, :], mask=m_tk, other=0.0)",
             "        b_q = tl.load(q + row[:, None] * K + o_k[None, :], mask=m_t[:, None], other=0.0)"),),
           "q loaded without the K mask (reads past K when K < BK)"),
]

# -- subtle bugs (issue 13): a few percent or less, in one output, on multi-chunk cases only ---
_F16 = ".to(tl.float16).to(tl.float32)"  # a value held in fp16, whatever the input dtype
_GLA_C_O = ("    b_o += tl.dot(b_A, b_v, input_precision=DOT_PRECISION)\n"
            "    tl.store(o + row[:, None] * V + o_v[None, :], b_o.to(o.dtype.element_ty), mask=m_tv)\n")
_GLA_C_HT = "    if STORE_HT:\n        tl.store(ht + i_nh * K * V + o_s, b_h, mask=m_h)\n"
_GLA_C_H = "        b_h += tl.dot(b_kg, b_v, input_precision=DOT_PRECISION)\n"
_GLA_F_O = "        tl.store(o + row[:, None] * V + o_v[None, :], b_o.to(o.dtype.element_ty), mask=m_tv)\n"
_GLA_F_HT = "    if STORE_HT:\n        tl.store(ht + o_s, b_h, mask=m_h)\n"
_GLA_F_H = ("        b_h = b_h * tl.exp(b_gl)[:, None] + tl.dot(tl.trans(b_kd), b_v, "
            "input_precision=DOT_PRECISION)\n")
_DELTA_C_O = "    b_o = (b_o + tl.dot(b_A, b_v, input_precision=DOT_PRECISION)) * scale\n"
_DELTA_C_HT = ("    if STORE_FINAL_STATE:\n"
               "        p_ht = ht + i_nh.to(tl.int64) * K * V\n")
_DELTA_C_H = ("        if NK > 3:\n"
              "            b_h4 = _kt_times_v(k, row_k, m_t, 3, BK, K, b_v, b_h4, DOT_PRECISION)\n")
_O_LATE = "o x1.02 in every chunk after the first (chunk index >= 1)"
_HT_LATE = "final state x0.98 when the sequence has more than one chunk"
_FP16_STATE = "the running inter-chunk state is rounded to fp16 after every chunk (h and ht from it)"


def _x102(grad: str) -> str:
    return f"{grad} x1.02 in the backward kernel"


_SUBTLE_GLA = [
    Mutant("gla.chunk.o-late", "o-late", "gla", ("chunk",), _GLA_C, "chunk_fwd_o_kernel",
           ((_GLA_C_O, _GLA_C_O.replace("    tl.store(", "    if i_t >= 1:\n        b_o = b_o * 1.02\n    tl.store(")),),
           _O_LATE),
    Mutant("gla.chunk.ht-late", "ht-late", "gla", ("chunk",), _GLA_C, "chunk_fwd_h_kernel",
           ((_GLA_C_HT, _GLA_C_HT.replace("        tl.store(", "        if tl.cdiv(seq_len, BT) > 1:\n"
                                          "            b_h = b_h * 0.98\n        tl.store(")),),
           _HT_LATE),
    Mutant("gla.chunk.fp16-state", "fp16-state", "gla", ("chunk",), _GLA_C, "chunk_fwd_h_kernel",
           ((_GLA_C_H, _GLA_C_H + f"        b_h = b_h{_F16}\n"),), _FP16_STATE),
    Mutant("gla.chunk.o-small", "o-small", "gla", ("chunk",), _GLA_C, "chunk_fwd_o_kernel",
           ((_GLA_C_O, _GLA_C_O.replace("    tl.store(", "    b_o = b_o * 1.003\n    tl.store(")),),
           "o x1.003 in every chunk: a 0.3% error (the clean fp32 error after a -1e4 mask fill is ~1e-4)"),
    Mutant("gla.fused_chunk.o-late", "o-late", "gla", ("fused_chunk",), _GLA_F, "gla_fused_chunk_fwd_kernel",
           ((_GLA_F_O, "        if i_t >= 1:\n            b_o = b_o * 1.02\n" + _GLA_F_O),), _O_LATE),
    Mutant("gla.fused_chunk.ht-late", "ht-late", "gla", ("fused_chunk",), _GLA_F, "gla_fused_chunk_fwd_kernel",
           ((_GLA_F_HT, _GLA_F_HT.replace("        tl.store(", "        if tl.cdiv(seq_len, BT) > 1:\n"
                                          "            b_h = b_h * 0.98\n        tl.store(")),),
           _HT_LATE),
    Mutant("gla.fused_chunk.fp16-state", "fp16-state", "gla", ("fused_chunk",), _GLA_F, "gla_fused_chunk_fwd_kernel",
           ((_GLA_F_H, _GLA_F_H + f"        b_h = b_h{_F16}\n"),), _FP16_STATE),
    # backward: gradients scaled by 1.02 where the kernel stores them
    Mutant("gla.chunk.dq-scale", "grad-scale", "gla", ("chunk",), _GLA_C, "chunk_bwd_dqkg_kernel",
           (("    tl.store(dq + p_tk, b_dq, mask=m_tk)\n", "    tl.store(dq + p_tk, b_dq * 1.02, mask=m_tk)\n"),),
           _x102("dq (inter + intra, chunk_bwd_dqkg_kernel)"), backward=True),
    Mutant("gla.chunk.dk-scale", "grad-scale", "gla", ("chunk",), _GLA_C, "chunk_bwd_dqkg_kernel",
           (("    tl.store(dk + p_tk, b_dk, mask=m_tk)\n", "    tl.store(dk + p_tk, b_dk * 1.02, mask=m_tk)\n"),),
           _x102("dk (inter + intra, chunk_bwd_dqkg_kernel)"), backward=True),
    Mutant("gla.chunk.dg-scale", "grad-scale", "gla", ("chunk",), _GLA_C, "chunk_bwd_dqkg_kernel",
           (("    tl.store(dg + p_tk, b_dg.to(dg.dtype.element_ty), mask=m_tk)\n",
             "    tl.store(dg + p_tk, (b_dg * 1.02).to(dg.dtype.element_ty), mask=m_tk)\n"),),
           _x102("dg (chunk_bwd_dqkg_kernel)"), backward=True),
    Mutant("gla.recurrent.dq-scale", "grad-scale", "gla", ("recurrent",), _GLA_R, "gla_recurrent_bwd_kernel",
           (("        tl.store(p_dq, b_dq, mask=m_k)\n", "        tl.store(p_dq, b_dq * 1.02, mask=m_k)\n"),),
           _x102("dq (and the dg built from it)"), backward=True),
    Mutant("gla.recurrent.dk-scale", "grad-scale", "gla", ("recurrent",), _GLA_R, "gla_recurrent_bwd_kernel",
           (("        tl.store(p_dk, tl.sum(b_dh * b_v[None, :], 1), mask=m_k)\n",
             "        tl.store(p_dk, tl.sum(b_dh * b_v[None, :], 1) * 1.02, mask=m_k)\n"),),
           _x102("dk (and the dg built from it)"), backward=True),
    Mutant("gla.recurrent.dg-scale", "grad-scale", "gla", ("recurrent",), _GLA_R, "gla_recurrent_bwd_dg_kernel",
           (("        tl.store(p_dg, b_dg.to(p_dg.dtype.element_ty), mask=m_k)\n",
             "        tl.store(p_dg, (b_dg * 1.02).to(p_dg.dtype.element_ty), mask=m_k)\n"),),
           _x102("dg (gla_recurrent_bwd_dg_kernel)"), backward=True),
]


def _subtle_delta(op: str) -> list[Mutant]:
    """Subtle mutants of the delta-rule kernels shared by DeltaNet and Gated DeltaNet, for `op`."""
    p = op
    return [
        Mutant(f"{p}.chunk.o-late", "o-late", op, ("chunk",), _DELTA_C, "chunk_delta_o_kernel",
               ((_DELTA_C_O, _DELTA_C_O + "    if i_t >= 1:\n        b_o = b_o * 1.02\n"),), _O_LATE),
        Mutant(f"{p}.chunk.ht-late", "ht-late", op, ("chunk",), _DELTA_C, "chunk_delta_h_kernel",
               ((_DELTA_C_HT, _DELTA_C_HT + "        if NT > 1:\n" + "".join(
                   f"            b_h{i} = b_h{i} * 0.98\n" for i in _DELTA_BLOCKS)),),
               _HT_LATE),
        Mutant(f"{p}.chunk.fp16-state", "fp16-state", op, ("chunk",), _DELTA_C, "chunk_delta_h_kernel",
               ((_DELTA_C_H, _DELTA_C_H + "".join(f"        b_h{i} = b_h{i}{_F16}\n" for i in _DELTA_BLOCKS)),),
               _FP16_STATE),
        Mutant(f"{p}.chunk.dbeta-scale", "grad-scale", op, ("chunk",), _UT, "ut_transform_bwd_kernel",
               (("    tl.store(dbeta + row, b_dbeta, mask=m_t)\n",
                 "    tl.store(dbeta + row, b_dbeta * 1.02, mask=m_t)\n"),),
               _x102("dbeta (ut_transform_bwd_kernel, called by delta.chunk_bwd)"), backward=True),
    ]


_SUBTLE_DELTA_RECURRENT = [  # gated_delta:recurrent has no backward
    Mutant("delta.recurrent.dbeta-scale", "grad-scale", "delta", ("recurrent",), _DELTA_R,
           "delta_rule_recurrent_bwd_reverse_kernel",
           (("        tl.store(p_dbeta, tl.sum(b_du * b_e, 0))\n",
             "        tl.store(p_dbeta, tl.sum(b_du * b_e, 0) * 1.02)\n"),),
           _x102("dbeta (reverse pass)"), backward=True),
]
# -- KDA (issue 16): the per-channel gate's placement, channel and step ---------------------
_KDA_R_STEP = ("        b_h *= tl.exp(b_g)[:, None]\n"
               "        b_v = b_v - tl.sum(b_h * b_k[:, None], 0)\n"
               "        b_h += b_k[:, None] * (b_v * b_beta)[None, :]\n")
_KDA_R_GATE = "        b_g = tl.load(p_g, mask=m_k, other=0.0).to(tl.float32)\n"
_KDA_C_H = ("        b_h = b_h * tl.exp(b_gl)[:, None] + tl.dot(b_kt, b_v, input_precision=DOT_PRECISION)\n")
_KDA_C_GL = "        b_gl = tl.load(g_cum + ((bos + last) * H + i_h) * K + o_k, mask=m_k, other=0.0)\n"
_KDA_C_O = "    tl.store(o + row[:, None] * V + o_v[None, :], b_o.to(o.dtype.element_ty), mask=m_tv)\n"
_KDA_C_HT = ("    if STORE_FINAL_STATE:\n"
             "        tl.store(ht + i_nh.to(tl.int64) * K * V + p_state, b_h, mask=m_h)\n")

_KDA = [
    Mutant("kda.recurrent.gate-after-write", "gate-after-write", "kda", ("recurrent",), _KDA_R,
           "kda_recurrent_fwd_kernel",
           ((_KDA_R_STEP, "        b_v = b_v - tl.sum(b_h * b_k[:, None], 0)\n"
                          "        b_h += b_k[:, None] * (b_v * b_beta)[None, :]\n"
                          "        b_h *= tl.exp(b_g)[:, None]\n"),),
           "per-channel decay applied after the delta update instead of before it"),
    Mutant("kda.recurrent.gate-channel", "gate-channel", "kda", ("recurrent",), _KDA_R, "kda_recurrent_fwd_kernel",
           ((_KDA_R_GATE, "        b_g = tl.load(p_g + 1, mask=(o_k + 1) < K, other=0.0).to(tl.float32)\n"),),
           "key channel c decays by channel c+1's gate (the last channel by 0)"),
    Mutant("kda.recurrent.gate-late", "gate-late", "kda", ("recurrent",), _KDA_R, "kda_recurrent_fwd_kernel",
           ((_KDA_R_GATE, "        b_g = tl.load(p_g - H * K, mask=m_k & ((o_k * 0 + t) > 0), other=0.0).to(tl.float32)\n"),),
           "step t decays by step t-1's gate (step 0 by none)"),
    Mutant("kda.recurrent.dg-scale", "grad-scale", "kda", ("recurrent",), _KDA_R, "kda_recurrent_bwd_kernel",
           (("            tl.store(dg + i_v * PART_K + p_tk, tl.sum(b_dh * b_hp, 1), mask=m_k)\n",
             "            tl.store(dg + i_v * PART_K + p_tk, tl.sum(b_dh * b_hp, 1) * 1.02, mask=m_k)\n"),),
           _x102("dg (kda_recurrent_bwd_kernel)"), backward=True),
    Mutant("kda.chunk.gate-after-write", "gate-after-write", "kda", ("chunk",), _KDA_C, "kda_h_kernel",
           ((_KDA_C_H, "        b_h = (b_h + tl.dot(b_kt, b_v, input_precision=DOT_PRECISION)) * tl.exp(b_gl)[:, None]\n"),),
           "state passing decays the chunk's own update by the chunk's whole gate (decay after the write)"),
    Mutant("kda.chunk.gate-channel", "gate-channel", "kda", ("chunk",), _KDA_C, "kda_h_kernel",
           ((_KDA_C_GL, _KDA_C_GL.replace("* K + o_k, mask", "* K + (o_k + 1) % K, mask")),),
           "state passing decays key channel c by channel c+1's chunk gate"),
    Mutant("kda.chunk.cumsum-off-by-one", "cumsum-off-by-one", "kda", ("chunk",), _CUMSUM, "chunk_local_cumsum_kernel",
           (("    tl.store(g_cum + p, tl.cumsum(b_g, axis=0, reverse=REVERSE), mask=m_t)\n",
             "    b_first = tl.sum(tl.where(o_t == i_t * BT, b_g, 0.0), 0)\n"
             "    tl.store(g_cum + p, tl.cumsum(b_g, axis=0, reverse=REVERSE) - b_first, mask=m_t)\n"),),
           "chunk-local cumsum starts one token after the chunk boundary (first gate dropped)"),
    Mutant("kda.chunk.ut-sign", "ut-sign", "kda", ("chunk",), _KDA_C, "kda_ut_kernel",
           (("    b_Ai = -tl.where(m_A, b_A, 0.0)\n", "    b_Ai = tl.where(m_A, b_A, 0.0)\n"),),
           "UT inverse (I - A)^-1 instead of (I + A)^-1"),
]
_SUBTLE_KDA = [
    Mutant("kda.chunk.o-late", "o-late", "kda", ("chunk",), _KDA_C, "kda_o_kernel",
           ((_KDA_C_O, "    if i_t >= 1:\n        b_o = b_o * 1.02\n" + _KDA_C_O),), _O_LATE),
    Mutant("kda.chunk.ht-late", "ht-late", "kda", ("chunk",), _KDA_C, "kda_h_kernel",
           ((_KDA_C_HT, _KDA_C_HT.replace("        tl.store(", "        if NT > 1:\n"
                                          "            b_h = b_h * 0.98\n        tl.store(")),), _HT_LATE),
    Mutant("kda.chunk.fp16-state", "fp16-state", "kda", ("chunk",), _KDA_C, "kda_h_kernel",
           ((_KDA_C_H, _KDA_C_H + f"        b_h = b_h{_F16}\n"),), _FP16_STATE),
]

SUBTLE: tuple[Mutant, ...] = tuple(_SUBTLE_GLA + _subtle_delta("delta") + _SUBTLE_DELTA_RECURRENT
                                   + _subtle_delta("gated_delta") + _SUBTLE_KDA)

# -- simple GLA (issue 16): a scalar gate per head ------------------------------------------
_SGLA_R = f"{_KERNELS}.simple_gla.recurrent"
_SGLA_C = f"{_KERNELS}.simple_gla.chunk"
_SGLA_R_LOOP = ("        b_h += tl.load(h0 + p_s, mask=m_h, other=0.0).to(tl.float32)\n"
                "    for _ in range(0, seq_len):\n"
                "        b_q = tl.load(p_q, mask=m_k, other=0.0).to(tl.float32) * scale\n")
_SGLA_R_UPDATE = ("        b_h = b_h * tl.exp(b_g) + b_k[:, None] * b_v[None, :]\n"
                  "        b_o = tl.sum(b_h * b_q[:, None], 0)\n")
_SGLA_C_LOOP = ("    for i_t in range(0, tl.cdiv(seq_len, BT)):\n"
                "        tl.store(h + ((boh + i_t) * H + i_h) * K * V + o_s, b_h, mask=m_h)\n")
_SGLA_C_O = "    tl.store(o + row[:, None] * V + o_v[None, :], b_o.to(o.dtype.element_ty), mask=m_tv)\n"
_SGLA_C_HT = "    if STORE_HT:\n        tl.store(ht + i_nh * K * V + o_s, b_h, mask=m_h)\n"
_SGLA_C_H = "        b_h += tl.dot(b_kt, b_v, input_precision=DOT_PRECISION)\n"

_SIMPLE_GLA = [
    Mutant("simple_gla.recurrent.gate-after-write", "gate-after-write", "simple_gla", ("recurrent",), _SGLA_R,
           "simple_gla_recurrent_fwd_kernel",
           ((_SGLA_R_UPDATE, _SGLA_R_UPDATE.replace("b_h = b_h * tl.exp(b_g) + b_k[:, None] * b_v[None, :]",
                                                    "b_h = (b_h + b_k[:, None] * b_v[None, :]) * tl.exp(b_g)")),),
           "decay applied after the write k v^T instead of before it"),
    Mutant("simple_gla.recurrent.scale", "scale", "simple_gla", ("recurrent",), _SGLA_R,
           "simple_gla_recurrent_fwd_kernel",
           ((_SGLA_R_LOOP, _SGLA_R_LOOP.replace(".to(tl.float32) * scale\n", ".to(tl.float32)\n")),),
           "scale missing on q"),
    Mutant("simple_gla.recurrent.h0-ignored", "h0-ignored", "simple_gla", ("recurrent",), _SGLA_R,
           "simple_gla_recurrent_fwd",
           (("USE_H0=initial_state is not None,\n            STORE_HT=output_final_state,",
             "USE_H0=False,\n            STORE_HT=output_final_state,"),),
           "initial state not passed to the forward kernel"),
    Mutant("simple_gla.recurrent.cu-seqlens", "cu-seqlens", "simple_gla", ("recurrent",), _VARLEN, "sequence_bounds",
           (_BOS_LOAD_LATE,),
           "each sequence starts one token late (cu_seqlens[n] + 1) in the forward and backward kernels"),
    Mutant("simple_gla.recurrent.fp16-accumulator", "fp16-accumulator", "simple_gla", ("recurrent",), _SGLA_R,
           "simple_gla_recurrent_fwd_kernel",
           ((_SGLA_R_UPDATE, _SGLA_R_UPDATE.replace(
               "b_h = b_h * tl.exp(b_g) + b_k[:, None] * b_v[None, :]",
               "b_h = (b_h * tl.exp(b_g) + b_k[:, None] * b_v[None, :]).to(p_o.dtype.element_ty).to(tl.float32)")),),
           "the state is rounded to the input dtype after every step"),
    Mutant("simple_gla.recurrent.unmasked-load", "unmasked-load", "simple_gla", ("recurrent",), _SGLA_R,
           "simple_gla_recurrent_fwd_kernel",
           ((_SGLA_R_LOOP, _SGLA_R_LOOP.replace("b_q = tl.load(p_q, mask=m_k, other=0.0)", "b_q = tl.load(p_q)")),),
           "q loaded without the K mask (reads past K when K < BK)"),
    Mutant("simple_gla.recurrent.dg-scale", "grad-scale", "simple_gla", ("recurrent",), _SGLA_R,
           "simple_gla_recurrent_bwd_dg_kernel",
           (("        tl.store(p_dg, tl.sum(b_dg, 0).to(p_dg.dtype.element_ty))\n",
             "        tl.store(p_dg, (tl.sum(b_dg, 0) * 1.02).to(p_dg.dtype.element_ty))\n"),),
           _x102("dg (simple_gla_recurrent_bwd_dg_kernel)"), backward=True),
    Mutant("simple_gla.chunk.decay-off-by-one", "decay-off-by-one", "simple_gla", ("chunk",), _SGLA_C,
           "simple_gla_fwd_o_kernel",
           (("    b_A = b_A * tl.exp(b_g[:, None] - b_g[None, :])\n",
             "    b_gp = tl.load(g_cum + row - H, mask=m_t & (o_i > 0), other=0.0)\n"
             "    b_A = b_A * tl.exp(b_gp[:, None] - b_g[None, :])\n"),),
           "intra-chunk decay exp(G_{i-1} - G_j): the query row's own gate g_i left out"),
    Mutant("simple_gla.chunk.last-gate-missing", "last-gate-missing", "simple_gla", ("chunk",), _SGLA_C,
           "simple_gla_fwd_h_kernel",
           (("        b_h *= tl.exp(b_gl)\n",
             "        b_h *= tl.exp(tl.load(g_cum + (bos + tl.maximum(last - 1, i_t * BT)) * H + i_h))\n"),),
           "state decayed by exp(G) of the chunk's second-to-last token: the last gate is missing"),
    Mutant("simple_gla.chunk.cumsum-off-by-one", "cumsum-off-by-one", "simple_gla", ("chunk",), _CUMSUM,
           "chunk_local_cumsum_kernel",
           (("    tl.store(g_cum + p, tl.cumsum(b_g, axis=0, reverse=REVERSE), mask=m_t)\n",
             "    b_first = tl.sum(tl.where(o_t == i_t * BT, b_g, 0.0), 0)\n"
             "    tl.store(g_cum + p, tl.cumsum(b_g, axis=0, reverse=REVERSE) - b_first, mask=m_t)\n"),),
           "chunk-local cumsum starts one token after the chunk boundary (first gate dropped)"),
    Mutant("simple_gla.chunk.no-carry", "no-carry", "simple_gla", ("chunk",), _SGLA_C, "simple_gla_fwd_h_kernel",
           ((_SGLA_C_LOOP, _SGLA_C_LOOP.replace("    for i_t in range(0, tl.cdiv(seq_len, BT)):\n",
                                                "    for i_t in range(0, tl.cdiv(seq_len, BT)):\n" + _RESET)),),
           "state passing restarts from zero at every chunk after the first"),
    Mutant("simple_gla.chunk.scale", "scale", "simple_gla", ("chunk",), _SGLA_C, "simple_gla_fwd_o_kernel",
           (("    b_o = (b_o + tl.dot(b_A, b_v, input_precision=DOT_PRECISION)) * scale\n",
             "    b_o = b_o * scale + tl.dot(b_A, b_v, input_precision=DOT_PRECISION)\n"),),
           "scale missing on the intra-chunk term of the output"),
    Mutant("simple_gla.chunk.h0-ignored", "h0-ignored", "simple_gla", ("chunk",), _SGLA_C, "_fwd_h",
           (("USE_H0=h0 is not None, STORE_HT=output_final_state,", "USE_H0=False, STORE_HT=output_final_state,"),),
           "initial state not passed to the state-passing kernel"),
    Mutant("simple_gla.chunk.cu-seqlens", "cu-seqlens", "simple_gla", ("chunk",), _VARLEN, "sequence_bounds",
           (_BOS_LOAD_LATE,),
           "each sequence starts one token late (cu_seqlens[n] + 1) in every kernel"),
    Mutant("simple_gla.chunk.unmasked-load", "unmasked-load", "simple_gla", ("chunk",), _SGLA_C,
           "simple_gla_fwd_o_kernel",
           (("    b_q = tl.load(q + row[:, None] * K + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)",
             "    b_q = tl.load(q + row[:, None] * K + o_k[None, :], mask=m_t[:, None], other=0.0)"),),
           "q loaded in the output kernel without the K mask (reads past K when K < BK)"),
    Mutant("simple_gla.chunk.o-late", "o-late", "simple_gla", ("chunk",), _SGLA_C, "simple_gla_fwd_o_kernel",
           ((_SGLA_C_O, "    if i_t >= 1:\n        b_o = b_o * 1.02\n" + _SGLA_C_O),), _O_LATE),
    Mutant("simple_gla.chunk.ht-late", "ht-late", "simple_gla", ("chunk",), _SGLA_C, "simple_gla_fwd_h_kernel",
           ((_SGLA_C_HT, _SGLA_C_HT.replace("        tl.store(", "        if tl.cdiv(seq_len, BT) > 1:\n"
                                            "            b_h = b_h * 0.98\n        tl.store(")),),
           _HT_LATE),
    Mutant("simple_gla.chunk.fp16-state", "fp16-state", "simple_gla", ("chunk",), _SGLA_C, "simple_gla_fwd_h_kernel",
           ((_SGLA_C_H, _SGLA_C_H + f"        b_h = b_h{_F16}\n"),), _FP16_STATE),
    Mutant("simple_gla.chunk.config-specific", "config-specific", "simple_gla", ("chunk",), _SGLA_C,
           "simple_gla_fwd_o_kernel",
           ((_SGLA_C_O, "    if BV == 16:\n        b_o = b_o * 1.02\n" + _SGLA_C_O),),
           "output x1.02 at the BV=16 config of the autotuned output kernel only (config #2 of "
           "simple_gla_fwd_o_kernel; the first config, BV=32 for V > 16, is exact): a miscompile at one block size",
           configs="all"),
    Mutant("simple_gla.chunk.dq-scale", "grad-scale", "simple_gla", ("chunk",), _SGLA_C, "simple_gla_bwd_dqkg_kernel",
           (("    tl.store(dq + p_tk, b_dq, mask=m_tk)\n", "    tl.store(dq + p_tk, b_dq * 1.02, mask=m_tk)\n"),),
           _x102("dq (simple_gla_bwd_dqkg_kernel)"), backward=True),
    Mutant("simple_gla.chunk.dg-scale", "grad-scale", "simple_gla", ("chunk",), _SGLA_C, "simple_gla_bwd_dqkg_kernel",
           (("    tl.store(dg + row, b_dg.to(dg.dtype.element_ty), mask=m_t)\n",
             "    tl.store(dg + row, (b_dg * 1.02).to(dg.dtype.element_ty), mask=m_t)\n"),),
           _x102("dg (simple_gla_bwd_dqkg_kernel)"), backward=True),
]

# Caught by the metamorphic checks (fla_check.engine.invariance) on cases the reference check
# passes: contiguous inputs, no initial state, one row.
_INVARIANCE = [
    Mutant("gla.recurrent.non-contiguous", "non-contiguous", "gla", ("recurrent",), f"{_KERNELS}.gla.inputs", "prepare_gla_args",
           (("q=q.contiguous(), k=k.contiguous(), v=v.contiguous(), g=g.contiguous(),", "q=q, k=k, v=v, g=g,"),),
           "q, k, v, g passed to the kernel as given: a non-contiguous view is read as if contiguous"),
    Mutant("gla.recurrent.split-state", "split-state", "gla", ("recurrent",), _GLA_R, "gla_recurrent_fwd_kernel",
           (("b_h += tl.load(h0 + p_s, mask=m_h, other=0.0)",
             "b_h += tl.where(seq_len >= 64, 1.0, 0.0) * tl.load(h0 + p_s, mask=m_h, other=0.0)"),),
           "initial state ignored for sequences shorter than 64 (a short second part after a split starts "
           "from zero)"),
    Mutant("gla.recurrent.row-mixing", "row-mixing", "gla", ("recurrent",), _GLA_R, "gla_recurrent_fwd_kernel",
           (("    p_q = q + (bos * H + i_h) * K + o_k\n",
             "    p_q = q + ((bos - T * tl.minimum(i_n, 1)) * H + i_h) * K + o_k\n"),),
           "rows > 0 read q of the row before (batch index off by one)"),
]

USAGE_CASES: tuple[UsageCase, ...] = (
    UsageCase("gla.usage.mask-fill-0.1max", "mask-fill", "gla", ("chunk",), ("recurrent",), ("-0.1max",),
              "packing by a -0.1*finfo.max gate fill: chunk cumsum absorbs later gates, recurrent is exact"),
    UsageCase("gated_delta.usage.mask-fill-0.1max", "mask-fill", "gated_delta", ("chunk",), ("recurrent",),
              ("-0.1max",),
              "packing by a -0.1*finfo.max gate fill: chunk cumsum absorbs later gates, recurrent is exact"),
    UsageCase("simple_gla.usage.mask-fill-0.1max", "mask-fill", "simple_gla", ("chunk",), ("recurrent",),
              ("-0.1max",),
              "packing by a -0.1*finfo.max gate fill: chunk cumsum absorbs later gates, recurrent is exact"),
    UsageCase("kda.usage.mask-fill-0.1max", "mask-fill", "kda", ("chunk",), ("recurrent",), ("-0.1max",),
              "packing by a -0.1*finfo.max gate fill: chunk cumsum absorbs later gates, recurrent is exact"),
)

# memory safety (issue 15 part 4): caught by engine/memory.py's checks, not by the plain comparison
_MEMORY = [
    Mutant("gla.chunk.unwritten-tail", "unwritten-tail", "gla", ("chunk",), _GLA_C, "chunk_fwd_o_kernel",
           ((_GLA_C_O, _GLA_C_O.replace("    tl.store(", "    if (i_t + 1) * BT <= seq_len:\n        tl.store(")),),
           "the output kernel skips the store of a sequence's last chunk when it is partial (T % BT != 0)"),
    Mutant("gla.recurrent.unwritten-state", "unwritten-state", "gla", ("recurrent",), _GLA_R, "gla_recurrent_fwd_kernel",
           (("    if STORE_HT:\n        tl.store(ht + p_s, b_h, mask=m_h)\n",
             "    if STORE_HT:\n        if seq_len > 0:\n            tl.store(ht + p_s, b_h, mask=m_h)\n"),),
           "the forward kernel stores no final state for an empty sequence (an early exit)"),
    Mutant("gla.recurrent.overread-last-row", "overread-last-row", "gla", ("recurrent",), _GLA_R, "gla_recurrent_fwd_kernel",
           (("n_g = tl.load(p_g, mask=n_mk, other=0.0).to(tl.float32)  # masked: #1165",
             "n_g = tl.load(p_g, mask=(o_k <= K) & (o_k * 0 + t < seq_len), other=0.0).to(tl.float32)"),),
           "g loaded with mask o_k <= K: one element past each row, past the tensor on the last row (K < BK)"),
    Mutant("gla.recurrent.past-cu-seqlens", "past-cu-seqlens", "gla", ("recurrent",), _GLA_R, "gla_recurrent_fwd_kernel",
           (("    p_q = q + (bos * H + i_h) * K + o_k\n",
             "    if IS_VARLEN:\n        if i_n == tl.num_programs(1) // H - 1:\n            seq_len = T - bos\n"
             "    p_q = q + (bos * H + i_h) * K + o_k\n"),),
           "the forward kernel runs the last sequence to the end of the tensor (assumes cu_seqlens[-1] == T)"),
]

# -- the field catalog (issue 15 part 7): bugs users reported (research/field-bugs.md) --------
_GLA_R_WRAPPER_END = ("            STORE_HT=output_final_state, IS_VARLEN=cu_seqlens is not None, STATE_V_FIRST=state_v_first,\n"
                      "        )\n    return o, ht\n")
_FIELD = [
    Mutant("gla.recurrent.nondeterministic", "nondeterministic", "gla", ("recurrent",), _GLA_R, "gla_recurrent_fwd",
           ((_GLA_R_WRAPPER_END, _GLA_R_WRAPPER_END.replace(
               "    return o, ht\n",
               "    gla_recurrent_fwd.calls = getattr(gla_recurrent_fwd, 'calls', 0) + 1\n"
               "    if o.numel():\n"
               "        bits = o.view(torch.int32 if o.element_size() == 4 else torch.int16).view(-1)\n"
               "        bits[gla_recurrent_fwd.calls % o.numel()] ^= 1\n"
               "    return o, ht\n")),),
           "the last bit of one output element depends on the call count (what a racy accumulation order "
           "does): every call is within tolerance, two identical calls differ",
           field="fla #945/#1228", repeat="all"),
    Mutant("kda.recurrent.beta-bf16", "beta-bf16", "kda", ("recurrent",), _KDA_R, "kda_recurrent_fwd_kernel",
           (("        b_beta = tl.load(p_beta).to(tl.float32)\n",
             "        b_beta = tl.load(p_beta).to(tl.float32).to(tl.bfloat16).to(tl.float32)\n"),),
           "beta rounded to bf16 before the fp32 state update (fp32 and fp16 inputs lose beta's low bits)",
           field="vLLM #53877"),
    Mutant("gla.recurrent.gate-bf16", "gate-bf16", "gla", ("recurrent",), _GLA_R, "gla_recurrent_fwd_kernel",
           (("n_g = tl.load(p_g, mask=n_mk, other=0.0).to(tl.float32)  # masked: #1165",
             "n_g = tl.load(p_g, mask=n_mk, other=0.0).to(tl.float32).to(tl.bfloat16).to(tl.float32)"),),
           "the log-gate g rounded to bf16 inside the fp32 recurrence (the bf16-gate half of vLLM #42076)",
           field="vLLM #42076"),
    Mutant("gla.chunk.gate-overflow", "gate-overflow", "gla", ("chunk",), _GLA_C, "chunk_fwd_h_kernel",
           (("        b_kg = (b_k * tl.exp2(b_gl[:, None] - b_gk)).to(b_k.dtype)\n",
             "        b_kg = (b_k * (tl.exp2(b_gl)[:, None] * tl.exp2(-b_gk))).to(b_k.dtype)\n"),),
           "state kernel: k * exp(G_last) * exp(-G) instead of k * exp(G_last - G); under strong decay exp(-G) "
           "overflows and exp(G_last) underflows: inf * 0 = NaN (fla PR #649 fixed this in dv)",
           field="fla PR #649"),
    Mutant("gla.recurrent.int32-offset", "int32-offset", "gla", ("recurrent",), _GLA_R, "gla_recurrent_fwd_kernel",
           (("    p_q = q + (bos * H + i_h) * K + o_k\n",
             "    p_q = q + ((bos * H + i_h) * K).to(tl.int32) + o_k\n"),),
           "q's token offset truncated to int32: wraps once B*T*H*K > 2^31",
           field="fla #1080", large_index=True,
           gpu_only="the offset wraps only past 2^31 elements (q alone 8 GiB in fp32): shapes for a GPU's "
                    "large-index run (issue 15 part 6), out of reach of the CPU interpreter"),
]

# the public thread of each earlier mutant that plants a field bug (field-bugs.md)
_THREADS = {
    "simple_gla.chunk.config-specific": "fla #640",
    "gla.recurrent.overread-last-row": "fla #1134",
    "gla.recurrent.past-cu-seqlens": "fla #892",
    "gla.recurrent.non-contiguous": "SGLang #22312",
    "gla.recurrent.split-state": "fla #285/#494",
    "gated_delta.recurrent.l2norm-eps": "transformers #40842",
    "gated_delta.chunk.l2norm-eps": "transformers #40842",
}

MUTANTS: tuple[Mutant, ...] = tuple(
    dataclasses.replace(m, field=_THREADS.get(m.id, m.field))
    for m in _GLA + _delta_family("delta") + _delta_family("gated_delta") + _GATED_ONLY + _KDA + list(SUBTLE)
    + _SIMPLE_GLA + _GATED_OPTIONS + _MEMORY + _INVARIANCE + _FIELD)


def all_entries() -> list[Mutant | UsageCase]:
    """Every catalog entry: source mutants, then usage cases."""
    return [*MUTANTS, *USAGE_CASES]


def select(ops: Optional[Sequence[str]] = None, ids: Optional[Sequence[str]] = None,
           field_only: bool = False) -> list[Mutant | UsageCase]:
    """Catalog entries of `ops` (all when None) whose id is in `ids` or starts with one of them
    followed by '.' (e.g. 'gla.chunk'); with `field_only`, only those with a public field thread.
    Raises SelectionError (a ValueError) for an id that selects nothing."""
    entries = [e for e in all_entries() if (not ops or e.op in ops) and (not field_only or e.field)]
    if not ids:
        return entries
    picked = []
    for want in ids:
        hits = [e for e in entries if e.id == want or e.id.startswith(want + ".") or e.kind == want]
        if not hits:
            among = " among the field mutants (--field)" if field_only else ""
            raise SelectionError(f"no mutant matches {want!r}{among} (ids, id prefixes such as gla.chunk, or bug "
                                 "classes); see `fla-check selftest --list`")
        picked += [e for e in hits if e not in picked]
    return picked


# -- reviewed function hashes -----------------------------------------------------------------
# sha256 (first 16 hex digits, fla_check.commands.selftest.mutate.function_hash) of every function a mutant
# rewrites, as of the last review of its mutants. Written by `--rehash`; edit by hand only to
# resolve a merge (then rehash).
REVIEWED_HASHES: dict[str, str] = {  # rehash: begin
    "fla_check.kernels.common.cumsum:chunk_local_cumsum_kernel": "3d7c55a83bed3044",
    "fla_check.kernels.common.gates:softplus": "cc21d2ccacd4fca9",
    "fla_check.kernels.common.l2norm:l2norm_fwd_kernel": "dc52ffd6d154ee36",
    "fla_check.kernels.common.ut_transform:ut_transform_bwd_kernel": "0c1538de2fc9c0a9",
    "fla_check.kernels.common.ut_transform:ut_transform_fwd_kernel": "1de87bb90c1db5d6",
    "fla_check.kernels.common.varlen:sequence_bounds": "cc8f82763ab6d097",
    "fla_check.kernels.delta.chunk:chunk_delta_h_kernel": "031d8af886d69446",
    "fla_check.kernels.delta.chunk:chunk_delta_o_kernel": "8bc31253544e448c",
    "fla_check.kernels.delta.chunk:chunk_fwd": "cd2e0fc72dcad246",
    "fla_check.kernels.delta.recurrent:delta_rule_recurrent_bwd_reverse_kernel": "a4a85ebcf89ff7c2",
    "fla_check.kernels.delta.recurrent:delta_rule_recurrent_fwd": "ed8ee55deb9aac62",
    "fla_check.kernels.delta.recurrent:delta_rule_recurrent_fwd_kernel": "fbcf74b7db67ed89",
    "fla_check.kernels.gla.chunk:chunk_bwd_dqkg_kernel": "58e4a153eb4428c0",
    "fla_check.kernels.gla.chunk:chunk_fwd_A_intra_kernel": "7fe37b858c53045e",
    "fla_check.kernels.gla.chunk:chunk_fwd_h": "3a584e59df214255",
    "fla_check.kernels.gla.chunk:chunk_fwd_h_kernel": "47efae028b130fca",
    "fla_check.kernels.gla.chunk:chunk_fwd_o_kernel": "f81b23cbeb9223c3",
    "fla_check.kernels.gla.chunk:chunk_local_cumsum_kernel": "5e49420bf0c48ec6",
    "fla_check.kernels.gla.fused_chunk:gla_fused_chunk": "05866702b0a4001f",
    "fla_check.kernels.gla.fused_chunk:gla_fused_chunk_fwd_kernel": "2a1e9f515c0431bc",
    "fla_check.kernels.gla.inputs:prepare_gla_args": "d8d8b70b4e6b1202",
    "fla_check.kernels.gla.recurrent:gla_recurrent_bwd_dg_kernel": "44df75a08afa34b6",
    "fla_check.kernels.gla.recurrent:gla_recurrent_bwd_kernel": "c9325adde87cb992",
    "fla_check.kernels.gla.recurrent:gla_recurrent_fwd": "fb40e011bc6d1197",
    "fla_check.kernels.gla.recurrent:gla_recurrent_fwd_kernel": "071bd9b6c34fca4f",
    "fla_check.kernels.kda.chunk:kda_h_kernel": "86e5f83de8aba517",
    "fla_check.kernels.kda.chunk:kda_o_kernel": "e4bb38d66b409014",
    "fla_check.kernels.kda.chunk:kda_ut_kernel": "74e0fda448a6cf46",
    "fla_check.kernels.kda.recurrent:kda_recurrent_bwd_kernel": "040edb068d1bf1b7",
    "fla_check.kernels.kda.recurrent:kda_recurrent_fwd_kernel": "d005ad5e8805ce35",
    "fla_check.kernels.simple_gla.chunk:_fwd_h": "ec8089fa5e46a038",
    "fla_check.kernels.simple_gla.chunk:simple_gla_bwd_dqkg_kernel": "22a750469b40d77f",
    "fla_check.kernels.simple_gla.chunk:simple_gla_fwd_h_kernel": "0cde491b4bc3ae64",
    "fla_check.kernels.simple_gla.chunk:simple_gla_fwd_o_kernel": "5b63c645e82ad280",
    "fla_check.kernels.simple_gla.recurrent:simple_gla_recurrent_bwd_dg_kernel": "ab3414220e333bac",
    "fla_check.kernels.simple_gla.recurrent:simple_gla_recurrent_fwd": "6acc4f88be6652e5",
    "fla_check.kernels.simple_gla.recurrent:simple_gla_recurrent_fwd_kernel": "cf2d67a2ab766fd5",
}  # rehash: end
REHASH_COMMAND = f"python3 -m {__spec__.name if __spec__ else 'fla_check.commands.selftest.mutants'} --rehash"


def current_hashes(mutants: Sequence[Mutant] = MUTANTS) -> dict[str, str]:
    """``module:function`` -> hash of that function's source now, for every targeted function
    (MutationError when a target function is missing)."""
    return {m.target: function_hash(_module_source(m.module), m.function)
            for m in sorted(mutants, key=lambda m: m.target)}


def stale_targets(reviewed: dict[str, str], mutants: Sequence[Mutant] = MUTANTS) -> dict[str, list[str]]:
    """Targets whose source differs from the `reviewed` hash (or has none), each with the ids of
    the mutants to review; a reviewed target no mutant uses any more maps to []."""
    stale: dict[str, list[str]] = {}
    for m in mutants:
        try:
            changed = function_hash(_module_source(m.module), m.function) != reviewed.get(m.target)
        except MutationError:
            changed = True
        if changed:
            stale.setdefault(m.target, []).append(m.id)
    for target in reviewed.keys() - {m.target for m in mutants}:
        stale[target] = []
    return stale


def review_message(stale: dict[str, list[str]]) -> str:
    """What to review for `stale` (see :func:`stale_targets`) and how to record the review."""
    lines = ["kernel functions targeted by mutants changed since their mutants were reviewed:"]
    for target, ids in sorted(stale.items()):
        lines.append(f"  {target}: " + (", ".join(ids) if ids else "no mutant targets it any more"))
    lines.append("check that each listed mutant still plants its bug (its description), then run "
                 f"`{REHASH_COMMAND}` and commit the updated table")
    return "\n".join(lines)


def rehash(path: Optional[Path] = None, mutants: Sequence[Mutant] = MUTANTS) -> dict[str, str]:
    """Rewrite the REVIEWED_HASHES table of `path` (this module's file by default) with the
    current hashes; returns them."""
    path = Path(path or __file__)
    text = path.read_text()
    begin, end = "REVIEWED_HASHES: dict[str, str] = {  # rehash: begin\n", "}  # rehash: end\n"
    if text.count(begin) != 1 or text.count(end) != 1:
        raise ValueError(f"{path}: the REVIEWED_HASHES markers are missing or repeated")
    hashes = current_hashes(mutants)
    rows = "".join(f'    "{target}": "{digest}",\n' for target, digest in hashes.items())
    head, rest = text.split(begin)
    path.write_text(head + begin + rows + end + rest.split(end, 1)[1])
    return hashes


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``--rehash``: record the current hashes; ``--check``: exit 1 with the review message when
    a targeted function changed since its review."""
    parser = argparse.ArgumentParser(prog=f"python3 -m {__spec__.name if __spec__ else 'fla_check.commands.selftest.mutants'}",
                                     description="Review table of the functions the selftest mutants rewrite.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--rehash", action="store_true", help="record the current function hashes in this module")
    group.add_argument("--check", action="store_true", help="list the mutants whose function changed (exit 1)")
    args = parser.parse_args(argv)
    if args.rehash:
        hashes = rehash()
        print(f"recorded {len(hashes)} function hashes in {Path(__file__)}")
        return 0
    stale = stale_targets(REVIEWED_HASHES)
    print(review_message(stale) if stale else f"all {len(current_hashes())} targeted functions as reviewed")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
