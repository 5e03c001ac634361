#!/usr/bin/env bash
# perf-h200-32: the twelfth session's final code on one H200: the gla recurrent kernel tests and the large-index
# test on the GPU, the new forward's speed (bench/recurrent_prefetch.py: built-in = loads ahead now), goal 3's warm
# cases/s (192 cases per T, twice), then `fla-check selftest --jobs 15` (the rewritten kernel's mutants on the GPU).
#   bash docs/gpu/perf-h200-32/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
timeout -k 10 120 python3 -m pytest -q -p no:cacheprovider -n 8 tests/kernels/test_gla_recurrent.py \
  tests/kernels/test_specialization.py tests/engine/test_large_index.py > "$W/tests.log" 2>&1
echo "[pytest exit $?]" >> "$W/tests.log"; tail -2 "$W/tests.log"
(cd bench && timeout -k 10 60 python3 recurrent_prefetch.py --T 256,1024 --BV 16 --reps 50) > "$W/prefetch.md" 2>&1
tail -3 "$W/prefetch.md"
for r in 1 2; do
  timeout -s INT -k 10 110 python3 bench/harness_throughput.py --out "$W/ht$r" --budget 100 --ops gla,gated_delta \
    --no-search --no-scaling --rate-T 64,256,1024 --rate-cases 192 --rate-batch 64 > "$W/ht$r.log" 2>&1
  echo "[ht $r exit $?]" >> "$W/ht$r.log"
  grep -E "rate |exit" "$W/ht$r.log"
done
date -u
start=$(date +%s)
timeout -s INT -k 10 170 python3 -m fla_check.cli selftest --jobs 15 --json > "$W/selftest.json" 2> "$W/selftest.log"
echo "[selftest --jobs 15 exit $? in $(( $(date +%s) - start )) s]" >> "$W/selftest.log"
tail -4 "$W/selftest.log"
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$W"
