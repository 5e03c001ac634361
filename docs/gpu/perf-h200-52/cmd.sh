#!/usr/bin/env bash
# perf-h200-52 (prepared in the seventeenth session, not yet run): two device calls.
#   check: the emulation's fused kernels as landed in c6b916f (runtime head dims, unspecialized per-call ints,
#          delta_kernel on 8 warps) on the GPU: their tests, the specialization test, and one batch of 16 bf16
#          cases' baselines at T = 1024 against the tree before (.old = `git archive fec0e63 fla_check`): did the
#          runtime dims or the 8 warps cost run time?
#   goals: every issue-17 goal in one call, as perf-h200-46 (goals 1 and 2 compile the new kernels cold).
#   bash docs/gpu/perf-h200-52/cmd.sh check|goals OUT_DIR   (carry .whl; check also .old)
PART=${1:?usage: cmd.sh check|goals OUT_DIR}
OUT=${2:?usage: cmd.sh check|goals OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
source bench/_device_setup.sh
if [ "$PART" = goals ]; then
  bash docs/gpu/perf-h200-46/cmd.sh "$W/goals"
else
  for tree in old new; do
    if [ $tree = old ]; then export PYTHONPATH=$PWD/.old:/tmp/site; else export PYTHONPATH=/tmp/site; fi
    for op in gla gated_delta kda; do
      modes=chunk; [ $op = gla ] && modes=chunk,fused_chunk
      timeout -k 10 90 python3 bench/baseline_batch.py --op $op --T 1024 --modes $modes --cases 16 --calls 3 \
        > "$W/bb_${op}_$tree.md" 2>&1; echo "[exit $?]" >> "$W/bb_${op}_$tree.md"
      echo "$tree $op: $(grep -h '^| 1024\|Error' "$W/bb_${op}_$tree.md" | tr '\n' ' ')"
    done
  done
  export PYTHONPATH=/tmp/site
  timeout -k 10 120 python3 bench/f64_triton_probe.py > "$W/probe.txt" 2>&1
  bash bench/gpu_pytest.sh "$W/pytest" 200 15 tests/verdict tests/kernels/test_specialization.py
  gzip -f "$W/pytest/pytest.log"
fi
date -u
tar czf "$OUT/all_$PART.tar.gz" -C "$OUT" w && rm -rf "$W"
