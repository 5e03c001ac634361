#!/usr/bin/env bash
# perf-h200-45: the state passing of the emulated baselines in one Triton launch (verdict/passing_kernel.py),
# this tree against the one before (.old, `git archive ca681a2 fla_check`) on one host:
#   1. one batch of 16 bf16 cases' baselines at T = 1024 (bench/baseline_batch.py), gla chunk and fused_chunk,
#      gated_delta chunk, old then new;
#   2. goal 3's warm cases/s (bench/harness_throughput.py, one process, T = 256 and 1024), old then new;
#   3. the verdict tests on the GPU (the new kernel's test among them).
#   bash docs/gpu/perf-h200-45/cmd.sh OUT_DIR   (carry .whl and .old)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
for tree in old new; do
  if [ $tree = old ]; then export PYTHONPATH=$PWD/.old:/tmp/site; else export PYTHONPATH=/tmp/site; fi
  python3 -c "import fla_check, torch, triton, fla; print('$tree', fla_check.__file__, torch.__version__, triton.__version__, fla.__version__)"
  timeout -k 10 60 python3 bench/baseline_batch.py --op gla --T 1024 --modes chunk,fused_chunk --cases 16 --calls 5 \
    > "$W/bb_gla_$tree.md" 2>&1; echo "[exit $?]" >> "$W/bb_gla_$tree.md"
  timeout -k 10 60 python3 bench/baseline_batch.py --op gated_delta --T 1024 --modes chunk --cases 16 --calls 5 \
    > "$W/bb_gd_$tree.md" 2>&1; echo "[exit $?]" >> "$W/bb_gd_$tree.md"
  grep -h "^| 1024" "$W/bb_gla_$tree.md" "$W/bb_gd_$tree.md"; date -u
done
tar czf "$OUT/all.tar.gz" -C "$OUT" w
for tree in old new; do
  if [ $tree = old ]; then export PYTHONPATH=$PWD/.old:/tmp/site; else export PYTHONPATH=/tmp/site; fi
  timeout -s INT -k 10 110 python3 bench/harness_throughput.py --out "$W/ht_$tree" --budget 100 --ops gla,gated_delta \
    --no-search --no-scaling --rate-T 256,1024 --rate-cases 128 --rate-batch 64 > "$W/ht_$tree.log" 2>&1
  echo "[ht exit $?]" >> "$W/ht_$tree.log"; grep -E "rate |exit" "$W/ht_$tree.log"; date -u
done
tar czf "$OUT/all.tar.gz" -C "$OUT" w
export PYTHONPATH=/tmp/site
bash bench/gpu_pytest.sh "$W/pytest" 130 15 tests/verdict
gzip -f "$W/pytest/pytest.log"
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w
