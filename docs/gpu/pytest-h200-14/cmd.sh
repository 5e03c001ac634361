#!/usr/bin/env bash
# pytest-h200-14: the suite on one H200 except tests/engine and tests/verdict (those ran in perf-h200-26), after a
# mode's call came to wait for its own CUDA stream only (engine/call.py) and check_cases' baselines went behind the
# calls; fla-core from the carried wheel for tests/providers.
#   bash docs/gpu/pytest-h200-14/cmd.sh OUT_DIR   (run with carry [".whl"])
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-0.6.0-py3-none-any.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
python3 -c "import torch, triton, fla; print('torch', torch.__version__, 'triton', triton.__version__, 'fla-core', fla.__version__)"
nvidia-smi --query-gpu=timestamp,memory.used,memory.total --format=csv,noheader -l 10 > "$OUT/w/gpu_memory.csv" 2>&1 &
watch=$!
start=$(date +%s)
timeout -s INT -k 30 450 python3 -m pytest -v -p no:cacheprovider -n 12 -rfE tests/commands tests/kernels tests/providers \
  tests/references tests/report tests/controls $(ls tests/test_*.py) > "$OUT/w/pytest.log" 2>&1
echo "[pytest exit $? in $(( $(date +%s) - start )) s]" >> "$OUT/w/pytest.log"
kill "$watch" 2>/dev/null
grep -E "(FAILED|ERROR) tests/" "$OUT/w/pytest.log" | sed 's/^\[gw[0-9]*\] \[ *[0-9]*%\] //' | sort -u > "$OUT/w/failed.txt"
date -u
gzip "$OUT/w/pytest.log"
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$OUT/w"
tar xzf "$OUT/all.tar.gz" -O w/pytest.log.gz | gunzip | tail -n 4
tar xzf "$OUT/all.tar.gz" -O w/failed.txt
