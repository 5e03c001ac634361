#!/usr/bin/env bash
# pytest-h200-16: tests/engine and tests/commands on one H200 with the twelfth session's final code (after the
# warm-up pool test's fix, pytest-h200-15).
#   bash docs/gpu/pytest-h200-16/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
start=$(date +%s)
timeout -s INT -k 20 250 python3 -m pytest -q -p no:cacheprovider -n 14 -rfE tests/engine tests/commands \
  > "$OUT/pytest.log" 2>&1
echo "[pytest exit $? in $(( $(date +%s) - start )) s]" >> "$OUT/pytest.log"
tail -6 "$OUT/pytest.log"
echo "'Exception ignored' lines: $(grep -c 'Exception ignored' "$OUT/pytest.log")"
date -u
gzip "$OUT/pytest.log"
