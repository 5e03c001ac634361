#!/usr/bin/env bash
# perf-h200-43: the fifteenth session's code on one H200 (gla's recurrent forward in 4-wide V-blocks), in two
# device calls (the whole suite takes longer than one call on a 16-core host):
#   a: goal 3's warm cases/s in one process and in two processes sharing the GPU (bench/harness_throughput.py
#      --rate-procs 2), then the tests of tests/engine, tests/commands, tests/verdict and tests/references;
#   b: the rest of the suite.
#   bash docs/gpu/perf-h200-43/cmd.sh a|b OUT_DIR   (carry .whl)
PART=${1:?usage: cmd.sh a|b OUT_DIR}
OUT=${2:?usage: cmd.sh a|b OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
python3 -c "import torch, triton, fla; print('torch', torch.__version__, 'triton', triton.__version__, 'fla-core', fla.__version__)"
FIRST="tests/engine tests/commands tests/verdict tests/references"
if [ "$PART" = a ]; then
  timeout -s INT -k 10 150 python3 bench/harness_throughput.py --out "$W/ht" --budget 140 --ops gla,gated_delta \
    --no-search --no-scaling --rate-T 256,1024 --rate-cases 128 --rate-batch 64 --rate-procs 2 > "$W/ht.log" 2>&1
  echo "[ht exit $?]" >> "$W/ht.log"; grep -E "rate |exit" "$W/ht.log"
  date -u
  bash bench/gpu_pytest.sh "$W/pytest" 300 15 $FIRST
else
  bash bench/gpu_pytest.sh "$W/pytest" 440 15 $(for d in $FIRST; do echo "--ignore=$d"; done)
fi
gzip -f "$W/pytest/pytest.log"
date -u
tar czf "$OUT/all_$PART.tar.gz" -C "$OUT" w && rm -rf "$W"
