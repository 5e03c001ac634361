#!/usr/bin/env bash
# perf-h200-20: every issue-17 goal in one call (bench/gpu_goals.sh phases 1, 2, 3) on 2x H200, with check_many,
# the threaded input draws and the tests of the changed code on GPU 1 after kernel_profile.
#   bash docs/gpu/perf-h200-20/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-0.6.0-py3-none-any.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L
HT_BUDGET=60 HT_BATCH=64 TD_OPS=gated_delta,gla TD_WARMUPS=background TD_BUDGET=150 TD_CHILD=60 KP_CAP=150 \
  ST_CAP=230 CI_CAP=45 TESTS_CAP=150 \
  TESTS="tests/engine/test_batched.py tests/engine/test_runner.py tests/verdict/test_reductions.py tests/verdict/test_baselines.py tests/engine/test_warmup.py tests/engine/test_judge_unchanged.py" \
  bash bench/gpu_goals.sh "$OUT" 15
