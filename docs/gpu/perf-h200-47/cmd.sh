#!/usr/bin/env bash
# perf-h200-47 (prepared in the sixteenth session, not yet run): where one batch of 16 bf16 cases' emulated
# baselines spends its DEVICE time, per emulation function, without synchronizing (bench/baseline_batch.py
# --device-sections: profiler ranges), gla chunk and fused_chunk and gated_delta chunk at T = 1024; then the
# synchronized sections for comparison. Picks the next fused kernel (issue 17, goal 3).
#   bash docs/gpu/perf-h200-47/cmd.sh OUT_DIR   (carry .whl)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
timeout -k 10 120 python3 bench/baseline_batch.py --op gla --T 1024 --modes chunk,fused_chunk --cases 16 --calls 3 \
  --device-sections --sections > "$OUT/gla.md" 2>&1; echo "[exit $?]" >> "$OUT/gla.md"
timeout -k 10 120 python3 bench/baseline_batch.py --op gated_delta --T 1024 --modes chunk --cases 16 --calls 3 \
  --device-sections --sections > "$OUT/gated_delta.md" 2>&1; echo "[exit $?]" >> "$OUT/gated_delta.md"
grep -v "^USDT" "$OUT/gla.md" "$OUT/gated_delta.md"
date -u
