#!/usr/bin/env bash
# perf-h200-30: the twelfth session's code on one H200: where a warm T = 1024 case's time goes now (torch.profiler,
# one case's share of 64, gla and gated_delta bf16), then `fla-check selftest --jobs 15` alone (goal 2; the poisoned
# allocations now through a dispatch mode: the UNWRITTEN mutants), then tests/engine on the GPU.
#   bash docs/gpu/perf-h200-30/cmd.sh OUT_DIR      (carry: .whl)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-0.6.0-py3-none-any.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
python3 -c "import torch, triton, fla; print('torch', torch.__version__, 'triton', triton.__version__, 'fla-core', fla.__version__)"
for op in gla gated_delta; do
  (cd bench && timeout -k 10 80 python3 cuda_profile.py --ops $op --dtypes bfloat16 --T 1024 --H 4 --K 64 \
    --modes $([ $op = gla ] && echo recurrent,chunk,fused_chunk || echo recurrent,chunk) --batch 64 --calls 2 --top 15) \
    > "$W/profile_$op.md" 2>&1
  echo "[profile $op exit $?]" >> "$W/profile_$op.md"
done
date -u
start=$(date +%s)
timeout -s INT -k 10 200 python3 -m fla_check.cli selftest --jobs 15 --json > "$W/selftest.json" 2> "$W/selftest.log"
echo "[selftest --jobs 15 exit $? in $(( $(date +%s) - start )) s]" >> "$W/selftest.log"
date -u
start=$(date +%s)
timeout -s INT -k 20 190 python3 -m pytest -q -p no:cacheprovider -n 12 -rfE tests/engine > "$W/pytest_engine.log" 2>&1
echo "[pytest exit $? in $(( $(date +%s) - start )) s]" >> "$W/pytest_engine.log"
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$W"
for op in gla gated_delta; do tar xzf "$OUT/all.tar.gz" -O w/profile_$op.md | grep -A3 "wall ms"; done
tar xzf "$OUT/all.tar.gz" -O w/selftest.log | tail -6
tar xzf "$OUT/all.tar.gz" -O w/pytest_engine.log | tail -5
