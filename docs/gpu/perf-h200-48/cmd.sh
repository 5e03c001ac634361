#!/usr/bin/env bash
# perf-h200-48 (seventeenth session): in one device call, (1) perf-h200-47's device-time profile of the
# emulated baselines, (2) whether float64 tl.exp / tl.dot compile and how accurate they are
# (bench/f64_triton_probe.py), (3) the verdict's fused-noise tests on 01f0cc7's shared _fused_start.
#   bash docs/gpu/perf-h200-48/cmd.sh OUT_DIR   (carry .whl)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
bash docs/gpu/perf-h200-47/cmd.sh "$OUT/p47" > "$OUT/p47.log" 2>&1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
timeout -k 10 90 python3 bench/f64_triton_probe.py > "$OUT/probe.txt" 2>&1; echo "[exit $?]" >> "$OUT/probe.txt"
cat "$OUT/probe.txt"
bash bench/gpu_pytest.sh "$OUT/pytest" 150 15 tests/verdict/test_passing_kernel.py tests/verdict/test_noise_kernel.py \
  tests/verdict/test_emulation.py tests/verdict/test_baselines.py
gzip -f "$OUT/pytest/pytest.log"
date -u
