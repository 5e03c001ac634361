#!/usr/bin/env bash
# perf-h200-33: thirteenth session's start on one H200: where a warm T = 256 / 1024 case's time goes per phase
# (bench/op_counts.py: launches and synced ms per phase, one case's share of 64, baselines not overlapped), the
# profile of the default (overlapped) batch at T = 1024, and goal 3's warm cases/s (192 cases per T, once).
#   bash docs/gpu/perf-h200-33/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
timeout -s INT -k 10 110 python3 bench/harness_throughput.py --out "$W/ht1" --budget 100 --ops gla,gated_delta \
  --no-search --no-scaling --rate-T 64,256,1024 --rate-cases 192 --rate-batch 64 > "$W/ht1.log" 2>&1
echo "[ht exit $?]" >> "$W/ht1.log"; grep -E "rate |exit" "$W/ht1.log"
date -u
cd bench
timeout -k 10 150 python3 op_counts.py --ops gla --modes recurrent,chunk,fused_chunk --dtypes float32,bfloat16 \
  --T 256,1024 --H 4 --K 64 --batch 64 --time 2 --sync --overlap off --top 10 > "$W/phases_gla.md" 2>&1
echo "[op_counts gla exit $?]" >> "$W/phases_gla.md"
timeout -k 10 120 python3 op_counts.py --ops gated_delta --modes recurrent,chunk --dtypes float32,bfloat16 \
  --T 256,1024 --H 4 --K 64 --batch 64 --time 2 --sync --overlap off --top 10 > "$W/phases_gd.md" 2>&1
echo "[op_counts gated_delta exit $?]" >> "$W/phases_gd.md"
grep -E "^\| (reference|baseline|kernels|judge|\*\*total)|^####|exit" "$W/phases_gla.md" "$W/phases_gd.md"
date -u
for op in gla gated_delta; do
  modes=recurrent,chunk; [ $op = gla ] && modes=recurrent,chunk,fused_chunk
  timeout -k 10 100 python3 cuda_profile.py --ops $op --dtypes bfloat16 --T 1024 --H 4 --K 64 --modes $modes \
    --batch 64 --calls 2 --top 15 > "$W/profile_$op.md" 2>&1
  echo "[profile $op exit $?]" >> "$W/profile_$op.md"
  grep -A2 "^| wall" "$W/profile_$op.md"
done
date -u
cd .. && tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$W"
