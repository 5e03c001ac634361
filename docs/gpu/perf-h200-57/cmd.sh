#!/usr/bin/env bash
# perf-h200-57: three device calls, back to back, after perf-h200-56 (whose dot_kernel_variants table halved the
# noisy dot's time with a 64 x 64 tile).
#   a:     goal 3's rate loop on .old (`git archive 2200788 fla_check`: a 32 x 32 tile) and on this tree (64 x 64),
#          then tests/engine, tests/commands, tests/verdict, tests/references (the first GPU run of the
#          high-priority call stream, batched.ahead_of, and of the tile).
#   goals: every issue-17 goal in one call, as perf-h200-46.
#   b:     the rest of the suite, its exit timed by progress.csv.
#   bash docs/gpu/perf-h200-57/cmd.sh a|goals|b OUT_DIR   (carry .whl; a also .old)
PART=${1:?usage: cmd.sh a|goals|b OUT_DIR}
OUT=${2:?usage: cmd.sh a|goals|b OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
source bench/_device_setup.sh
FIRST="tests/engine tests/commands tests/verdict tests/references"
if [ "$PART" = goals ]; then
  export PYTHONPATH=/tmp/site
  bash docs/gpu/perf-h200-46/cmd.sh "$W/goals"
elif [ "$PART" = b ]; then
  export PYTHONPATH=/tmp/site
  bash bench/gpu_pytest.sh "$W/pytest" 480 15 $(for d in $FIRST; do echo "--ignore=$d"; done)
  gzip -f "$W/pytest/pytest.log"
else
  for tree in old new; do
    if [ "$tree" = new ]; then export PYTHONPATH=/tmp/site; else export PYTHONPATH=$PWD/.$tree:/tmp/site; fi
    timeout -k 10 150 python3 bench/harness_throughput.py --out "$W/rp_$tree" --budget 60 --ops gla,gated_delta \
      --no-search --no-scaling --rate-T 256,1024 --rate-cases 128 --rate-batch 64 --rate-procs 2 \
      > "$W/rate_$tree.log" 2>&1
    echo "[harness_throughput exit $?]" >> "$W/rate_$tree.log"
    grep "  rate \|exit" "$W/rate_$tree.log" | sed "s/^/$tree /" | cut -c1-80
  done
  export PYTHONPATH=/tmp/site
  bash bench/gpu_pytest.sh "$W/pytest" 300 15 $FIRST
  gzip -f "$W/pytest/pytest.log"
fi
date -u
tar czf "$OUT/all_$PART.tar.gz" -C "$OUT" w && rm -rf "$W"
