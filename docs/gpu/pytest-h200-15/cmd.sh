#!/usr/bin/env bash
# pytest-h200-15: tests/engine on one H200 with the twelfth session's final code; does the "Exception ignored in:
# Pool.__del__" at shutdown (perf-h200-26, perf-h200-30) still show after prestarted warm-up pools end at exit?
#   bash docs/gpu/pytest-h200-15/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
start=$(date +%s)
timeout -s INT -k 20 200 python3 -m pytest -q -p no:cacheprovider -n 12 -rfE tests/engine > "$OUT/pytest_engine.log" 2>&1
echo "[pytest exit $? in $(( $(date +%s) - start )) s]" >> "$OUT/pytest_engine.log"
tail -4 "$OUT/pytest_engine.log"
echo "'Exception ignored' lines: $(grep -c 'Exception ignored' "$OUT/pytest_engine.log")"
grep -B2 -A8 "Exception ignored" "$OUT/pytest_engine.log" | head -40
date -u
