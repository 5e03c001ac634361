#!/usr/bin/env bash
# perf-h200-18: check_cases with the staged judge (all cases' outputs in one set of stacked reductions, one fetch)
#   bash docs/gpu/perf-h200-18/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-0.6.0-py3-none-any.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L
python3 -c "import torch, triton, fla; print(torch.__version__, triton.__version__, fla.__version__)"
W=$OUT/w
# 1. cases/s, 64 cases per T through check_cases, alone on the GPU
timeout 200 python3 bench/harness_throughput.py --out $W/ht --no-search --no-scaling --ops gla,gated_delta \
  --rate-T 64,256,1024 --rate-cases 64 --rate-batch 64 > $W/ht.log 2>&1; echo "[ht exit $?]" >> $W/ht.log
# 2. where a warm case's time goes now
cd bench
timeout 100 python3 host_profile.py --ops gla --dtypes float32 --T 64 --H 4 --K 64 --modes recurrent,chunk,fused_chunk \
  --batch 64 --calls 2 --top 40 > $W/hp_gla64.log 2>&1; echo "[hp exit $?]" >> $W/hp_gla64.log
timeout 150 python3 op_counts.py --ops gla,gated_delta --dtypes float32 --T 64,1024 --H 4 --K 64 --batch 64 --time 2 \
  --sync > $W/oc.log 2>&1; echo "[oc exit $?]" >> $W/oc.log
cd ..
# 3. the tests of the changed code
timeout 150 python3 -m pytest -q -p no:cacheprovider -n 6 tests/verdict tests/engine/test_runner.py \
  tests/engine/test_batched.py tests/engine/test_judge_unchanged.py tests/engine/test_warmup.py > $W/tests.log 2>&1
echo "[tests exit $?]" >> $W/tests.log
tar czf $OUT/all.tar.gz -C $OUT w && rm -rf $W
tar xzf $OUT/all.tar.gz -O w/tests.log | tail -6
tar xzf $OUT/all.tar.gz -O w/ht.log | grep -E "rate |exit|rror" | head -20
tar xzf $OUT/all.tar.gz -O w/oc.log | grep -v "^- " | grep -v "^$" | head -60
tar xzf $OUT/all.tar.gz -O w/hp_gla64.log | head -12
