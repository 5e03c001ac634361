#!/usr/bin/env bash
# pytest-h200-14, second call: the files of the tests the first call's cap left unrun (large index, providers,
# isolation), with fla-core from the carried wheel.
#   bash docs/gpu/pytest-h200-14/rest.sh OUT_DIR   (run with carry [".whl"])
OUT=${1:?usage: rest.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-0.6.0-py3-none-any.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
start=$(date +%s)
timeout -s INT -k 20 300 python3 -m pytest -v -p no:cacheprovider -n 8 -rfE tests/test_cli_large_index.py \
  tests/test_cli_providers.py tests/test_cli_isolation.py > "$OUT/rest.log" 2>&1
echo "[pytest exit $? in $(( $(date +%s) - start )) s]" >> "$OUT/rest.log"
date -u
grep -E "(FAILED|ERROR) tests/" "$OUT/rest.log" | sort -u
tail -n 3 "$OUT/rest.log"
