#!/usr/bin/env bash
# perf-h200-42: where a warm T = 256 case's host time goes (bench/host_profile.py, cProfile, the baselines inline:
# at T = 256 the device is idle for more than half of a case), gla and gated_delta, bf16, one case's share of 64.
#   bash docs/gpu/perf-h200-42/cmd.sh OUT_DIR   (carry .whl)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
for op in gla gated_delta; do
  modes=recurrent,chunk; [ $op = gla ] && modes=recurrent,chunk,fused_chunk
  (cd bench && timeout -k 10 150 python3 host_profile.py --ops $op --dtypes bfloat16 --T 256 --H 4 --K 64 \
    --modes $modes --batch 64 --calls 2 --top 80 --overlap off) > "$OUT/host_$op.md" 2>&1
  echo "[host_profile $op exit $?]" >> "$OUT/host_$op.md"; head -8 "$OUT/host_$op.md" | tail -4
done
date -u
