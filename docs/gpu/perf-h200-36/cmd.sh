#!/usr/bin/env bash
# perf-h200-36: the thirteenth session's final code on one H200, in two device calls (the whole suite takes
# longer than one call on a 16-core host):
#   a: goal 3's warm cases/s (bench/harness_throughput.py, 192 cases per T, on a quiet machine), then the tests
#      of tests/engine, tests/commands, tests/verdict and tests/references;
#   b: the rest of the suite.
#   bash docs/gpu/perf-h200-36/cmd.sh a|b OUT_DIR     (device tool: carry [".whl"], the fla-core and einops wheels)
PART=${1:?usage: cmd.sh a|b OUT_DIR}
OUT=${2:?usage: cmd.sh a|b OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
python3 -c "import torch, triton, fla; print('torch', torch.__version__, 'triton', triton.__version__, 'fla-core', fla.__version__)"
FIRST="tests/engine tests/commands tests/verdict tests/references"
if [ "$PART" = a ]; then
  timeout -s INT -k 10 110 python3 bench/harness_throughput.py --out "$W/ht" --budget 100 --ops gla,gated_delta \
    --no-search --no-scaling --rate-T 64,256,1024 --rate-cases 192 --rate-batch 64 > "$W/ht.log" 2>&1
  echo "[ht exit $?]" >> "$W/ht.log"; grep -E "rate |exit" "$W/ht.log"
  date -u
  bash bench/gpu_pytest.sh "$W/pytest" 400 14 $FIRST
else
  bash bench/gpu_pytest.sh "$W/pytest" 550 15 $(for d in $FIRST; do echo "--ignore=$d"; done)
fi
gzip -f "$W/pytest/pytest.log"
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$W"
