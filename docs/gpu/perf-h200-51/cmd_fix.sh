#!/usr/bin/env bash
# perf-h200-51, third call: part a's 24 failures (delta_kernel out of shared memory at K = 100) again on the fix,
# then as much of part b as the session's device time allows.
#   bash docs/gpu/perf-h200-51/cmd_fix.sh OUT_DIR   (carry .whl)
OUT=${1:?usage: cmd_fix.sh OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
bash bench/gpu_pytest.sh "$W/fix" 130 15 tests/verdict/test_delta_kernel.py tests/verdict/test_scores_kernel.py \
  "tests/verdict/test_honest_controls.py" tests/engine/test_memory.py::test_honest_builtins_are_quiet_under_the_checks \
  tests/commands/test_selftest.py -k "K100 or honest_builtins or delta or scores or shared_memory"
gzip -f "$W/fix/pytest.log"
FIRST="tests/engine tests/commands tests/verdict tests/references"
bash bench/gpu_pytest.sh "$W/b" 270 15 $(for d in $FIRST; do echo "--ignore=$d"; done)
gzip -f "$W/b/pytest.log"
date -u
tar czf "$OUT/all_fix.tar.gz" -C "$OUT" w && rm -rf "$W"
