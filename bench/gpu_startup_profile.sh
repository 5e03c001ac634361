#!/usr/bin/env bash
# Where a warm run's seconds go after torch's import (issue 17, goal 1 warm): fill a Triton cache with one
# complete run, then time the same run warm three ways and profile it in one process.
#   bash bench/gpu_startup_profile.sh OUT_DIR [OPS]      (OPS default "gla gated_delta")
# Per op: OUT/<op>-fill.log (the filling run), OUT/<op>-times.txt (wall seconds of a bare `import torch, triton`,
# the warm run through the isolation worker and with --isolation none), OUT/<op>.prof (cProfile of the warm
# --isolation none run: `python -m pstats`), OUT/<op>-importtime.txt (python -X importtime of the CLI's import);
# OUT/bytecode.txt (bench/_bytecode.sh).
# The runs stop after the first failing case's example count (--examples), shrinking included.
set -u
OUT=${1:?usage: bash bench/gpu_startup_profile.sh OUT_DIR [OPS]}
OPS=${2:-gla gated_delta}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2
export FLA_CHECK_WARM_LEDGER=off NO_COLOR=1 COLUMNS=100
. bench/_bytecode.sh
use_bytecode_cache "$OUT/bytecode.txt"  # as a pip-installed torch has (BYTECODE=0: leave Python as it is)
wall() { local s=$EPOCHREALTIME rc; "$@" > /dev/null 2>&1; rc=$?; echo "rc $rc $(awk "BEGIN{printf \"%.2f\", $EPOCHREALTIME - $s}") s: $*"; }
for op in $OPS; do
  export TRITON_CACHE_DIR="$OUT/cache-$op"
  run=(run --op "$op" --modes recurrent,chunk --mask-fill=-0.1max --profile ci --seed 0 --no-color --warmup off)
  timeout -k 5 150 python3 -m fla_check.cli "${run[@]}" --report "$OUT/$op-fill.json" > "$OUT/$op-fill.log" 2>&1
  n=$(python3 -c "import json,sys; f=json.load(open(sys.argv[1]))['first_failure']; print(min(v['example'] for v in f.values()))" \
    "$OUT/$op-fill.json" 2>/dev/null || echo 8)
  {
    echo "examples to the first failure: $n"
    for i in 1 2; do wall python3 -c "import torch, triton"; done
    for i in 1 2; do wall timeout 60 python3 -m fla_check.cli "${run[@]}" --examples "$n" --report "$OUT/$op-iso.json"; done
    for i in 1 2; do wall timeout 60 python3 -m fla_check.cli "${run[@]}" --examples "$n" --isolation none --report "$OUT/$op-none.json"; done
  } > "$OUT/$op-times.txt" 2>&1
  timeout 60 python3 -m cProfile -o "$OUT/$op.prof" -m fla_check.cli "${run[@]}" --examples "$n" --isolation none \
    --report "$OUT/$op-prof.json" > "$OUT/$op-prof.log" 2>&1
  python3 -X importtime -c "import fla_check.cli" 2> "$OUT/$op-importtime.txt"
  python3 -c "import pstats,sys; pstats.Stats(sys.argv[1]).sort_stats('cumulative').print_stats(60)" "$OUT/$op.prof" \
    > "$OUT/$op-prof-top.txt" 2>&1
  rm -rf "$OUT/cache-$op"
done
