#!/usr/bin/env bash
# perf-h200-29: the twelfth session's code on one H200 (dispatch-mode poison, baselines' thread at the whole budget,
# the chunked emulations' state-independent products once for all chunks): the emulation and batching tests first
# (stop if they fail), goal 3's warm cases/s (192 cases per T, twice), then the verdict/engine tests beside fla's
# clean kernels through `fla-check run` (no false alarm with the re-drawn emulation).
#   bash docs/gpu/perf-h200-29/cmd.sh OUT_DIR      (carry: .whl)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w"
W=$OUT/w
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-0.6.0-py3-none-any.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
timeout 150 python3 -m pytest -q -x -p no:cacheprovider -n 4 tests/verdict/test_noise_kernel.py tests/verdict/test_emulation.py \
  tests/engine/test_batched.py tests/engine/test_memory.py tests/engine/test_call.py > "$W/first_tests.log" 2>&1 \
  || { tail -30 "$W/first_tests.log"; echo "first tests failed: stopping"; exit 1; }
tail -1 "$W/first_tests.log"
for r in 1 2; do
  timeout -s INT -k 10 120 python3 bench/harness_throughput.py --out "$W/ht$r" --budget 110 --ops gla,gated_delta \
    --no-search --no-scaling --rate-T 64,256,1024 --rate-cases 192 --rate-batch 64 > "$W/ht$r.log" 2>&1
  echo "[ht $r exit $?]" >> "$W/ht$r.log"
done
date -u
( timeout 250 python3 -m pytest -q -p no:cacheprovider -n 8 tests/verdict tests/engine/test_batched.py \
    tests/engine/test_runner.py tests/engine/test_judge_unchanged.py tests/engine/test_memory.py tests/engine/test_call.py \
    tests/providers/test_fla.py > "$W/tests.log" 2>&1
  echo "[pytest exit $?]" >> "$W/tests.log" ) &
P="--provider fla_check.providers.fla:provider --modes fla:recurrent,fla:chunk --dtypes fp32,bf16 --seed 0 --examples 16"
for op in gla gated_delta; do
  start=$(date +%s)
  FLA_CHECK_PIN_AUTOTUNE=1 timeout 110 python3 -m fla_check.cli run --op $op $P > "$W/fla_$op.log" 2>&1
  echo "[fla-check run --op $op $P: exit $? in $(( $(date +%s) - start )) s]" >> "$W/fla_$op.log"
done
wait
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$W"
for r in 1 2; do tar xzf "$OUT/all.tar.gz" -O w/ht$r.log | grep -E "rate |exit"; done
tar xzf "$OUT/all.tar.gz" -O w/tests.log | tail -4
for op in gla gated_delta; do tar xzf "$OUT/all.tar.gz" -O w/fla_$op.log | grep -E "warm-up|verdict|exit|OK|DIVERGED" | tail -6; done
