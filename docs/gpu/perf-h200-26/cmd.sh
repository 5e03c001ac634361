#!/usr/bin/env bash
# perf-h200-26: the engine and verdict tests on the GPU (a mode's call now waits for its own stream; check_cases'
# baselines behind the calls where large), then goal 3's warm cases/s with check_cases' default (192 cases per T, twice).
#   bash docs/gpu/perf-h200-26/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w"
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
timeout -k 10 280 python3 -m pytest -q -n 6 tests/engine tests/verdict > "$OUT/w/tests.log" 2>&1
echo "[pytest exit $?]" >> "$OUT/w/tests.log"
date -u
for r in 1 2; do
  timeout -s INT -k 10 110 python3 bench/harness_throughput.py --out "$OUT/w/ht$r" --budget 100 --ops gla,gated_delta \
    --no-search --no-scaling --rate-T 64,256,1024 --rate-cases 192 --rate-batch 64 > "$OUT/w/ht$r.log" 2>&1
  echo "[ht $r exit $?]" >> "$OUT/w/ht$r.log"
done
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$OUT/w"
tar xzf "$OUT/all.tar.gz" -O w/tests.log | tail -15
for r in 1 2; do tar xzf "$OUT/all.tar.gz" -O w/ht$r.log | grep -E "rate |exit"; done
