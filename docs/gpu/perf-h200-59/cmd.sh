#!/usr/bin/env bash
# perf-h200-59 (prepared in the twenty-second session, run in the twenty-third: README.md): every issue-17 goal
# in one call on ONE H200, as perf-h200-58 but HT_BUDGET 70 (58's one-process pass ran out of its 50 s after
# gated_delta's T = 64 row: the rate loop now runs one batch before its clock) and without phase 1's verdict tests
# (the suite's parts run them) to stay within a device call's 600 s. Then, on the same machine, calls that 58 and 57
# prepared:
#   bash docs/gpu/perf-h200-59/cmd.sh OUT_DIR          (carry .whl; about 570 s)
#   bash docs/gpu/perf-h200-58/cmd.sh procs OUT_DIR    (goal 3 at T = 1024 with 2, 3 and 4 processes; about 120 s)
#   bash docs/gpu/perf-h200-57/cmd.sh b OUT_DIR        (the suite but tests/engine, commands, verdict, references)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
export PYTHONPATH=/tmp/site
source bench/_device_setup.sh
GPU_A=0 GPU_B=0 PHASES="1 2 3 4" HT_BUDGET=70 HT_BATCH=64 TD_OPS=gated_delta,gla TD_WARMUPS=background TD_BUDGET=90 \
  TD_CHILD=45 KP_CAP=150 ST_CAP=150 CI_CAP=35 RATE_PROCS=2 RP_T=256,1024 RP_CASES=256 RP_BATCH=64 RP_BUDGET=60 \
  timeout -s INT -k 10 575 bash bench/gpu_goals.sh "$W/g" 15 > "$W/goals.log" 2>&1
echo "[gpu_goals exit $?]" >> "$W/goals.log"
[ -d "$W/g/work" ] && tar czf "$W/g/goals-cut.tar.gz" -C "$W/g/work" . && rm -rf "$W/g/work"
tail -n 30 "$W/g/summary.md" 2>/dev/null || tail -n 30 "$W/goals.log"
date -u
tar czf "$OUT/all_goals.tar.gz" -C "$OUT" w && rm -rf "$W"
