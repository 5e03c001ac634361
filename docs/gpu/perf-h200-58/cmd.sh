#!/usr/bin/env bash
# perf-h200-58: every issue-17 goal in one call on ONE H200 (call `goals`: perf-h200-46's settings, but KP_CAP 150:
# perf-h200-57's host took 45 s for fla's first delta call and the 90 s cap cut fla's gated_delta row), then goal 3's
# T = 1024 rows with 2, 3 and 4 processes sharing the GPU (call `procs`, right after, on the same machine; not yet run:
# `--no-rate` since the twenty-second session, whose probe with a 45 s budget spent it on the one-process loop). The rate
# loop now runs one batch before its clock starts (bench/harness_throughput.py: perf-h200-57's timed windows of about
# 1 s still grew the CUDA allocator's pool, 88 cudaMalloc at gla T = 1024) and times 256 cases a row (128 before).
#   bash docs/gpu/perf-h200-58/cmd.sh goals|procs OUT_DIR   (carry .whl)
PART=${1:?usage: cmd.sh goals|procs OUT_DIR}
OUT=${2:?usage: cmd.sh goals|procs OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
export PYTHONPATH=/tmp/site
source bench/_device_setup.sh
if [ "$PART" = goals ]; then
  GPU_A=0 GPU_B=0 PHASES="1 2 3 4" HT_BUDGET=50 HT_BATCH=64 TD_OPS=gated_delta,gla TD_WARMUPS=background TD_BUDGET=90 \
    TD_CHILD=45 KP_CAP=150 ST_CAP=150 CI_CAP=35 TESTS_CAP=60 RATE_PROCS=2 RP_T=256,1024 RP_CASES=256 RP_BATCH=64 \
    RP_BUDGET=60 \
    TESTS="tests/verdict/test_passing_kernel.py tests/verdict/test_noise_kernel.py tests/verdict/test_baselines.py" \
    timeout -s INT -k 10 560 bash bench/gpu_goals.sh "$W/g" 15 > "$W/goals.log" 2>&1
  echo "[gpu_goals exit $?]" >> "$W/goals.log"
  [ -d "$W/g/work" ] && tar czf "$W/g/goals-cut.tar.gz" -C "$W/g/work" . && rm -rf "$W/g/work"
  tail -n 30 "$W/g/summary.md" 2>/dev/null || tail -n 30 "$W/goals.log"
else
  for n in 2 3 4; do
    timeout -k 10 100 python3 bench/harness_throughput.py --out "$W/rp$n" --budget 80 --ops gla,gated_delta \
      --no-search --no-scaling --no-rate --rate-T 1024 --rate-cases 256 --rate-batch 64 --rate-procs $n > "$W/rp$n.log" 2>&1
    echo "[harness_throughput --rate-procs $n exit $?]" >> "$W/rp$n.log"
    grep "  rate \|exit" "$W/rp$n.log" | cut -c1-100
  done
fi
date -u
tar czf "$OUT/all_$PART.tar.gz" -C "$OUT" w && rm -rf "$W"
