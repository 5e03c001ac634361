#!/usr/bin/env bash
# verify-h200-1: fla's clean kernels through `fla-check run` with the baseline noise drawn ahead on the GPU
# (emulation._Stream), beside the tests of the code changed after 2274e35 (6506a32, ca218e4, 07a4399).
#   bash docs/gpu/verify-h200-1/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-0.6.0-py3-none-any.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L
FC_TIMEOUT=62 bash bench/gpu_check.sh "$OUT" fla > /dev/null 2>&1 &
check=$!
start=$(date +%s)
python3 -m pytest -q -p no:cacheprovider -n 6 tests/verdict tests/engine/test_batched.py tests/engine/test_runner.py \
  tests/engine/test_judge_unchanged.py > "$OUT/pytest.log" 2>&1
echo "[pytest exit $? in $(( $(date +%s) - start )) s]" >> "$OUT/pytest.log"
wait "$check"
grep -E '^\$ fla-check|^\[exit|verdict|OK|DIVERG|LEAK|cases' "$OUT/gpu_check_fla.log" | tail -60
tail -n 8 "$OUT/pytest.log"
