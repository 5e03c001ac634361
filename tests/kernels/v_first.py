"""The state-layout check shared by the recurrent kernel tests: a kernel run with
``state_v_first=True`` ([N, H, V, K] initial / final states, dht in and dh0 out in that layout)
must equal its run on [N, H, K, V] states with the states transposed: the same arithmetic, only
the state offsets differ. Exactly under the CPU interpreter; on a GPU the compiler may order the
fp32 operations of the two layouts differently (H200: up to 1.9e-6 apart, docs/gpu/pytest-h200-6),
so there a few fp32 ulps relative to the output's scale are allowed -- a layout mix-up is O(1) off."""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from device import DEVICE

T, H, K, V = 19, 2, 16, 24  # K != V: a layout mix-up cannot hide behind a square state


def make_inputs(*, gate: Optional[str], beta: bool = False, varlen: bool = False, V: int = V, T: int = T,
                seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor, Optional[torch.Tensor]]:
    """(fp32 q, k, v [, g] [, beta] by keyword, h0 [N, H, K, V], cu_seqlens or None): two batch rows,
    or a varlen pack of three. `gate`: "key" ([B,T,H,K]), "head" ([B,T,H]) or None; with `beta` (the
    delta rules) k is l2-normalized and beta in (0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    B, cu = (1, [0, 1, 7, T]) if varlen else (2, None)
    q, k = (torch.randn(B, T, H, K, generator=gen) for _ in range(2))
    x = dict(q=q, k=F.normalize(k, dim=-1) if beta else k, v=torch.randn(B, T, H, V, generator=gen))
    if gate is not None:
        x["g"] = F.logsigmoid(torch.randn((B, T, H, K) if gate == "key" else (B, T, H), generator=gen)) / 8
    if beta:
        x["beta"] = torch.rand(B, T, H, generator=gen)
    h0 = torch.randn(B if cu is None else len(cu) - 1, H, K, V, generator=gen)
    return ({n: t.to(DEVICE) for n, t in x.items()}, h0.to(DEVICE),
            None if cu is None else torch.tensor(cu, device=DEVICE))


def run_layout(fn: Callable, inputs: dict[str, torch.Tensor], h0: torch.Tensor, cu: Optional[torch.Tensor],
               v_first: bool, backward: bool, seed: int = 11) -> tuple[tuple[int, ...], list[torch.Tensor]]:
    """(raw final-state shape, [o, ht, and with `backward` the input grads and dh0]) with the
    states in [K, V] form for comparison. h0 / dht are handed over transposed (contiguous) when
    `v_first`; ht and dh0 are read back transposed."""
    gen = torch.Generator().manual_seed(seed)
    leaves = {name: x.detach().clone().requires_grad_(backward) for name, x in inputs.items()}
    state = (h0.transpose(-1, -2).contiguous() if v_first else h0.clone()).requires_grad_(backward)
    q, k, v = (leaves.pop(name) for name in ("q", "k", "v"))
    o, ht = fn(q, k, v, **leaves, initial_state=state, output_final_state=True, cu_seqlens=cu,
               state_v_first=v_first)
    assert ht.is_contiguous()
    ht_kv = ht.transpose(-1, -2) if v_first else ht
    out = [o, ht_kv]
    if backward:
        do = torch.randn(o.shape, generator=gen, dtype=torch.float64).to(DEVICE)
        dht = torch.randn(h0.shape, generator=gen, dtype=torch.float64).to(DEVICE)
        ((o.double() * do).sum() + (ht_kv.double() * dht).sum()).backward()
        out += [x.grad for x in (q, k, v, *leaves.values())]
        out.append(state.grad.transpose(-1, -2) if v_first else state.grad)
    return tuple(ht.shape), out


def assert_v_first_matches_k_first(fn: Callable, inputs: dict[str, torch.Tensor], h0: torch.Tensor,
                                   cu: Optional[torch.Tensor], backward: bool = True) -> None:
    """The v-first run returns [.., V, K] states equal to the k-first run's transposed: bit for bit on
    the CPU, within 8 fp32 ulps of the tensor's largest value on a GPU."""
    kv_shape, want = run_layout(fn, inputs, h0, cu, v_first=False, backward=backward)
    vk_shape, got = run_layout(fn, inputs, h0, cu, v_first=True, backward=backward)
    assert vk_shape == kv_shape[:-2] + kv_shape[:-3:-1], (vk_shape, kv_shape)
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        diff = (a.double() - b.double()).abs().max().item()
        allowed = 0.0 if DEVICE == "cpu" else 8 * torch.finfo(torch.float32).eps * b.double().abs().max().item()
        assert diff <= allowed, (i, diff, allowed)
