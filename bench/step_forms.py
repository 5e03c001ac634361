"""Microseconds per step of the float64 step loop for forms of its readout and updates, eager and replayed.

    python bench/step_forms.py --rows 256,512 --T 1024 --reps 3

Forms (patched into fla_check.references.recurrence for the run, as both its ``readout`` and its
``batched_readout``, restored after):

- ``sum``: the readout S^T x as a product and a sum over K, the delta rule's update S + k (beta err)^T
  and the decay-only update S a + k v^T as products and adds (the loop before the thirteenth session);
- ``bmm``: the readout one batched product (reshapes), both updates addcmul (the library's form in
  a replayed graph);
- ``sum+addcmul``: the readout as ``sum``, the updates as ``bmm`` (the library's form otherwise).

Per op (gated_delta and gla's decay-only step on `--rows` rows of one head, K = V = `--K`, float64)
and form: the eager loop (``run_rows``) and the windows of a replayed CUDA graph
(``windows=True``), us per step, best of `--reps`.
"""
from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def form(name: str) -> Iterator[None]:
    from fla_check.references import graphs, recurrence as r

    saved = (r.readout, r.batched_readout, r.delta_step, dict(r.GIVEN_KV))

    def readout_sum(S, x):
        return (S * x[..., None]).sum(-2)

    def delta_sum(S, k, v, g, beta, read=None):
        err = v - readout_sum(S, k)
        return S + k[..., None] * (beta[..., None] * err)[..., None, :]

    r.readout = r.batched_readout = saved[1] if name == "bmm" else readout_sum
    if name == "sum":
        r.delta_step = delta_sum
        r.GIVEN_KV[r._gla_decayed] = lambda S, a, kv: S * a[..., None] + kv
    graphs._graphs.clear()  # a graph holds the form it was captured with
    try:
        yield
    finally:
        r.readout, r.batched_readout, r.delta_step = saved[:3]
        r.GIVEN_KV.clear()
        r.GIVEN_KV.update(saved[3])
        graphs._graphs.clear()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="256,512")
    p.add_argument("--T", type=int, default=1024)
    p.add_argument("--K", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--forms", default="sum,bmm,sum+addcmul")
    args = p.parse_args()

    from fla_check.references.recurrence import gated_delta_step, gla_step, run_rows

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    wait = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    print("| op | rows | form | eager us/step | replayed us/step |\n|---|---|---|---|---|")
    for R in (int(x) for x in args.rows.split(",")):
        T, K = args.T, args.K
        rand = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64).to(dev)  # noqa: E731
        q, k, v = rand(R, T, 1, K) / K, rand(R, T, 1, K) / K, rand(R, T, 1, K)
        cases = {"gated_delta": (gated_delta_step, -rand(R, T, 1).abs() / 10, rand(R, T, 1).sigmoid()),
                 "gla": (gla_step, -rand(R, T, 1, K).abs() / 10, None)}
        for op, (step, g, beta) in cases.items():
            for name in args.forms.split(","):
                with form(name):
                    row = []
                    for windows in (False, True):
                        best = float("inf")
                        for _ in range(args.reps + 1):  # the first: the graph's capture
                            wait()
                            t0 = time.perf_counter()
                            run_rows(step, q, k, v, g, beta, scale=1.0, windows=windows)
                            wait()
                            best = min(best, time.perf_counter() - t0)
                        row.append(f"{best * 1e6 / T:.1f}")
                print(f"| {op} | {R} | {name} | {row[0]} | {row[1]} |", flush=True)


if __name__ == "__main__":
    main()
