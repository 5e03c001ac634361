# Shared by bench/gpu_all.sh and bench/gpu_harness.sh (sourced after OUT and CACHE_ROOT are set):
#   step NAME BUDGET ARGS...   runs bench/NAME.py with a fresh TRITON_CACHE_DIR under CACHE_ROOT,
#   --out OUT --budget BUDGET ARGS, hard-capped (SIGINT) at BUDGET + STEP_SLACK seconds (default 10).
step() {
  local name=$1 budget=$2; shift 2
  local cap=$(( ${budget%.*} + ${STEP_SLACK:-10} ))
  echo "=== $name (budget ${budget}s, cap ${cap}s) $(date +%T)"
  TRITON_CACHE_DIR="$CACHE_ROOT/$name" timeout -s INT -k 5 "$cap" \
    python "bench/$name.py" --out "$OUT" --budget "$budget" "$@"
  echo "=== $name exit $? $(date +%T)"
}
