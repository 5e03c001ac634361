#!/usr/bin/env bash
# perf-h200-46: every issue-17 goal in one call on ONE H200 (bench/gpu_goals.sh phases 1-4; phase 1's two halves one
# after the other), on the sixteenth session's tree (the emulation's state passing in one launch): kernels vs fla,
# warm cases/s (one process, then two sharing the GPU), first failure cold/warm, selftest, ci profile per op, and the
# verdict tests of the new kernel on the GPU.
#   bash docs/gpu/perf-h200-46/cmd.sh OUT_DIR   (carry .whl)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
GPU_A=0 GPU_B=0 PHASES="1 2 3 4" HT_BUDGET=50 HT_BATCH=64 TD_OPS=gated_delta,gla TD_WARMUPS=background TD_BUDGET=90 \
  TD_CHILD=45 KP_CAP=90 ST_CAP=150 CI_CAP=35 TESTS_CAP=60 RATE_PROCS=2 RP_T=256,1024 RP_CASES=128 RP_BATCH=64 \
  RP_BUDGET=60 \
  TESTS="tests/verdict/test_passing_kernel.py tests/verdict/test_noise_kernel.py tests/verdict/test_baselines.py" \
  timeout -s INT -k 10 520 bash bench/gpu_goals.sh "$OUT/g" 15 > "$OUT/goals.log" 2>&1
echo "[gpu_goals exit $?]" >> "$OUT/goals.log"
[ -d "$OUT/g/work" ] && tar czf "$OUT/g/goals-cut.tar.gz" -C "$OUT/g/work" . && rm -rf "$OUT/g/work"
date -u; tail -n 80 "$OUT/g/summary.md" 2>/dev/null || tail -n 30 "$OUT/goals.log"
