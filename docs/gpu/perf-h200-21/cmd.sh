#!/usr/bin/env bash
# perf-h200-21: every issue-17 goal in one call (bench/gpu_goals.sh phases 1, 2, 3) on 2x H200 with the final code
# (check_many, threaded input draws, GLA's diagonal scores as a matmul, the fused noise kernel), the tests of the
# verdict and batching (fla's kernels judged too) on GPU 1 after kernel_profile, then fla's clean chunk kernels through
# `fla-check run` (the warm-up planner with --provider, the new noise) on both GPUs.
#   bash docs/gpu/perf-h200-21/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-0.6.0-py3-none-any.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L
mkdir -p "$OUT"
# the fused noise first: if it fails on the GPU, every baseline below would, so stop here
timeout 120 python3 -m pytest -q -x -p no:cacheprovider tests/verdict/test_noise_kernel.py tests/verdict/test_emulation.py \
  > "$OUT/noise_tests.log" 2>&1 || { tail -30 "$OUT/noise_tests.log"; echo "noise kernel tests failed: stopping"; exit 1; }
tail -1 "$OUT/noise_tests.log"
HT_BUDGET=60 HT_BATCH=64 TD_OPS=gated_delta,gla TD_WARMUPS=background TD_BUDGET=150 TD_CHILD=60 KP_CAP=150 \
  ST_CAP=230 CI_CAP=45 TESTS_CAP=240 \
  TESTS="tests/verdict tests/engine/test_batched.py tests/engine/test_runner.py tests/engine/test_judge_unchanged.py tests/providers/test_fla.py" \
  bash bench/gpu_goals.sh "$OUT" 15 > "$OUT.goals.log" 2>&1
echo "[gpu_goals exit $?]"
P="--provider fla_check.providers.fla:provider --modes fla:recurrent,fla:chunk --dtypes fp32,bf16 --seed 0 --examples 16"
for i in 0 1; do
  op=$([ $i = 0 ] && echo gla || echo gated_delta)
  ( export CUDA_VISIBLE_DEVICES=$i FLA_CHECK_PIN_AUTOTUNE=1; start=$(date +%s)
    timeout 100 python3 -m fla_check.cli run --op $op $P > "$OUT/fla_$op.log" 2>&1
    echo "[fla-check run --op $op $P: exit $? in $(( $(date +%s) - start )) s]" >> "$OUT/fla_$op.log" ) &
done
wait
tail -4 "$OUT.goals.log"
for op in gla gated_delta; do grep -E "warm-up|verdict|OK|DIVERG|exit" "$OUT/fla_$op.log" | tail -8; done
