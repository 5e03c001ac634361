#!/usr/bin/env bash
# Issue 17 figures in one device call on a two-GPU host (nvidia-h200-x2), <= ~9.5 minutes:
#   GPU 0: built-in vs fla chunk forward (delta, gated_delta; bf16 B=8 T=4096 H=16 K=V=128), then
#          `fla-check selftest --jobs JOBS` (the whole catalog, wall time, caught count);
#   GPU 1: the ci profile of each op from a cold Triton cache (bench/gpu_ci_profile.sh, one op at a time).
#   bash bench/gpu_perf.sh OUT_DIR [JOBS]
# Writes OUT_DIR/perf.tar.gz (every log, JSON and table) and OUT_DIR/summary.txt.
set -u
OUT=${1:?usage: bash bench/gpu_perf.sh OUT_DIR [JOBS]}
JOBS=${2:-12}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2
W=$(mktemp -d)
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))" > "$W/versions.txt" 2>&1
git rev-parse HEAD >> "$W/versions.txt" 2>/dev/null
(
  export CUDA_VISIBLE_DEVICES=0
  timeout -s INT -k 10 ${KS_CAP:-260} python3 bench/kernel_speed.py --out "$W/ks" --shapes 8x4096x16x128x128 \
    --ops delta,gated_delta --modes chunk --budget $(( ${KS_CAP:-260} - 20 )) --min-unit-s 10 > "$W/kernel_speed.log" 2>&1
  echo "[kernel_speed exit $?]" >> "$W/kernel_speed.log"
  start=$(date +%s)
  CUDA_VISIBLE_DEVICES=0 timeout -s INT -k 10 ${ST_CAP:-290} python3 -m fla_check.cli selftest --jobs "$JOBS" --json \
    > "$W/selftest.json" 2> "$W/selftest.log"
  echo "[selftest --jobs $JOBS exit $? in $(( $(date +%s) - start )) s]" >> "$W/selftest.log"
) &
CUDA_VISIBLE_DEVICES=1 bash bench/gpu_ci_profile.sh "$W/ci" ${CI_CAP:-100} > "$W/ci_profile.log" 2>&1 &
wait
{
  cat "$W/versions.txt"; echo
  echo "## kernel_speed"; cat "$W"/ks/*.md 2>/dev/null || tail -20 "$W/kernel_speed.log"; echo
  echo "## selftest"; grep -c "^caught" "$W/selftest.log" | sed 's/^/caught lines: /'; grep -vc "^caught" "$W/selftest.log" | sed 's/^/other lines: /'
  grep -v "^caught" "$W/selftest.log" | tail -15; echo
  echo "## ci profile (cold cache)"; cat "$W/ci/ci_profile.md" 2>/dev/null || tail -20 "$W/ci_profile.log"
} > "$OUT/summary.txt" 2>&1
tar czf "$OUT/perf.tar.gz" -C "$W" .
cat "$OUT/summary.txt"
