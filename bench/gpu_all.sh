#!/usr/bin/env bash
# All GPU benchmarks of docs/PERFORMANCE.md in one bounded run (<= 7 minutes on an H100).
#
#   bash bench/gpu_all.sh "$OUT"
#
# Installs nothing (fla-check, torch, triton, fla-core must be importable). Writes at most 8
# files, all directly under OUT: {kernel_speed,harness_throughput,compile_cost,time_to_detect}.{json,md}.
# Each step has its own wall-clock budget, counted from its process' start (its sections stop
# starting when it runs out), and a hard `timeout -s INT` cap of budget + 10 s (SIGINT: the step
# writes what it measured, then exits; SIGKILL 5 s later). Caps sum to 400 s, 420 s with the kill
# grace. A failing step does not stop the others. Every step starts with an empty Triton cache,
# as a user's first run on a new machine would. Budgets can be overridden:
#   KS_BUDGET=185 HT_BUDGET=70 CC_BUDGET=40 TD_BUDGET=65 bash bench/gpu_all.sh "$OUT"
set -u
OUT=${1:?usage: bash bench/gpu_all.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2
export PYTHONUNBUFFERED=1
KS_BUDGET=${KS_BUDGET:-185}
HT_BUDGET=${HT_BUDGET:-70}
CC_BUDGET=${CC_BUDGET:-40}
TD_BUDGET=${TD_BUDGET:-65}
CACHE_ROOT=$(mktemp -d /tmp/fla_check_bench_XXXXXX)
trap 'rm -rf "$CACHE_ROOT"' EXIT

source bench/_step.sh

python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
# 1. built-in vs fla: big shape forward first; fla's first calls autotune (about 89 s for chunk_gla)
step kernel_speed "$KS_BUDGET" --min-unit-s 20
# 2. harness throughput: cold search as `fla-check run` + warm re-run, reference scaling (+ CUDA graph)
step harness_throughput "$HT_BUDGET" --ops gla,gated_delta --examples 30
# 3. compile cost: fresh process and empty Triton cache per mode
step compile_cost "$CC_BUDGET" --modes gla:chunk,gated_delta:chunk,gla:recurrent,delta:chunk --warm-cache 1 --child-timeout 45
# 4. time to detect the -0.1*finfo.max masking failure, then per-kind mutants while time is left
step time_to_detect "$TD_BUDGET" --mask-ops gla,gated_delta --mask-share 0.85 --mutants per-kind --min-entry-s 10
ls -la "$OUT"
for f in "$OUT"/*.md; do echo; cat "$f"; done
