#!/usr/bin/env bash
# perf-h200-21 (one H200: no x2 was lent): the final code (check_many, threaded input draws, GLA's diagonal scores as
# a matmul, the fused noise kernel) on the GPU: the noise kernel's tests first (stop if they fail), then the warm
# cases/s alone (goal 3, as bench/gpu_goals.sh phase 1 runs it), then the tests of the verdict and batching (fla's
# kernels judged too) beside fla's clean chunk kernels through `fla-check run` (the warm-up planner with --provider,
# the new noise), then the cold ci profiles of gla and gated_delta alone.
#   bash docs/gpu/perf-h200-21/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w"
W=$OUT/w
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-0.6.0-py3-none-any.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
timeout 120 python3 -m pytest -q -x -p no:cacheprovider tests/verdict/test_noise_kernel.py tests/verdict/test_emulation.py \
  > "$W/noise_tests.log" 2>&1 || { tail -30 "$W/noise_tests.log"; echo "noise kernel tests failed: stopping"; exit 1; }
tail -1 "$W/noise_tests.log"
timeout -s INT -k 10 75 python3 bench/harness_throughput.py --out "$W/ht" --budget 60 --ops gla,gated_delta --no-search \
  --no-scaling --rate-T 64,256,1024 --rate-cases 64 --rate-batch 64 > "$W/ht.log" 2>&1; echo "[ht exit $?]" >> "$W/ht.log"
date -u
( timeout 220 python3 -m pytest -q -p no:cacheprovider -n 8 tests/verdict tests/engine/test_batched.py \
    tests/engine/test_runner.py tests/engine/test_judge_unchanged.py tests/providers/test_fla.py > "$W/tests.log" 2>&1
  echo "[pytest exit $?]" >> "$W/tests.log" ) &
P="--provider fla_check.providers.fla:provider --modes fla:recurrent,fla:chunk --dtypes fp32,bf16 --seed 0 --examples 16"
for op in gla gated_delta; do
  start=$(date +%s)
  FLA_CHECK_PIN_AUTOTUNE=1 timeout 100 python3 -m fla_check.cli run --op $op $P > "$W/fla_$op.log" 2>&1
  echo "[fla-check run --op $op $P: exit $? in $(( $(date +%s) - start )) s]" >> "$W/fla_$op.log"
done
wait
date -u
bash bench/gpu_ci_profile.sh "$W/ci" 45 "gla gated_delta" > "$W/ci_profile.log" 2>&1
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$W"
tar xzf "$OUT/all.tar.gz" -O w/ht.log | grep -E "rate |exit"
tar xzf "$OUT/all.tar.gz" -O w/tests.log | tail -4
for op in gla gated_delta; do tar xzf "$OUT/all.tar.gz" -O w/fla_$op.log | grep -E "warm-up|verdict|exit" | tail -4; done
tar xzf "$OUT/all.tar.gz" -O w/ci/ci_profile.md 2>/dev/null || tar xzf "$OUT/all.tar.gz" -O w/ci_profile.log | tail -12
