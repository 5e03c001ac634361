"""fla_check.verdict.noise_kernel: rounding noise in one Triton launch (the GPU's path; here under
the interpreter). Each form computes x + m (lo + w u) with u uniform on [0, 1); a case draws the
same values alone and in a batch, a group of samples the rows of the full draw; an emulation
through it is the same alone and in a batch, and its noise is the declared size."""
import pytest
import torch
from device import DEVICE

from fla_check.verdict.noise_kernel import perturbed

SEEDS = torch.tensor([3, 7, 2**62 + 5], dtype=torch.int64, device=DEVICE)


def _u(x, y, m, lo, w):
    return ((y - x) / m - lo) / w


@pytest.mark.parametrize("mode", ["relative", "absolute", "scaled"])
def test_each_form_adds_its_noise_uniform_over_its_interval(mode):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4000, generator=gen, dtype=torch.float64).to(DEVICE)
    m = {"relative": x, "absolute": torch.ones_like(x),
         "scaled": torch.rand(3, 4000, generator=gen, dtype=torch.float64).to(DEVICE)}[mode]
    y = perturbed(x, m if mode == "scaled" else None, -1e-3, 2e-3, mode, SEEDS, 4)
    u = _u(x, y, m, -1e-3, 2e-3)
    assert u.min() > -1e-6 and u.max() < 1 + 1e-6 and u.min() < 0.01 and u.max() > 0.99
    assert abs(u.mean().item() - 0.5) < 0.02 and abs(u.var().item() - 1 / 12) < 0.01
    again = perturbed(x, m if mode == "scaled" else None, -1e-3, 2e-3, mode, SEEDS, 4)
    assert torch.equal(y, again)  # seeded: a replay is exact
    other = perturbed(x, m if mode == "scaled" else None, -1e-3, 2e-3, mode, SEEDS, 5)
    assert not torch.isclose(_u(x, other, m, -1e-3, 2e-3), u).any(dim=1).all()  # another draw, other values


def test_a_case_draws_the_same_alone_and_in_a_batch_and_a_group_the_rows_of_the_full_draw():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3 * 16, 50, dtype=torch.float64, generator=gen).to(DEVICE)  # three cases x 16 samples
    batch = perturbed(x, None, -1e-2, 2e-2, "relative", SEEDS, 1)
    for c in range(3):
        alone = perturbed(x[16 * c:16 * (c + 1)], None, -1e-2, 2e-2, "relative", SEEDS[c:c + 1], 1)
        assert torch.equal(alone, batch[16 * c:16 * (c + 1)])
        held = perturbed(x[16 * c + 4:16 * c + 9], None, -1e-2, 2e-2, "relative", SEEDS[c:c + 1], 1, start=4 * 50)
        assert torch.equal(held, alone[4:9])
    assert not torch.equal(batch[:16], batch[16:32])  # the cases' own seeds
    with pytest.raises(ValueError, match="does not split"):
        perturbed(x[:47], None, 0.0, 1.0, "relative", SEEDS, 1)
    with pytest.raises(ValueError, match="32-bit offsets"):
        perturbed(x[:16], None, 0.0, 1.0, "relative", SEEDS[:1], 1, start=2**31 - 100)


def test_an_emulation_with_the_fused_noise_is_the_same_alone_and_in_a_batch(monkeypatch, per_case):
    """The GPU's noise path on the CPU: the cases of a batch each get the samples they get alone,
    a group of samples the ungrouped run's rows, and the noise is still the declared size."""
    from fla_check.cases import CaseConfig, build_case
    from fla_check.ops import get_op
    from fla_check.references import reference
    from fla_check.verdict import emulation
    from fla_check.verdict.arithmetic import Arithmetic
    from fla_check.verdict.baselines import baseline_samples, emulated_batch, noise_scales, sample_groups

    from fla_check.verdict import noise_kernel

    monkeypatch.setattr(emulation, "fused_noise", lambda device: True)
    launches, draws = [], []
    real, real_rand = noise_kernel.perturbed, torch.rand
    monkeypatch.setattr(noise_kernel, "perturbed", lambda *a, **k: launches.append(1) or real(*a, **k))
    monkeypatch.setattr(torch, "rand", lambda *a, **k: draws.append(1) or real_rand(*a, **k))
    op, arith = get_op("gla"), Arithmetic("chunk", 16)
    cases = [build_case(CaseConfig(op="gla", dtype="bfloat16", B=1, T=40, H=2, K=16, V=16, seed=s), DEVICE)
             for s in (1, 2)]
    alone = [baseline_samples(op, arith, x, torch.bfloat16, seed) for x, seed in zip(cases, (5, 6))]
    assert len(launches) > 10 and not draws  # every rounding point through the kernel, no torch draw
    got = per_case(emulated_batch(op, arith, cases, torch.bfloat16, [5, 6]), 2)
    for a, b in zip(alone, got):
        assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(got[0]["o"], got[1]["o"])
    x = cases[0]
    groups = list(sample_groups(op, arith, x, torch.bfloat16, 5, budget=1))  # one sample per group
    assert all(torch.equal(torch.cat([g[n] for g in groups]), alone[0][n]) for n in alone[0])
    monkeypatch.setattr(emulation, "OFFSETS", 1000)  # draws past the offsets take the torch ops, never fail
    launches.clear()
    too_long = baseline_samples(op, arith, x, torch.bfloat16, 5)
    assert draws and all(torch.isfinite(t).all() for t in too_long.values())
    o, ht = reference(op.step, *x.tensors(), initial_state=x.initial_state, output_final_state=True)
    exact = {"o": o, "ht": ht}
    fused = noise_scales(alone[0], exact)
    monkeypatch.setattr(emulation, "fused_noise", lambda device: False)
    plain = noise_scales(baseline_samples(op, arith, x, torch.bfloat16, 5), exact)
    for name in exact:  # another stream of the same noise: the same size within the sampling spread
        assert 0.5 < fused[name].rel_rms / plain[name].rel_rms < 2, name


def _views(gen):
    """(name, a non-contiguous float64 view whose leading dim holds 3 cases x 4 samples)."""
    base = torch.randn(12, 3, 5, 2, 7, dtype=torch.float64, generator=gen).to(DEVICE)
    return [("chunked", base.transpose(2, 3)),  # emulation._chunks: [S,NT,C,H,D] read as [S,NT,H,C,D]
            ("last two swapped", base.transpose(-1, -2)),
            ("sliced", base[..., 1:6]),
            ("every other row", base[:, ::2]),
            ("one chunk", base[:, :1].transpose(2, 3)),
            ("five dims apart", base.permute(0, 4, 2, 1, 3))]  # more dims than a view is read through: a copy


@pytest.mark.parametrize("mode", ["relative", "absolute", "scaled"])
def test_a_strided_view_draws_what_its_contiguous_copy_draws(monkeypatch, mode):
    from fla_check.verdict import noise_kernel

    monkeypatch.setattr(noise_kernel, "min_row", lambda on_gpu: 1)  # these small views' rows read in place too
    gen = torch.Generator().manual_seed(2)
    read = []
    for name, x in _views(gen):
        m = torch.rand(x.shape, dtype=torch.float64, generator=gen).to(DEVICE) if mode == "scaled" else None
        for seeds, start in ((SEEDS, 0), (SEEDS[1:2], 40)):
            view = x[:4] if len(seeds) == 1 else x
            got = perturbed(view, None if m is None else m[:len(view)], -1e-2, 2e-2, mode, seeds, 3, start)
            want = perturbed(view.contiguous(), None if m is None else m[:len(view)], -1e-2, 2e-2, mode, seeds, 3,
                             start)
            assert got.is_contiguous() and torch.equal(got, want), name
        read.append(noise_kernel.view_dims(x, 3) is not None)
    assert read == [True, True, True, True, True, False]  # read in place but for the one past VIEW_DIMS


def test_view_dims_merge_what_memory_allows_and_keep_whole_rows_per_case(monkeypatch):
    from fla_check.verdict import noise_kernel
    from fla_check.verdict.noise_kernel import view_dims

    chunked = torch.zeros(2, 16, 64, 4, 64, dtype=torch.float64).transpose(2, 3)  # a chunk's rows of 64 x 64
    assert view_dims(chunked, 2) is None  # on the CPU: rows below an interpreter block are copied
    monkeypatch.setattr(noise_kernel, "min_row", lambda on_gpu: noise_kernel.MIN_ROW)  # a GPU's rows
    assert view_dims(chunked, 2) == ([32, 4, 64, 64], [16384, 64, 256, 1])
    assert view_dims(chunked[:, :, :, :16, :16], 2) == ([32, 4, 16, 16], [16384, 64, 256, 1])  # the least chunk
    assert view_dims(chunked[..., :2], 2) is None  # rows of 128 elements: copied first (MIN_ROW)
    monkeypatch.setattr(noise_kernel, "min_row", lambda on_gpu: 1)
    x = torch.zeros(12, 3, 5, 2, 7, dtype=torch.float64)
    assert view_dims(x, 3) is None  # contiguous: the plain launch
    assert view_dims(x.transpose(2, 3), 3) == ([36, 2, 5, 7], [70, 7, 14, 1])  # S and NT merged
    assert view_dims(x.transpose(-1, -2), 3) == ([180, 1, 7, 2], [14, 0, 1, 7])  # a lone last dim padded in front
    assert view_dims(x.transpose(-1, -2), 7) is None  # 180 rows do not split into 7 cases
    assert view_dims(x[:1].transpose(-1, -2), 1) == ([15, 1, 7, 2], [14, 0, 1, 7])  # a size-1 dim dropped
