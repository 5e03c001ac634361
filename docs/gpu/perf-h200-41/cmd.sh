#!/usr/bin/env bash
# perf-h200-41: where a batch of emulated baselines spends its device time (bench/baseline_batch.py --sections),
# gla chunk and fused_chunk, gated_delta chunk, 16 bf16 cases at T = 1024 (B=1, H=4, K=V=64).
#   bash docs/gpu/perf-h200-41/cmd.sh OUT_DIR   (carry .whl)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
timeout -k 10 120 python3 bench/baseline_batch.py --op gla --T 1024 --modes chunk,fused_chunk --cases 16 --calls 3 \
  --sections > "$OUT/gla.md" 2>&1; echo "[exit $?]" >> "$OUT/gla.md"
timeout -k 10 120 python3 bench/baseline_batch.py --op gated_delta --T 1024 --modes chunk --cases 16 --calls 3 \
  --sections > "$OUT/gated_delta.md" 2>&1; echo "[exit $?]" >> "$OUT/gated_delta.md"
cat "$OUT/gla.md" "$OUT/gated_delta.md"
date -u
