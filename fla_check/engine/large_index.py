"""The large-index check (issue 15 part 6; fla #1080, #913): one case per op, mode and dtype whose
index arithmetic passes 2^31 elements, judged on a few sampled sequences.

The case is a varlen pack (``cu_seqlens``, B == 1) of ``num_seqs`` sequences of ``seq_len`` tokens:
``T * H * max(K, V) > min_elements`` (default 2^31) for q/k/v/o, so a kernel that computes a token
offset ``(bos * H + i_h) * K`` in int32 wraps on the last sequences (fla #1080), and its launches
span >= 1024 blocks along the dimensions fla #913 hit: the 64-token chunks of the pack (the
``NT`` axis of chunk kernels, kkt_solve's first grid dimension) and the sequence x head axis of
the recurrent and state kernels (``N * H``); both stay <= 65535, CUDA's limit for a grid's y / z.

The kernel runs on the whole pack; the float64 reference only on the sampled sequences (the
first, a middle one, the one that straddles ``min_elements``, the first one wholly past it, the
last), each alone on its slice (:func:`fla_check.references.reference`), compared with the
kernel's slice of ``o`` and its final state by the run's error model
(:func:`fla_check.verdict.baselines.sample_groups`, :func:`fla_check.verdict.compare.compare`).

Inputs are drawn on the device, block by block, each block from its own seeded generator
(:func:`block_seed`): no full-size temporaries, no host round trip, and a replay on the same kind
of device rebuilds the same tensors. They lie in one buffer in the order k, v, g, beta, q, so a
wrapped (negative) offset into q reads k's or v's memory (a wrong value, not a fault) -- the
corrupt output of #1080 rather than an illegal address.

Memory (:func:`memory_need`): the inputs exactly, plus per mode its outputs and workspace,
measured on the device on a proxy pack of :data:`PROXY_SEQS` sequences and scaled by the number
of sequences (CUDA only; on CPU only the tensors are counted, and said so). The budget defaults to
80% of the GPU's memory (:func:`default_budget`); a pack past 2^31 elements is refused on the CPU
interpreter (:func:`check_device`). The runs' packs come from :func:`plan` (:data:`PLAN` overrides
the shape and threshold: the CLI tests shrink it).
"""
from __future__ import annotations

import math
import time
import warnings
import zlib
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from fla_check.cases import BETA_OPS, DTYPES, GATE_OPS, CaseInputs, dtype_name
from fla_check.engine.configs import FIRST, ConfigPolicy, autotune_scope
from fla_check.errors import CaseError, UsageError
from fla_check.ops import ModeSpec, OpSpec
from fla_check.references import reference
from fla_check.verdict.baselines import noise_scales, sample_groups, sample_seed
from fla_check.verdict.compare import Comparison, Verdict, compare, worst
from fla_check.verdict.results import LargeIndexResult, ModeResult, SequenceResult

INDEX_LIMIT = 2**31  # int32 offsets wrap past it (fla #1080)
GRID_MIN = 1024  # blocks per launched dimension (fla #913: NaN from 1024 blocks on)
GRID_YZ_MAX = 65535  # CUDA's limit for a grid's y and z dimensions
CHUNK = 64  # the chunk size whose count is the chunk kernels' grid axis
DEFAULT_SHAPE = dict(H=8, K=128, V=128, seq_len=512)  # 4098 sequences, 2^31 + 2^20 elements per tensor
PLAN: dict[str, Any] = {}  # keyword arguments of large_index_case for the runs' packs (tests: a tiny threshold)
DEFAULT_BUDGET_GIB = 64.0  # without a GPU (where a real pack is refused anyway); see default_budget
BUDGET_SHARE = 0.8  # of the GPU's memory: the default budget on CUDA
PROXY_SEQS = 16  # sequences of the proxy pack the workspace is measured on (CUDA)
BLOCK_ELEMENTS = 2**24  # elements per drawn block (64 MiB in fp32)
GIB = 2**30
LABEL = "large-index"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class LargeIndexCase:
    """A varlen pack whose index arithmetic passes `min_elements`; JSON round-trippable."""

    op: str
    dtype: str
    H: int
    K: int
    V: int
    seq_len: int
    num_seqs: int
    sampled: tuple[int, ...]
    seed: int = 0
    min_elements: int = INDEX_LIMIT

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        object.__setattr__(self, "sampled", tuple(int(s) for s in self.sampled))
        if self.op not in GATE_OPS:
            raise CaseError(f"unknown op {self.op!r}")
        if min(self.H, self.K, self.V, self.seq_len, self.num_seqs) < 1:
            raise CaseError("H, K, V, seq_len and num_seqs must be >= 1")
        if any(not 0 <= s < self.num_seqs for s in self.sampled) or not self.sampled:
            raise CaseError(f"sampled sequences {self.sampled} outside 0..{self.num_seqs - 1}")

    @property
    def T(self) -> int:
        return self.seq_len * self.num_seqs

    @property
    def width(self) -> int:
        """max(K, V): the per-token-and-head width of the largest of q/k/v/o."""
        return max(self.K, self.V)

    @property
    def elements(self) -> int:
        """Elements of the largest of q/k/v/o: T * H * max(K, V)."""
        return self.T * self.H * self.width

    def offset(self, seq: int) -> int:
        """Element offset of sequence `seq`'s first token in the largest tensor."""
        return seq * self.seq_len * self.H * self.width

    def past(self, seq: int) -> bool:
        """Whether `seq` has elements past `min_elements` (its last token's offsets do)."""
        return self.offset(seq + 1) > self.min_elements

    def grid(self) -> dict[str, int]:
        """Blocks along the launch axes fla #913 hit."""
        return {"chunks": self.num_seqs * math.ceil(self.seq_len / CHUNK), "sequences x heads": self.num_seqs * self.H}

    def cu_seqlens(self) -> list[int]:
        return [i * self.seq_len for i in range(self.num_seqs + 1)]

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Kernel inputs in buffer order (q last: see the module doc)."""
        T, H = self.T, self.H
        shapes: dict[str, tuple[int, ...]] = {"k": (1, T, H, self.K), "v": (1, T, H, self.V)}
        if GATE_OPS[self.op]:
            shapes["g"] = (1, T, H) + ((self.K,) if GATE_OPS[self.op] == "key" else ())
        if BETA_OPS[self.op]:
            shapes["beta"] = (1, T, H)
        shapes["q"] = (1, T, H, self.K)
        return shapes

    def tensor_bytes(self) -> dict[str, int]:
        """Bytes of the inputs (one buffer), of o and of the fp32 final states."""
        size = DTYPES[self.dtype].itemsize
        inputs = sum(math.prod(s) for s in self.input_shapes().values()) * size
        return {"inputs": inputs, "o": self.T * self.H * self.V * size,
                "ht": self.num_seqs * self.H * self.K * self.V * 4}

    def describe(self) -> str:
        grid = ", ".join(f"{v} {k}" for k, v in self.grid().items())
        return (f"{self.op} {self.dtype}: {self.num_seqs} sequences x {self.seq_len} tokens (cu_seqlens), "
                f"T={self.T} H={self.H} K={self.K} V={self.V}: {self.elements} elements per tensor "
                f"(> {self.min_elements}); grid {grid}; sampled sequences {list(self.sampled)}")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["sampled"] = list(self.sampled)
        out["elements"] = self.elements
        out["grid"] = self.grid()
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "LargeIndexCase":
        known = {k: d[k] for k in ("op", "dtype", "H", "K", "V", "seq_len", "num_seqs", "sampled", "seed",
                                   "min_elements") if k in d}
        return cls(**known)


def large_index_case(op: str, dtype: str, *, H: int = DEFAULT_SHAPE["H"], K: int = DEFAULT_SHAPE["K"],
                     V: int = DEFAULT_SHAPE["V"], seq_len: int = DEFAULT_SHAPE["seq_len"],
                     min_elements: int = INDEX_LIMIT, seed: int = 0, grid_limits: bool = True) -> LargeIndexCase:
    """The pack for `op` and `dtype`: enough sequences that two lie wholly past `min_elements`;
    sampled: the first, a middle one, the one straddling `min_elements` (if one does), the first
    wholly past it and the last. `grid_limits`: refuse (CaseError) a pack whose launch axes exceed
    CUDA's 65535 or stay below 1024 blocks (the real threshold; tests with a tiny one pass False)."""
    per_seq = seq_len * H * max(K, V)
    first_past = -(-min_elements // per_seq)  # the first sequence starting at or past min_elements
    num_seqs = first_past + 2
    straddle = [min_elements // per_seq] if min_elements % per_seq else []
    sampled = sorted({0, num_seqs // 2, *straddle, first_past, num_seqs - 1})
    case = LargeIndexCase(op, dtype, H, K, V, seq_len, num_seqs, tuple(sampled), seed, min_elements)
    if grid_limits:
        for axis, blocks in case.grid().items():
            if not GRID_MIN <= blocks <= GRID_YZ_MAX:
                raise CaseError(f"large-index pack {case.describe()}: {blocks} blocks along the {axis} axis, "
                                f"outside [{GRID_MIN}, {GRID_YZ_MAX}]; change H or seq_len")
    return case


def plan(op: str, dtype: str) -> LargeIndexCase:
    """The pack a run checks for `op` and `dtype` (:data:`PLAN` overrides the defaults)."""
    return large_index_case(op, dtype, **PLAN)


def check_device(case: LargeIndexCase, device: str) -> None:
    """UsageError for a pack past 2^31 elements on the CPU interpreter (hours per mode, tens of GiB of
    host memory): the check is meant for a GPU."""
    if device != "cuda" and case.elements > INDEX_LIMIT:
        raise UsageError(f"--large-index needs a GPU: its {case.op} {case.dtype} pack has {case.elements} elements "
                         "per tensor, beyond what the CPU interpreter can run")


def block_seed(seed: int, name: str, block: int) -> int:
    """The generator seed of one drawn block of one input (stable across processes)."""
    return (seed * 1_000_003 + zlib.crc32(f"{name}|{block}".encode())) % 2**63


def _draw(case: LargeIndexCase, name: str, shape: tuple[int, ...], gen: torch.Generator, device: str) -> Tensor:
    """One block of input `name` in fp32, drawn like :func:`fla_check.cases.build_case` draws it."""
    if name == "beta":
        return torch.rand(shape, generator=gen, device=device)
    x = torch.randn(shape, generator=gen, device=device)
    if name == "g":
        return F.logsigmoid(x)
    if name == "k" and BETA_OPS[case.op]:
        return F.normalize(x, p=2.0, dim=-1)
    return x


def build_inputs(case: LargeIndexCase, device: str, progress: Optional[Progress] = None) -> dict[str, Tensor]:
    """The inputs of `case` on `device`, views of one buffer (module doc), drawn block by block."""
    shapes = case.input_shapes()
    dt = DTYPES[case.dtype]
    total = sum(math.prod(s) for s in shapes.values())
    buf = torch.empty(total, dtype=dt, device=device)
    per_token = {n: math.prod(s[2:]) for n, s in shapes.items()}
    tokens = max(case.seq_len, BLOCK_ELEMENTS // (case.H * case.width) // case.seq_len * case.seq_len)
    out, start, done, shown = {}, 0, 0, -1
    for name, shape in shapes.items():
        view = buf[start:start + math.prod(shape)].view(shape)
        start += math.prod(shape)
        for block, t0 in enumerate(range(0, case.T, tokens)):
            t1 = min(case.T, t0 + tokens)
            gen = torch.Generator(device=device).manual_seed(block_seed(case.seed, name, block))
            view[:, t0:t1] = _draw(case, name, (1, t1 - t0) + shape[2:], gen, device).to(dt)
            done += (t1 - t0) * per_token[name]
            tenth = 10 * done // total
            if progress and tenth != shown:
                shown = tenth
                progress(f"{LABEL} {case.op} {case.dtype}: inputs {_size(done * dt.itemsize)} / "
                         f"{_size(total * dt.itemsize)} drawn on {device}")
        out[name] = view
    return out


def _size(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 2**20:.2f} MiB"


def _call(spec: ModeSpec, inputs: dict[str, Tensor], cu: Tensor, device: str,
          policy: ConfigPolicy) -> tuple[Tensor, Tensor]:
    """One call of `spec` on the pack (no copies: the buffer layout is the point), (o, ht)."""
    fn = spec.load()
    with autotune_scope(policy, None), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        o, ht = fn(inputs["q"], inputs["k"], inputs["v"], g=inputs.get("g"), beta=inputs.get("beta"), scale=None,
                   initial_state=None, output_final_state=True, cu_seqlens=cu)
    if device == "cuda":
        torch.cuda.synchronize()
    return o, ht


def memory_need(case: LargeIndexCase, specs: Sequence[ModeSpec], device: str,
                policy: ConfigPolicy = FIRST) -> tuple[int, str]:
    """(bytes, how they were counted) the check of `case` needs: its inputs plus, per mode, its
    outputs and workspace (the largest), measured on a :data:`PROXY_SEQS`-sequence proxy pack on
    CUDA and scaled by the sequence count; on CPU the outputs only."""
    sizes = case.tensor_bytes()
    outputs = sizes["o"] + sizes["ht"]
    how = "inputs and outputs (mode workspace not measured on CPU)"
    if device == "cuda" and specs:
        proxy = replace(case, num_seqs=PROXY_SEQS, sampled=(0,))
        inputs = build_inputs(proxy, device)
        cu = torch.tensor(proxy.cu_seqlens(), dtype=torch.int64, device=device)
        peaks = []
        for spec in specs:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            try:
                _call(spec, inputs, cu, device, policy)
            except Exception:  # noqa: BLE001 - the real call reports it; count the outputs only
                peaks.append(0)
                continue
            peaks.append(torch.cuda.max_memory_allocated() - base)
        del inputs
        torch.cuda.empty_cache()  # the search's worker processes share the device
        scaled = max(peaks) * case.num_seqs // PROXY_SEQS
        if scaled > outputs:
            outputs, how = scaled, f"inputs, and outputs + workspace measured on a {PROXY_SEQS}-sequence proxy"
    return sizes["inputs"] + outputs, how


def default_budget(device: str) -> float:
    """GiB the check may use when no budget is given: 80% of the GPU's memory on CUDA (an H200:
    111 GiB, an 80 GB H100: 64 GiB), :data:`DEFAULT_BUDGET_GIB` elsewhere."""
    if device == "cuda" and torch.cuda.is_available():
        return round(BUDGET_SHARE * torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / GIB, 1)
    return DEFAULT_BUDGET_GIB


def check_budget(cases: Sequence[LargeIndexCase], specs: Sequence[ModeSpec], device: str, budget_gib: float,
                 policy: ConfigPolicy = FIRST) -> dict[str, float]:
    """GiB each case needs (by dtype); UsageError naming the need when one exceeds `budget_gib`."""
    needs = {}
    for case in cases:
        need, how = memory_need(case, specs, device, policy)
        needs[case.dtype] = need / GIB
        if need > budget_gib * GIB:
            raise UsageError(f"--large-index: the {case.op} {case.dtype} case needs {_size(need)} ({how}; "
                             f"{case.elements} elements per tensor), over the budget of {budget_gib:g} GiB; "
                             "raise --large-index-budget or leave that dtype out (--dtypes)")
    return needs


def _sequence_inputs(case: LargeIndexCase, inputs: dict[str, Tensor], seq: int) -> CaseInputs:
    t = slice(seq * case.seq_len, (seq + 1) * case.seq_len)
    part = {n: x[:, t] for n, x in inputs.items()}
    return CaseInputs(q=part["q"], k=part["k"], v=part["v"], g=part.get("g"), beta=part.get("beta"),
                      initial_state=None, cu_seqlens=None, reset_mask=None)


def judge_sequence(op: OpSpec, spec: ModeSpec, case: LargeIndexCase, inputs: dict[str, Tensor], seq: int,
                   kernel: dict[str, Tensor], cache: dict) -> SequenceResult:
    """Sequence `seq` of the kernel's outputs against the float64 reference run on its slice alone,
    by the run's error model (the baseline sampled on that slice). `cache`: references by sequence."""
    part = _sequence_inputs(case, inputs, seq)
    if seq not in cache:
        o, ht = reference(op.step, *part.tensors(), initial_state=None, output_final_state=True, cu_seqlens=None)
        cache[seq] = {"o": o, "ht": ht}
    ref = cache[seq]
    arith = spec.arithmetic
    groups = sample_groups(op, arith, part, DTYPES[case.dtype], sample_seed(case.seed * 1_000_003 + seq, arith),
                           exact=ref)
    scales = noise_scales(groups, ref)
    t = slice(seq * case.seq_len, (seq + 1) * case.seq_len)
    got = {"o": kernel["o"][:, t], "ht": kernel["ht"][seq:seq + 1]}
    comps = [compare(name, got[name], ref[name], scales[name], steps=case.seq_len) for name in ("o", "ht")]
    return SequenceResult(seq, case.offset(seq), worst(c.verdict for c in comps), comps)


def _summary(label: str, seqs: list[SequenceResult], case: LargeIndexCase, seconds: float) -> ModeResult:
    """A mode's verdict over its sampled sequences; outputs: the worst comparison per output."""
    by_name: dict[str, Comparison] = {}
    for s in seqs:
        for c in s.outputs:
            if c.name not in by_name or c.score > by_name[c.name].score:
                by_name[c.name] = c
    verdict = worst(s.verdict for s in seqs)
    reason = ""
    bad = [s for s in seqs if s.verdict.failed]
    if bad:
        first = bad[0]
        where = "past" if first.offset >= case.min_elements else "straddling" if case.past(first.index) else "below"
        reason = (f"sequence {first.index} (offsets from {first.offset}, {where} {case.min_elements}) "
                  f"{first.verdict.value}; failing sequences {[s.index for s in bad]} of sampled "
                  f"{[s.index for s in seqs]}")
    return ModeResult(label, verdict, list(by_name.values()), reason=reason, seconds=seconds)


def run_large_index(op: OpSpec, specs: Sequence[ModeSpec], case: LargeIndexCase, *, device: str,
                    labels: Optional[Sequence[str]] = None, policy: ConfigPolicy = FIRST,
                    unsupported: Optional[Callable[[ModeSpec], Optional[str]]] = None,
                    progress: Optional[Progress] = None) -> LargeIndexResult:
    """Every mode of `specs` on `case` (labels: their names in the report); `unsupported(spec)`:
    why a mode cannot run the case (UNSUPPORTED), or None."""
    start = time.perf_counter()
    labels = list(labels) if labels is not None else [s.qualified for s in specs]
    result = LargeIndexResult(case.to_json(), label=LABEL)
    if progress:
        progress(f"{LABEL}: {case.describe()}")
    inputs = build_inputs(case, device, progress)
    cu = torch.tensor(case.cu_seqlens(), dtype=torch.int64, device=device)
    refs: dict = {}
    for spec, label in zip(specs, labels):
        reason = unsupported(spec) if unsupported else None
        if reason:
            result.modes[label] = ModeResult(label, Verdict.UNSUPPORTED, reason=reason)
            continue
        t0 = time.perf_counter()
        if progress:
            progress(f"{LABEL} {case.op} {case.dtype}: running {label}")
        try:
            o, ht = _call(spec, inputs, cu, device, policy)
        except Exception as exc:  # noqa: BLE001 - a raising kernel is a verdict
            result.modes[label] = ModeResult(label, Verdict.ERROR, reason=f"{type(exc).__name__}: {exc}",
                                             seconds=time.perf_counter() - t0)
            continue
        kernel = {"o": o, "ht": ht}
        seqs = [judge_sequence(op, spec, case, inputs, s, kernel, refs) for s in case.sampled]
        del o, ht, kernel
        result.sequences[label] = seqs
        result.modes[label] = _summary(label, seqs, case, time.perf_counter() - t0)
    del inputs
    if device == "cuda":
        torch.cuda.empty_cache()
    result.seconds = time.perf_counter() - start
    return result
