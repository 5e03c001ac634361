#!/usr/bin/env bash
# perf-h200-54 (prepared in the eighteenth session, not yet run): two device calls, back to back.
#   check: the verdict tests on the GPU with the delta kernel on 1 stage (a90b163 on; perf-h200-53 ran them at 3) and
#          the fused noisy dot (dot_kernel.py, not yet run on a GPU); one batch of 16 bf16 cases' baselines at
#          T = 1024 against .old (`git archive e59b58e fla_check`: before dot_kernel), K = 64;
#          and K = 128, where the delta kernel (MAX_TILE raised to 64 x 128 in-process) against the per-chunk torch
#          ops it would replace (the tree's MAX_TILE): does 1 stage make K = 128 worth fusing?
#          Since then (nineteenth session, no GPU lent): the noise kernel reads strided views in place, the samples'
#          deviations take one Triton read (deviation_kernel.py), the cases are sampled in one copy, gla's output sum
#          runs in its dot's launch; .prev holds the
#          tree before those (`git archive b5a6103 fla_check`), so the A/B runs e59b58e, b5a6103 and this tree.
#   goals: every issue-17 goal in one call, as perf-h200-46.
#   bash docs/gpu/perf-h200-54/cmd.sh check|goals OUT_DIR   (carry .whl; check also .old and .prev)
PART=${1:?usage: cmd.sh check|goals OUT_DIR}
OUT=${2:?usage: cmd.sh check|goals OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
source bench/_device_setup.sh
export PYTHONPATH=/tmp/site
if [ "$PART" = goals ]; then
  bash docs/gpu/perf-h200-46/cmd.sh "$W/goals"
else
  bash bench/gpu_pytest.sh "$W/pytest" 200 15 tests/verdict tests/kernels/test_specialization.py
  gzip -f "$W/pytest/pytest.log"
  AB_TREES="old prev new" bash bench/ab_baselines.sh "$W" gla gated_delta kda  # delta: gated_delta's kernels
  for tile in 4096 8192; do  # 64 x 64: K = 128 runs the per-chunk ops; 64 x 128: the kernel
    timeout -k 10 120 python3 -c "
import runpy, sys
from fla_check.verdict import delta_kernel
delta_kernel.MAX_TILE = $tile
sys.argv = ['baseline_batch.py', '--op', 'gated_delta', '--T', '1024', '--K', '128', '--modes', 'chunk', '--cases', '16',
            '--calls', '5']
sys.path.insert(0, 'bench')
runpy.run_path('bench/baseline_batch.py', run_name='__main__')" > "$W/bb_k128_tile$tile.md" 2>&1
    echo "K=128 tile $tile: $(grep -h '^| 1024\|Error' "$W/bb_k128_tile$tile.md" | tr '\n' ' ')"
  done
fi
date -u
tar czf "$OUT/all_$PART.tar.gz" -C "$OUT" w && rm -rf "$W"
