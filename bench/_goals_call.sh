# Sourced by docs/gpu/*/cmd.sh from perf-h200-61 on (after bench/_device_setup.sh):
#   goals_call DIR PROCS [PHASES]   every issue-17 goal on ONE GPU (bench/gpu_goals.sh into DIR/g, log DIR/goals.log),
#                                   with the settings of perf-h200-60 on: goal 3 with PROCS processes, PHASES
#                                   (default "1 2 3 4"), capped at 585 s. A cut call's work dir is packed into
#                                   DIR/g/goals-cut.tar.gz; the summary's last 30 lines are printed.
goals_call() {
  local dir=$1 procs=$2 phases=${3:-1 2 3 4}
  GPU_A=0 GPU_B=0 PHASES="$phases" HT_BUDGET=70 HT_BATCH=64 TD_OPS=gated_delta,gla TD_WARMUPS=background \
    TD_BUDGET=110 TD_CHILD=45 KP_CAP=150 ST_CAP=150 CI_CAP=35 RATE_PROCS=$procs RP_T=256,1024 RP_CASES=256 \
    RP_BATCH=64 RP_BUDGET=60 timeout -s INT -k 10 585 bash bench/gpu_goals.sh "$dir/g" 15 > "$dir/goals.log" 2>&1
  echo "[gpu_goals exit $?]" >> "$dir/goals.log"
  [ -d "$dir/g/work" ] && tar czf "$dir/g/goals-cut.tar.gz" -C "$dir/g/work" . && rm -rf "$dir/g/work"
  tail -n 30 "$dir/g/summary.md" 2>/dev/null || tail -n 30 "$dir/goals.log"
}
