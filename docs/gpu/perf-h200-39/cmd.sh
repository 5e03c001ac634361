#!/usr/bin/env bash
# perf-h200-39: the tests the fourteenth session could not run on a GPU (the graph-cache fix, the narrow V-block
# test, the subprocess tests the cap cut), then where a warm T = 1024 case's host time goes (bench/host_profile.py,
# cProfile, the baselines inline so that one thread holds all of it).
#   bash docs/gpu/perf-h200-39/cmd.sh OUT_DIR   (carry .whl)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
python3 -c "import torch, triton, fla; print('torch', torch.__version__, 'triton', triton.__version__, 'fla-core', fla.__version__)"
timeout -k 10 200 python3 -m pytest -q -n 8 -p no:cacheprovider tests/references tests/kernels/test_gated_delta_recurrent.py \
  tests/test_cli_isolation.py > "$OUT/pytest.log" 2>&1
echo "[pytest exit $?]" >> "$OUT/pytest.log"; tail -5 "$OUT/pytest.log"
date -u
for op in gla gated_delta; do
  modes=recurrent,chunk; [ $op = gla ] && modes=recurrent,chunk,fused_chunk
  (cd bench && timeout -k 10 150 python3 host_profile.py --ops $op --dtypes bfloat16 --T 1024 --H 4 --K 64 \
    --modes $modes --batch 64 --calls 2 --top 60 --overlap off) > "$OUT/host_$op.md" 2>&1
  echo "[host_profile $op exit $?]" >> "$OUT/host_$op.md"; head -8 "$OUT/host_$op.md" | tail -4
done
date -u
