#!/usr/bin/env bash
# perf-h200-55 (twentieth session): the whole test suite on one H200 on the tree perf-h200-54 measured, in two
# device calls (the suite takes longer than one call), and where goal 3's T = 1024 case spends its time now.
#   b: where a gla / gated_delta T = 1024 case's time goes (cuda_profile, fp32 and bf16, one case's share of 64),
#      then the suite but tests/engine, tests/commands, tests/verdict, tests/references;
#   a: where cudaFree and cudaMalloc come from (b showed ~400 cudaFree per 128 gla cases), those four folders,
#      then goal 3's rate loop again (one process and two).
#   bash docs/gpu/perf-h200-55/cmd.sh a|b OUT_DIR   (carry .whl)
PART=${1:?usage: cmd.sh a|b OUT_DIR}
OUT=${2:?usage: cmd.sh a|b OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
source bench/_device_setup.sh
export PYTHONPATH=/tmp/site
git log --oneline -1 2>/dev/null
FIRST="tests/engine tests/commands tests/verdict tests/references"
if [ "$PART" = b ]; then
  (cd bench && timeout -k 10 150 python3 cuda_profile.py --ops gla --dtypes float32,bfloat16 --T 1024 --H 4 --K 64 \
     --modes recurrent,chunk,fused_chunk --batch 64 --calls 2 --top 25 \
   && timeout -k 10 100 python3 cuda_profile.py --ops gated_delta --dtypes float32,bfloat16 --T 1024 --H 4 --K 64 \
     --modes recurrent,chunk --batch 64 --calls 2 --top 25) > "$W/cuda_profile.md" 2>&1
  echo "[cuda_profile exit $?]" >> "$W/cuda_profile.md"
  grep -B3 -A2 "^| wall ms" "$W/cuda_profile.md"
  bash bench/gpu_pytest.sh "$W/pytest" 380 15 $(for d in $FIRST; do echo "--ignore=$d"; done)
else
  (cd bench && timeout -k 10 100 python3 cuda_profile.py --ops gla --dtypes bfloat16 --T 1024 --H 4 --K 64 \
     --modes recurrent,chunk,fused_chunk --batch 64 --calls 2 --top 12 --stacks cudaFree,cudaMalloc) \
     > "$W/alloc_stacks.md" 2>&1
  echo "[cuda_profile exit $?]" >> "$W/alloc_stacks.md"
  grep -A14 "^CUDA caching\|^Python stacks" "$W/alloc_stacks.md" | cut -c1-400
  bash bench/gpu_pytest.sh "$W/pytest" 270 15 $FIRST
  timeout -k 10 200 python3 bench/harness_throughput.py --out "$W/rp" --budget 60 --ops gla,gated_delta --no-search \
    --no-scaling --rate-T 256,1024 --rate-cases 128 --rate-batch 64 --rate-procs 2 > "$W/rate.log" 2>&1
  echo "[harness_throughput exit $?]" >> "$W/rate.log"
  grep "^| gla\|^| gated_delta\|exit" "$W/rate.log"
fi
gzip -f "$W/pytest/pytest.log"
date -u
tar czf "$OUT/all_$PART.tar.gz" -C "$OUT" w && rm -rf "$W"
