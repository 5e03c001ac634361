"""Model presets: the shapes, dtypes and options with which a shipped model calls an op.

A :class:`Preset` restricts the hypothesis space of a run (``fla-check run --preset NAME``):
the op, q/k heads H and value heads HV per GPU at tensor parallelism 1/2/4/8 (both divided by
the TP degree), K and V, the dtypes, the in-kernel options the model switches on (always on,
the others off), beta in (0, 1) (a sigmoid output) and the packings a model uses (``cu_seqlens``
or none; never a gate fill). Everything else (B, T, gate regime, initial state, sequence
layout, seed) is drawn as usual, and shrinking and simplification stay inside the preset
(:meth:`Preset.admits`). Every number and its source: ``docs/presets.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from fla_check.cases import CaseConfig
from fla_check.errors import PresetError

TENSOR_PARALLEL = (8, 4, 2, 1)  # drawn by index: shrinking goes to TP 8, the fewest heads per GPU
GPU_MAX_SEQ_LEN = 4096  # a preset's longest T on a GPU (the models' context is 256k; the reference is per step)


@dataclass(frozen=True)
class Preset:
    """How one model calls one op (numbers per model, before tensor parallelism)."""

    name: str
    model: str
    op: str
    key_heads: int  # H: q/k heads of the whole model layer
    value_heads: int  # HV: value heads (= H without grouped value heads)
    K: int
    V: int
    dtypes: tuple[str, ...]
    kernel_options: tuple[str, ...]  # in-kernel options the model switches on (names of cases.KERNEL_OPTIONS)
    source: str  # where the numbers come from (docs/presets.md has the links)
    gaps: str = ""  # what the model does that the case model cannot express yet
    tensor_parallel: tuple[int, ...] = TENSOR_PARALLEL
    packings: tuple[str, ...] = ("none", "varlen")

    @property
    def value_ratio(self) -> int:
        return self.value_heads // self.key_heads

    def heads(self, small: bool = False) -> tuple[tuple[int, int], ...]:
        """(TP degree, H per GPU) to draw, TP 8 first; `small` (the CPU interpreter, which runs one
        program per value head at K=V=128) keeps the largest TP degree only: the fewest heads."""
        out = tuple((tp, self.key_heads // tp) for tp in sorted(self.tensor_parallel, reverse=True))
        return out[:1] if small else out

    def admits(self, c: CaseConfig) -> bool:
        """Whether `c` lies inside this preset's space (any TP degree, any T)."""
        return (c.op == self.op and c.dtype in self.dtypes and c.K == self.K and c.V == self.V
                and c.H in {h for _, h in self.heads()} and c.value_ratio == self.value_ratio
                and c.options == self.kernel_options and c.beta_max == 1.0 and c.packing in self.packings)

    def describe(self) -> str:
        tps = "/".join(str(tp) for tp in sorted(self.tensor_parallel))
        opts = ", ".join(self.kernel_options) or "no in-kernel options"
        return (f"{self.model}: {self.op}, H={self.key_heads} HV={self.value_heads} K={self.K} V={self.V}, "
                f"{'/'.join(self.dtypes)}, {opts}; heads divided by TP {tps}")

    def to_json(self) -> dict:
        return {"name": self.name, "model": self.model, "op": self.op, "H": self.key_heads, "HV": self.value_heads,
                "value_ratio": self.value_ratio, "K": self.K, "V": self.V, "dtypes": list(self.dtypes),
                "kernel_options": list(self.kernel_options), "tensor_parallel": sorted(self.tensor_parallel),
                "heads_per_gpu": {str(tp): [h, h * self.value_ratio] for tp, h in self.heads()},
                "packings": list(self.packings), "source": self.source, "gaps": self.gaps}


_QWEN_GAP = ("g arrives in fp32 (-exp(A_log.float()) * softplus(a.float() + dt_bias)) while q/k/v/beta are bf16; "
             "cases cast every input to one dtype, so g is drawn in bf16")
_QWEN_SRC = "transformers modeling_qwen3_next.py (chunk_gated_delta_rule(..., use_qk_l2norm_in_kernel=True))"
PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("qwen3-next", "Qwen3-Next-80B-A3B", "gated_delta", 16, 32, 128, 128, ("bfloat16",), ("qk_l2norm",),
           f"config.json of Qwen/Qwen3-Next-80B-A3B-Instruct; {_QWEN_SRC}", _QWEN_GAP),
    Preset("qwen3.5-27b", "Qwen3.5-27B", "gated_delta", 16, 48, 128, 128, ("bfloat16",), ("qk_l2norm",),
           f"config.json of Qwen/Qwen3.5-27B; {_QWEN_SRC} (Qwen3.5 inherits Qwen3-Next's GatedDeltaNet)", _QWEN_GAP),
    Preset("qwen3.5-35b-a3b", "Qwen3.5-35B-A3B", "gated_delta", 16, 32, 128, 128, ("bfloat16",), ("qk_l2norm",),
           f"config.json of Qwen/Qwen3.5-35B-A3B; {_QWEN_SRC}", _QWEN_GAP),
    Preset("qwen3.5-397b-a17b", "Qwen3.5-397B-A17B", "gated_delta", 16, 64, 128, 128, ("bfloat16",), ("qk_l2norm",),
           f"config.json of Qwen/Qwen3.5-397B-A17B; {_QWEN_SRC}", _QWEN_GAP),
    Preset("kimi-linear", "Kimi-Linear-48B-A3B", "kda", 32, 32, 128, 128, ("bfloat16",), (),
           "config.json of moonshotai/Kimi-Linear-48B-A3B-Instruct (linear_attn_config: num_heads 32, head_dim 128); "
           "fla's KimiDeltaAttention layer",
           "the model calls chunk_kda with use_qk_l2norm_in_kernel and use_gate_in_kernel (A_log/dt_bias fp32, the "
           "softplus gate: no lower_bound/safe_gate) and beta = sigmoid(b); the preset leaves kda's in-kernel options "
           "off (the built-in kda kernels take none), so q/k arrive normalized, g as a log gate and beta in (0, 1), "
           "all bf16"),
)}


def get_preset(preset: Union[str, Preset]) -> Preset:
    """The preset named `preset` (a Preset passes through); PresetError for an unknown name."""
    if isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise PresetError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}") from None


def preset_op(preset: Union[str, Preset], op: Optional[str]) -> str:
    """The op of a run with `preset`: the preset's, which `op` (if given) must name."""
    p = get_preset(preset)
    if op is not None and op != p.op:
        raise PresetError(f"preset {p.name} runs op {p.op}, not {op} (leave --op out or give --op {p.op})")
    return p.op
