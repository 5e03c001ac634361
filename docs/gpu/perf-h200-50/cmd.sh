#!/usr/bin/env bash
# perf-h200-50: the delta rule's chunked state passing in one float64 Triton launch (verdict/delta_kernel.py), this
# tree against the one before (.old, `git archive 37151fa fla_check`) on one host:
#   1. one batch of 16 bf16 cases' baselines at T = 1024 (bench/baseline_batch.py): gated_delta, delta and kda
#      chunk, old then new;
#   2. goal 3's warm cases/s of the new tree, one process, T = 1024 (bench/harness_throughput.py);
#   3. the fused kernels' tests on the GPU.
#   bash docs/gpu/perf-h200-50/cmd.sh OUT_DIR   (carry .whl and .old)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
FINAL=$OUT; OUT=$OUT/w  # one archive comes back (a call returns few files)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
for tree in old new; do
  if [ $tree = old ]; then export PYTHONPATH=$PWD/.old:/tmp/site; else export PYTHONPATH=/tmp/site; fi
  for op in gated_delta delta kda; do
    timeout -k 10 60 python3 bench/baseline_batch.py --op $op --T 1024 --modes chunk --cases 16 --calls 3 \
      > "$OUT/bb_${op}_$tree.md" 2>&1; echo "[exit $?]" >> "$OUT/bb_${op}_$tree.md"
    echo "$tree $op: $(grep -h '^| 1024\|Error' "$OUT/bb_${op}_$tree.md")"
  done
  date -u
done
export PYTHONPATH=/tmp/site
timeout -s INT -k 10 150 python3 bench/harness_throughput.py --out "$OUT/ht" --budget 140 --ops gla,gated_delta \
  --no-search --no-scaling --rate-T 1024 --rate-cases 128 --rate-batch 64 > "$OUT/ht.log" 2>&1
echo "[ht exit $?]" >> "$OUT/ht.log"; grep -E "rate |exit" "$OUT/ht.log"; date -u
bash bench/gpu_pytest.sh "$OUT/pytest" 120 15 tests/verdict/test_delta_kernel.py tests/verdict/test_scores_kernel.py \
  tests/verdict/test_emulation.py tests/verdict/test_baselines.py
gzip -f "$OUT/pytest/pytest.log"
date -u
tar czf "$FINAL/all.tar.gz" -C "$FINAL" w && rm -rf "$OUT"
