#!/usr/bin/env bash
# perf-h200-40: an experiment, goal 3's warm cases/s with and without the synchronization after each mode call
# (HACK_NO_CALL_SYNC=1: an uncommitted switch in engine/call.py, never in the repository), interleaved twice.
#   bash docs/gpu/perf-h200-40/cmd.sh OUT_DIR   (carry .whl)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
for r in sync1 nosync1 sync2 nosync2; do
  hack=; case $r in nosync*) hack=1;; esac
  HACK_NO_CALL_SYNC=$hack timeout -s INT -k 10 80 python3 bench/harness_throughput.py --out "$OUT/ht_$r" --budget 70 \
    --ops gla,gated_delta --no-search --no-scaling --rate-T 256,1024 --rate-cases 192 --rate-batch 64 \
    > "$OUT/ht_$r.log" 2>&1
  echo "[ht $r exit $?]" >> "$OUT/ht_$r.log"; echo "== $r"; grep -E "rate |exit" "$OUT/ht_$r.log"
done
date -u
