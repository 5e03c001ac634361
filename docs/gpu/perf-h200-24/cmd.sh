#!/usr/bin/env bash
# perf-h200-24: check_cases with its baselines computed in a background thread on their own CUDA stream while the
# modes run (engine.batched.baselines_behind), against the same cases computed in turn (--rate-overlap both: each T
# off, then on), 192 cases per T; twice. First the tests of the changed modules on the GPU.
#   bash docs/gpu/perf-h200-24/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w"
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
timeout -k 10 200 python3 -m pytest -q -p no:xdist tests/engine/test_batched.py tests/engine/test_call.py \
  tests/engine/test_runner.py tests/verdict/test_noise_kernel.py > "$OUT/w/tests.log" 2>&1
echo "[pytest exit $?]" >> "$OUT/w/tests.log"
for r in 1 2; do
  timeout -s INT -k 10 170 python3 bench/harness_throughput.py --out "$OUT/w/ht$r" --budget 160 --ops gla,gated_delta \
    --no-search --no-scaling --rate-T 64,256,1024 --rate-cases 192 --rate-batch 64 --rate-overlap both \
    > "$OUT/w/ht$r.log" 2>&1
  echo "[ht $r exit $?]" >> "$OUT/w/ht$r.log"
done
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$OUT/w"
tar xzf "$OUT/all.tar.gz" -O w/tests.log | tail -3
for r in 1 2; do tar xzf "$OUT/all.tar.gz" -O w/ht$r.log | grep -E "rate |exit"; done
