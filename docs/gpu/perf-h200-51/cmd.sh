#!/usr/bin/env bash
# perf-h200-51: the whole test suite on one H200 on the seventeenth session's code (the fused scores and delta
# state passing), in two device calls run back to back (the suite takes longer than one call):
#   a: tests/engine, tests/commands, tests/verdict, tests/references;  b: the rest.
#   bash docs/gpu/perf-h200-51/cmd.sh a|b OUT_DIR   (carry .whl)
PART=${1:?usage: cmd.sh a|b OUT_DIR}
OUT=${2:?usage: cmd.sh a|b OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u; git log --oneline -1 2>/dev/null
FIRST="tests/engine tests/commands tests/verdict tests/references"
if [ "$PART" = a ]; then
  bash bench/gpu_pytest.sh "$W/pytest" 290 15 $FIRST
else
  bash bench/gpu_pytest.sh "$W/pytest" 480 15 $(for d in $FIRST; do echo "--ignore=$d"; done)
fi
gzip -f "$W/pytest/pytest.log"
date -u
tar czf "$OUT/all_$PART.tar.gz" -C "$OUT" w && rm -rf "$W"
