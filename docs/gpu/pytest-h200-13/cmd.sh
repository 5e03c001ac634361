#!/usr/bin/env bash
# pytest-h200-13: the whole test suite on the GPU host
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-0.6.0-py3-none-any.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L
git log --oneline -1 2>&1 | head -1
. bench/_bytecode.sh; use_bytecode_cache $OUT/bytecode.txt
bash bench/gpu_pytest.sh $OUT 520 28
gzip -f $OUT/pytest.log
cat $OUT/failed.txt
