#!/usr/bin/env bash
# selftest-h200-1: the final code's verdict on one H200 with the fused noise: the selftest's mutant catalog (every
# mutant must be caught, the clean kernels must pass) beside the built-in kernels' tests (clean kernels judged OK).
#   bash docs/gpu/selftest-h200-1/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
start=$(date +%s)
( timeout -s INT -k 10 180 python3 -m fla_check.cli selftest --jobs 11 --json > "$OUT/selftest.json" 2> "$OUT/selftest.log"
  echo "[selftest --jobs 11 exit $? in $(( $(date +%s) - start )) s]" >> "$OUT/selftest.log" ) &
timeout -s INT -k 10 180 python3 -m pytest -q -p no:cacheprovider -n 4 tests/kernels > "$OUT/kernels_tests.log" 2>&1
echo "[pytest tests/kernels exit $? in $(( $(date +%s) - start )) s]" >> "$OUT/kernels_tests.log"
wait
date -u
grep -c "] caught" "$OUT/selftest.log" | sed 's/^/caught lines: /'
grep -v "] caught" "$OUT/selftest.log" | tail -8
tail -3 "$OUT/kernels_tests.log"
