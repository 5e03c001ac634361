"""Metamorphic (invariance) checks: the same computation asked for in another way must give the
same answer (issue 15 part 3; fla #285/#494, SGLang #22312).

Checks (each runs the mode again on a variant of the case's inputs, forward only):

- ``split``: the sequence run in two parts, the first part's final state passed as the second
  part's ``initial_state``; the split point is drawn from the case seed (half the time on a
  16-multiple, i.e. a chunk boundary, else anywhere, mostly inside a chunk). Not for
  ``cu_seqlens`` cases, nor for modes without ``initial_state``.
- ``packing``: B rows vs the same rows packed with ``cu_seqlens`` (one sequence per row) vs one
  row at a time; a ``cu_seqlens`` case is also run one sequence at a time (and as B rows when its
  sequences have equal lengths).
- ``batch``: the case's rows (sequences) with a row (sequence) of other data before and after
  them: the case's rows must not move.
- ``layout``: non-contiguous views with the same values: q, v, beta in transposed storage
  (time and the last dim swapped: ``[B,D,H,T]`` storage viewed as ``[B,T,H,D]``, never
  contiguous when T > 1, whatever B and H), k, g as a slice of a wider tensor (last dim + 8,
  the extra lanes NaN) -- must equal the contiguous result.

Rule (one error model for all): the variant's outputs are reassembled into the case's shapes
(parts concatenated, rows unpacked, the added rows dropped), which the float64 reference of the
case computes exactly (the variants are the same math), and judged by
:func:`fla_check.verdict.compare.compare` with the SAME baseline and bounds as the whole run. A
variant is OK iff every reassembled output passes; else the mode is NOT_INVARIANT and the reason
names the check and the variant. An honest kernel differs between variants by rounding only
(another chunking, an fp32 state handed over), which the mode's declared noise bounds; whether
the variant is also bitwise equal to the whole run is recorded (``bitwise``), not judged.

Cost: each check is one more forward pass (packing one by one: B small ones). Default check
``layout`` (``FLA_CHECK_INVARIANCE``), scope ``bucket``: only the first case (T >= 2) of
each compile bucket and length class per mode and check (:func:`wanted`;
``FLA_CHECK_INVARIANCE_SCOPE=all``: every case).
"""
from __future__ import annotations

import math
import os
import random
import traceback
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from fla_check.cases import CaseConfig, CaseInputs, guarded
from fla_check.errors import InvarianceSpecError
from fla_check.verdict.compare import Comparison, Verdict
from fla_check.verdict.results import InvarianceResult

CHECKS = ("split", "packing", "batch", "layout")
DEFAULT_CHECKS = ("layout",)  # split: opt-in until its baseline is emulated per part (docs/invariance.md)
CHECKS_ENV = "FLA_CHECK_INVARIANCE"
SCOPE_ENV = "FLA_CHECK_INVARIANCE_SCOPE"
SCOPES = ("bucket", "all")
WIDER = 8  # extra last-dim lanes of the "slice of a wider tensor" layout (NaN)
_SPLIT_SALT = 0x5EED5
_SEEN: set[tuple] = set()  # (mode, check, compile bucket) already checked in this process (scope bucket)

# fn(q, k, v, g, beta, initial_state, cu_seqlens) -> (o, ht): one forward call of the mode
Call = Callable[[Tensor, Tensor, Tensor, Optional[Tensor], Optional[Tensor], Optional[Tensor], Optional[Tensor]],
                tuple[Tensor, Tensor]]
Judge = Callable[[str, Tensor], Comparison]  # judge an output reassembled into the case's shape


def parse_checks(text: Optional[str]) -> tuple[str, ...]:
    """'split,layout', 'all' or 'none' (None: ``FLA_CHECK_INVARIANCE`` or the default set)."""
    if text is None:
        text = os.environ.get(CHECKS_ENV, ",".join(DEFAULT_CHECKS))
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return CHECKS
    if names in (["none"], []):
        return ()
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise InvarianceSpecError(f"unknown invariance check(s) {', '.join(unknown)}; valid: "
                                  f"{', '.join(CHECKS)}, all or none")
    return tuple(c for c in CHECKS if c in names)


def parse_scope(text: Optional[str]) -> str:
    """'bucket' or 'all' (None: ``FLA_CHECK_INVARIANCE_SCOPE`` or bucket)."""
    scope = (text or os.environ.get(SCOPE_ENV, "bucket")).strip().lower()
    if scope not in SCOPES:
        raise InvarianceSpecError(f"invariance scope {scope!r}; valid: {', '.join(SCOPES)}")
    return scope


def wanted(mode: str, check: str, config: CaseConfig, scope: str) -> bool:
    """Whether to run `check` for `mode` on `config`: always with scope ``all``; with ``bucket``
    the first case with T >= 2 of each compile bucket (dtype, H, HV, K, V, packing, initial
    state, options, chunk size, state layout) and length class (T <= 16, <= 64, longer): one row of one step has no
    split and no layout that differs in memory, and short and multi-chunk sequences take other
    paths through a chunk kernel."""
    if scope == "all":
        return True
    if config.T < 2:
        return False
    length = 0 if config.T <= 16 else 1 if config.T <= 64 else 2
    key = (mode, check, config.dtype, config.H, config.HV, config.K, config.V, config.packing,
           config.initial_state, config.options, config.chunk_size, config.state_v_first, length)
    if key in _SEEN:
        return False
    _SEEN.add(key)
    return True


def forget_seen() -> None:
    """Forget which buckets scope ``bucket`` already checked in this process (a selftest entry
    runs as if alone in its process, whatever ran before it)."""
    _SEEN.clear()


@dataclass
class Variant:
    check: str
    variant: str
    run: Callable[[Call], tuple[Tensor, Tensor]]  # runs the mode, returns (o, ht) in the case's shapes


def variants(check: str, config: CaseConfig, inputs: CaseInputs, *, varlen_ok: bool,
             h0_ok: bool) -> list[Variant] | str:
    """The variants of `check` for this case, or why it does not apply (a string)."""
    return {"split": _split, "packing": _packing, "batch": _batch, "layout": _layout}[check](
        config, inputs, varlen_ok, h0_ok)


def run_check(check: str, config: CaseConfig, inputs: CaseInputs, call: Call, judge: Judge,
              whole: dict[str, Tensor], *, varlen_ok: bool, h0_ok: bool) -> list[InvarianceResult]:
    """Run every variant of `check` and judge it (module doc); [] when the check does not apply."""
    found = variants(check, config, inputs, varlen_ok=varlen_ok, h0_ok=h0_ok)
    if isinstance(found, str):
        return []
    results = []
    for var in found:
        try:
            with torch.no_grad():
                o, ht = var.run(call)
        except Exception as exc:  # noqa: BLE001 - a variant the kernel refuses is a finding too
            results.append(InvarianceResult(var.check, var.variant, Verdict.NOT_INVARIANT,
                                            reason=f"{var.check} ({var.variant}): raised {type(exc).__name__}: {exc}"
                                                   f"\n{traceback.format_exc(limit=3)}"))
            continue
        got = {"o": o, "ht": ht}
        comps, bitwise = [], True
        for name in ("o", "ht"):
            if tuple(got[name].shape) != tuple(whole[name].shape):
                raise AssertionError(f"{check}: reassembled {name} {tuple(got[name].shape)} "
                                     f"!= {tuple(whole[name].shape)}")  # a bug of this module
            comps.append(judge(name, got[name]))
            bitwise = bitwise and _same_bits(got[name], whole[name])
        bad = [c for c in comps if c.verdict.failed]
        verdict = Verdict.NOT_INVARIANT if bad else Verdict.OK
        reason = ""
        if bad:
            c = bad[0]
            reason = (f"{var.check} ({var.variant}): {c.name} {c.verdict.value} against the reference "
                      f"(max-abs {c.kernel.max_abs:.3g} > {c.bound_max_abs:.3g} or rel-RMSE {c.kernel.rel_rms:.3g} "
                      f"> {c.bound_rel_rms:.3g}) while the whole run passes")
        results.append(InvarianceResult(var.check, var.variant, verdict, comps, bitwise, reason))
    return results


def _same_bits(a: Tensor, b: Tensor) -> bool:
    a, b = a.detach(), b.detach()
    return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def _seq_inputs(inputs: CaseInputs) -> list[Optional[Tensor]]:
    """q, k, v, g, beta (the per-token inputs, [B,T,...])."""
    return [inputs.q, inputs.k, inputs.v, inputs.g, inputs.beta]


def _map(xs: Sequence[Optional[Tensor]], f: Callable[[Tensor], Tensor]) -> list[Optional[Tensor]]:
    return [None if x is None else f(x) for x in xs]


def _plain(call: Call, xs: Sequence[Optional[Tensor]], h0: Optional[Tensor],
           cu: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """One call on NaN-guarded contiguous copies."""
    q, k, v, g, beta = (guarded(x) for x in xs)
    return call(q, k, v, g, beta, guarded(h0), None if cu is None else cu.clone())


# -- split --------------------------------------------------------------------------------------
def split_point(config: CaseConfig) -> int:
    """Where `config` is split (1 <= s < T), drawn from its seed: half the time on a 16-multiple
    (a chunk boundary) when T has one, else anywhere (mostly inside a chunk)."""
    rng = random.Random(config.seed ^ _SPLIT_SALT)
    boundaries = list(range(16, config.T, 16))
    if boundaries and rng.random() < 0.5:
        return rng.choice(boundaries)
    return rng.randrange(1, config.T)


def _split(config: CaseConfig, inputs: CaseInputs, varlen_ok: bool, h0_ok: bool) -> list[Variant] | str:
    if config.varlen:
        return "split: not for cu_seqlens cases"
    if not h0_ok:
        return "split: the mode takes no initial_state"
    if config.T < 2:
        return "split: T < 2"
    s = split_point(config)
    where = "on a 64-chunk boundary" if s % 64 == 0 else "on a 16-chunk boundary" if s % 16 == 0 else \
        "inside a 16-chunk"

    def run(call: Call) -> tuple[Tensor, Tensor]:
        xs = _seq_inputs(inputs)
        o1, h1 = _plain(call, _map(xs, lambda x: x[:, :s]), inputs.initial_state, None)
        o2, h2 = _plain(call, _map(xs, lambda x: x[:, s:]), h1, None)
        return torch.cat([o1, o2], dim=1), h2

    return [Variant("split", f"split at t={s} of {config.T} ({where}), final state handed over", run)]


# -- packing ------------------------------------------------------------------------------------
def _packing(config: CaseConfig, inputs: CaseInputs, varlen_ok: bool, h0_ok: bool) -> list[Variant] | str:
    if config.varlen:
        return _unpack_varlen(config, inputs)
    if not varlen_ok and config.B == 1:
        return "packing: one row and the mode takes no cu_seqlens"
    out = []
    B, T = config.B, config.T
    xs, h0 = _seq_inputs(inputs), inputs.initial_state
    if varlen_ok:
        def packed(call: Call) -> tuple[Tensor, Tensor]:
            cu = torch.arange(0, B * T + 1, T, dtype=torch.int64, device=inputs.q.device)
            o, ht = _plain(call, _map(xs, lambda x: x.reshape((1, B * T) + x.shape[2:])), h0, cu)
            return o.reshape((B, T) + o.shape[2:]), ht
        out.append(Variant("packing", f"{B} row(s) packed into one with cu_seqlens", packed))
    if B > 1:
        def one_by_one(call: Call) -> tuple[Tensor, Tensor]:
            parts = [_plain(call, _map(xs, lambda x: x[b:b + 1]), None if h0 is None else h0[b:b + 1], None)
                     for b in range(B)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        out.append(Variant("packing", f"{B} rows run one at a time", one_by_one))
    return out


def _unpack_varlen(config: CaseConfig, inputs: CaseInputs) -> list[Variant]:
    lengths = list(config.segments[0])
    starts = config.segment_starts(0)
    xs, h0 = _seq_inputs(inputs), inputs.initial_state
    N, out = len(lengths), []

    def one_by_one(call: Call) -> tuple[Tensor, Tensor]:
        os_, hts = [], []
        for n, (bos, n_len) in enumerate(zip(starts, lengths)):
            h = None if h0 is None else h0[n:n + 1]
            if n_len == 0:  # an empty sequence: its final state is its initial state
                hts.append(h.float() if h is not None else _zero_state(inputs))
                continue
            o, ht = _plain(call, _map(xs, lambda x: x[:, bos:bos + n_len]), h, None)
            os_.append(o)
            hts.append(ht)
        return torch.cat(os_, dim=1), torch.cat(hts)
    out.append(Variant("packing", f"{N} cu_seqlens sequence(s) run one at a time", one_by_one))
    if N > 1 and len(set(lengths)) == 1:
        L = lengths[0]

        def rows(call: Call) -> tuple[Tensor, Tensor]:
            o, ht = _plain(call, _map(xs, lambda x: x.reshape((N, L) + x.shape[2:])), h0, None)
            return o.reshape((1, N * L) + o.shape[2:]), ht
        out.append(Variant("packing", f"{N} equal cu_seqlens sequences run as {N} rows", rows))
    return out


def _zero_state(inputs: CaseInputs) -> Tensor:
    HV, V, K = inputs.v.shape[2], inputs.v.shape[3], inputs.k.shape[3]
    return torch.zeros(1, HV, K, V, dtype=torch.float32, device=inputs.q.device)


# -- batch --------------------------------------------------------------------------------------
def _batch(config: CaseConfig, inputs: CaseInputs, varlen_ok: bool, h0_ok: bool) -> list[Variant] | str:
    """Other data around the case's rows: a time-reversed copy of the first row before them and
    of the last row after them (valid inputs of every kind: gates, fills, beta, options)."""
    xs, h0 = _seq_inputs(inputs), inputs.initial_state
    B, T = config.B, config.T
    if config.varlen:
        L = min(T, 17)

        def around_seqs(call: Call) -> tuple[Tensor, Tensor]:
            cat = _map(xs, lambda x: torch.cat([x[:, :L].flip(1), x, x[:, T - L:].flip(1)], dim=1))
            cu = torch.cat([inputs.cu_seqlens.new_zeros(1), inputs.cu_seqlens + L,
                            inputs.cu_seqlens.new_full((1,), T + 2 * L)])
            h = None if h0 is None else torch.cat([h0[:1].flip(-1), h0, h0[-1:].flip(-1)])
            o, ht = _plain(call, cat, h, cu)
            return o[:, L:L + T], ht[1:-1]
        return [Variant("batch", f"a {L}-token sequence of other data before and after the "
                                 f"{config.num_states} cu_seqlens sequence(s)", around_seqs)]

    def around_rows(call: Call) -> tuple[Tensor, Tensor]:
        cat = _map(xs, lambda x: torch.cat([x[:1].flip(1), x, x[-1:].flip(1)]))
        h = None if h0 is None else torch.cat([h0[:1].flip(-1), h0, h0[-1:].flip(-1)])
        o, ht = _plain(call, cat, h, None)
        return o[1:B + 1], ht[1:B + 1]
    return [Variant("batch", f"a row of other data before and after the {B} row(s) (batch {B + 2})", around_rows)]


# -- layout -------------------------------------------------------------------------------------
def transposed(x: Tensor) -> Tensor:
    """`x` ([B,T,H,D] or [B,T,H]) as a view of storage with T and the last dim swapped
    ([B,D,H,T] or [B,H,T]): same values, non-contiguous whenever T > 1."""
    return x.transpose(1, -1).contiguous().transpose(1, -1)


def sliced(x: Tensor, extra: int = WIDER) -> Tensor:
    """`x` as a slice of a tensor `extra` lanes wider in its last dim, the extra lanes NaN."""
    wide = torch.full(x.shape[:-1] + (x.shape[-1] + extra,), math.nan, dtype=x.dtype, device=x.device)
    wide[..., :x.shape[-1]] = x
    return wide[..., :x.shape[-1]]


def _layout(config: CaseConfig, inputs: CaseInputs, varlen_ok: bool, h0_ok: bool) -> list[Variant] | str:
    def run(call: Call) -> tuple[Tensor, Tensor]:
        q, v = transposed(inputs.q), transposed(inputs.v)
        k = sliced(inputs.k)
        g = None if inputs.g is None else sliced(inputs.g)
        beta = None if inputs.beta is None else transposed(inputs.beta)
        return call(q, k, v, g, beta, guarded(inputs.initial_state),
                    None if inputs.cu_seqlens is None else inputs.cu_seqlens.clone())
    return [Variant("layout", "q, v, beta in transposed storage; k, g sliced from a wider tensor (NaN lanes)",
                    run)]
