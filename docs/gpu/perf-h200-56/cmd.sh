#!/usr/bin/env bash
# perf-h200-56 (prepared in the twentieth session; `rate` ran in the twenty-first, see README.md): goal 3's rate
# loop on three trees (call `rate`), the suite's part b again (call `suite`).
#   .old  = `git archive 1f1bef2 fla_check`: a new CUDA stream per batch for the baselines behind the calls;
#   .prev = `git archive 6fcf7e8 fla_check`: one stream per device for them (perf-h200-55 found the cache freed and
#           refilled: 413 cudaFree in two gla batches);
#   this tree: also the calls and the judge on a high-priority stream beside them (batched.ahead_of).
# Per tree: the rate loop as perf-h200-54's goals run it (one process, then two), whose rows now count the CUDA
# allocator's allocations, frees and out-of-memory retries (those of .old and .prev included: the bench is this
# tree's); then, on this tree, gla's T = 1024 profile in fp32 then bf16 in one process (the order that showed the
# frees); and the noisy dot's launch settings (bench/dot_kernel_variants.py: its 0.73 ms per gla case was the
# largest device item in perf-h200-55). `suite`: the suite but tests/engine, tests/commands, tests/verdict, tests/references (its pytest did not
# exit within the cap in perf-h200-55; progress.csv now says when its last test ended).
#   rm -rf .old .prev; mkdir .old .prev; git archive 1f1bef2 fla_check | tar -x -C .old
#   git archive 6fcf7e8 fla_check | tar -x -C .prev
#   bash docs/gpu/perf-h200-56/cmd.sh rate|suite OUT_DIR   (carry .whl; rate also .old and .prev)
PART=${1:?usage: cmd.sh rate|suite OUT_DIR}
OUT=${2:?usage: cmd.sh rate|suite OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
source bench/_device_setup.sh
git log --oneline -1 2>/dev/null
if [ "$PART" = suite ]; then
  export PYTHONPATH=/tmp/site
  bash bench/gpu_pytest.sh "$W/pytest" 480 15 --ignore=tests/engine --ignore=tests/commands --ignore=tests/verdict \
    --ignore=tests/references
  gzip -f "$W/pytest/pytest.log"
  date -u
  tar czf "$OUT/all_suite.tar.gz" -C "$OUT" w && rm -rf "$W"
  exit 0
fi
for tree in old prev new; do
  if [ "$tree" = new ]; then export PYTHONPATH=/tmp/site; else export PYTHONPATH=$PWD/.$tree:/tmp/site; fi
  timeout -k 10 150 python3 bench/harness_throughput.py --out "$W/rp_$tree" --budget 60 --ops gla,gated_delta \
    --no-search --no-scaling --rate-T 256,1024 --rate-cases 128 --rate-batch 64 --rate-procs 2 > "$W/rate_$tree.log" 2>&1
  echo "[harness_throughput exit $?]" >> "$W/rate_$tree.log"
  grep "  rate \|exit" "$W/rate_$tree.log" | sed "s/^/$tree /"
done
export PYTHONPATH=/tmp/site
(cd bench && timeout -k 10 150 python3 cuda_profile.py --ops gla --dtypes float32,bfloat16 --T 1024 --H 4 --K 64 \
   --modes recurrent,chunk,fused_chunk --batch 64 --calls 2 --top 25) > "$W/cuda_profile.md" 2>&1
echo "[cuda_profile exit $?]" >> "$W/cuda_profile.md"
grep -B3 -A2 "^| wall ms\|^CUDA caching" "$W/cuda_profile.md" | grep "^| [0-9]\|^CUDA\|^####"
timeout -k 10 150 python3 bench/dot_kernel_variants.py > "$W/dot_variants.md" 2>&1
echo "[dot_kernel_variants exit $?]" >> "$W/dot_variants.md"
cat "$W/dot_variants.md"
date -u
tar czf "$OUT/all_rate.tar.gz" -C "$OUT" w && rm -rf "$W"
