#!/usr/bin/env bash
# perf-h200-60 (twenty-third session): on ONE H200, back to back on one machine (carry .whl):
#   bash docs/gpu/perf-h200-60/cmd.sh timeline OUT_DIR   compile timelines (bench/gpu_timelines.sh) of the masking
#                                                        search, gated_delta then gla, cold then warm: where the
#                                                        cold first failure's seconds go (about 100 s)
#   bash docs/gpu/perf-h200-60/cmd.sh goals OUT_DIR      perf-h200-59's goals call with TD_BUDGET 110 (59's 90 s ran
#                                                        out before gla's warm row); about 570 s
#   bash docs/gpu/perf-h200-60/cmd.sh profile OUT_DIR    (a later machine) where a warm gla T = 1024 case's wall goes,
#                                                        host or device, per kernel and aten op (bench/cuda_profile.py)
PART=${1:?usage: cmd.sh timeline|goals|profile OUT_DIR}
OUT=${2:?usage: cmd.sh timeline|goals|profile OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
export PYTHONPATH=/tmp/site
source bench/_device_setup.sh
if [ "$PART" = timeline ]; then
  OPS=" " MASK_OPS="gated_delta gla" CAP=40 timeout -k 10 200 bash bench/gpu_timelines.sh "$W/tl" > "$W/tl.log" 2>&1
  echo "[gpu_timelines exit $?]" >> "$W/tl.log"
  tail -n 12 "$W/tl.log"
elif [ "$PART" = profile ]; then
  (cd bench && timeout -s INT -k 5 70 python3 cuda_profile.py --ops gla --dtypes bfloat16 --T 1024 --H 4 --K 64 \
    --modes recurrent,chunk,fused_chunk --batch 64 --calls 1 --top 25) > "$W/profile.log" 2>&1
  echo "[cuda_profile exit $?]" >> "$W/profile.log"
  grep -v "^|" "$W/profile.log" | tail -n 20
else
  GPU_A=0 GPU_B=0 PHASES="1 2 3 4" HT_BUDGET=70 HT_BATCH=64 TD_OPS=gated_delta,gla TD_WARMUPS=background TD_BUDGET=110 \
    TD_CHILD=45 KP_CAP=150 ST_CAP=150 CI_CAP=35 RATE_PROCS=2 RP_T=256,1024 RP_CASES=256 RP_BATCH=64 RP_BUDGET=60 \
    timeout -s INT -k 10 585 bash bench/gpu_goals.sh "$W/g" 15 > "$W/goals.log" 2>&1
  echo "[gpu_goals exit $?]" >> "$W/goals.log"
  [ -d "$W/g/work" ] && tar czf "$W/g/goals-cut.tar.gz" -C "$W/g/work" . && rm -rf "$W/g/work"
  tail -n 30 "$W/g/summary.md" 2>/dev/null || tail -n 30 "$W/goals.log"
fi
date -u
tar czf "$OUT/all_$PART.tar.gz" -C "$OUT" w && rm -rf "$W"
