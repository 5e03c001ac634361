#!/usr/bin/env bash
# perf-h200-23: goal 3's warm cases/s measured twice in a row on one host, 192 cases per T (three batches of 64), to see
# the spread between runs (perf-h200-21 and -22, two hosts, differed by up to 30 % at T = 64).
#   bash docs/gpu/perf-h200-23/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w"
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
for r in 1 2; do
  timeout -s INT -k 10 130 python3 bench/harness_throughput.py --out "$OUT/w/ht$r" --budget 120 --ops gla,gated_delta \
    --no-search --no-scaling --rate-T 64,256,1024 --rate-cases 192 --rate-batch 64 > "$OUT/w/ht$r.log" 2>&1
  echo "[ht $r exit $?]" >> "$OUT/w/ht$r.log"
done
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$OUT/w"
for r in 1 2; do tar xzf "$OUT/all.tar.gz" -O w/ht$r.log | grep -E "rate |exit"; done
