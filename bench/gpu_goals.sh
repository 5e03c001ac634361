#!/usr/bin/env bash
# Every issue-17 goal figure in one device call on a two-GPU host (nvidia-h200-x2), <= ~9.5 minutes,
# in three phases so that the compile-bound figures do not share the CPU cores with each other:
#   1. side by side (each light on the CPU but the first-failure rows): GPU 0 the warm cases/s with
#      the float64 reference (harness_throughput) then the process-start-to-first-failure rows of the
#      masking search (time_to_detect, cold and warm Triton cache, --warmup off and background);
#      GPU 1 the built-in vs fla chunk forward (kernel_profile: device time per kernel, first calls),
#      then TESTS (pytest ids, if given);
#   2. alone: `fla-check selftest --jobs JOBS --json` on GPU 0 (the whole catalog, ci profile);
#   3. alone: the ci profile of each op from an empty Triton cache (gpu_ci_profile.sh), GPU 1;
#   4. alone: the warm cases/s of RATE_PROCS processes (default 14) sharing GPU 0 (harness_throughput --rate-procs);
#   5. alone: the selftest on every GPU of the host (--jobs JOBS2, default 2 x JOBS: worker w on GPU w % n).
# Before them, the Python bytecode cache (BYTECODE, below).
# GPU_A / GPU_B (default 0 / 1): the GPUs phases 1-4 call GPU 0 / GPU 1 (GPU_A=1 GPU_B=1: all on GPU 1, e.g. while
# the test suite holds GPU 0 under `taskset`; equal, phase 1's two halves run one after the other: a one-GPU host).
#   bash bench/gpu_goals.sh OUT_DIR [JOBS]     (caps: HT_BUDGET TD_BUDGET TD_CHILD KP_CAP TESTS_CAP ST_CAP CI_CAP RP_BUDGET s,
#                                               HT_BUDGET=0 skips the cases/s, HT_BATCH (64) cases per T run through
#                                               check_cases at once; TD_OPS, TD_WARMUPS: time_to_detect's
#                                               --first-ops / --first-warmups; RATE_PROCS, RP_OPS, RP_T, RP_CASES (16),
#                                               RP_BATCH (1): phase 4's processes, lengths, cases per T, batch;
#                                               PHASES="2 5 3": only those, in the order 1 2 5 3 4; default "1 2 3")
# Writes OUT_DIR/goals.tar.gz (every log, JSON and table) and OUT_DIR/summary.md; OUT_DIR/work holds them
# while it runs (tar it yourself if the script is cut short).
set -u
OUT=${1:?usage: bash bench/gpu_goals.sh OUT_DIR [JOBS]}
JOBS=${2:-15}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2
W="$OUT/work"
mkdir -p "$W"
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
{
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))"
  python3 -c "import fla; print('fla-core', fla.__version__)" 2>&1 | tail -1
  echo "cores $(nproc)"; date -u
} > "$W/versions.txt" 2>&1
stamp() { echo "[$(date -u +%T)] $*" >> "$W/phases.txt"; }

# Python bytecode (bench/_bytecode.sh): BYTECODE=1 (default) times the import without and with a filled cache
# (bytecode.txt) and runs every phase with the cache.
. bench/_bytecode.sh
use_bytecode_cache "$W/bytecode.txt"

want() { [[ " ${PHASES:-1 2 3} " == *" $1 "* ]]; }  # phases 4 and 5 only when named

if want 1; then
stamp "phase 1"
gpu_a() {
  export CUDA_VISIBLE_DEVICES=${GPU_A:-0}
  [ "${HT_BUDGET:-50}" = 0 ] || timeout -s INT -k 10 $(( ${HT_BUDGET:-50} + 15 )) python3 bench/harness_throughput.py --out "$W/ht" \
    --budget "${HT_BUDGET:-50}" --ops gla,gated_delta --no-search --no-scaling --rate-T 64,256,1024 \
    --rate-cases "${HT_BATCH:-64}" --rate-batch "${HT_BATCH:-64}" \
    > "$W/ht.log" 2>&1
  timeout -s INT -k 10 $(( ${TD_BUDGET:-110} + 10 )) python3 bench/time_to_detect.py --out "$W/td" \
    --budget "${TD_BUDGET:-110}" --first-ops "${TD_OPS:-gla,gated_delta}" --first-warmups "${TD_WARMUPS:-off,background}" \
    --mask-ops '' --mutants none --min-entry-s 8 --child-timeout "${TD_CHILD:-45}" > "$W/td.log" 2>&1
}
gpu_b() {
  export CUDA_VISIBLE_DEVICES=${GPU_B:-1}
  timeout -s INT -k 10 "${KP_CAP:-150}" python3 bench/kernel_profile.py --out "$W/kp" > "$W/kp.log" 2>&1
  echo "[kernel_profile exit $?]" >> "$W/kp.log"
  if [ -n "${TESTS:-}" ]; then
    timeout -s INT -k 10 "${TESTS_CAP:-120}" python3 -m pytest -q -p no:cacheprovider -n 4 $TESTS > "$W/tests.log" 2>&1
    echo "[pytest exit $?] $TESTS" >> "$W/tests.log"
  fi
}
if [ "${GPU_A:-0}" = "${GPU_B:-1}" ]; then  # one GPU: one after the other (each times its own device work)
  ( gpu_a ); stamp "phase 1, GPU_B's half"; ( gpu_b )
else
  ( gpu_a ) & ( gpu_b ) & wait
fi
fi

if want 2; then
  stamp "phase 2: selftest --jobs $JOBS"
  start=$(date +%s)
  CUDA_VISIBLE_DEVICES=${GPU_A:-0} timeout -s INT -k 10 "${ST_CAP:-300}" python3 -m fla_check.cli selftest --jobs "$JOBS" --json \
    > "$W/selftest.json" 2> "$W/selftest.log"
  echo "[selftest --jobs $JOBS exit $? in $(( $(date +%s) - start )) s]" >> "$W/selftest.log"
fi

if want 5; then
  jobs2=${JOBS2:-$(( 2 * JOBS ))}
  stamp "phase 5: selftest --jobs $jobs2 on every GPU"
  start=$(date +%s)
  timeout -s INT -k 10 "${ST2_CAP:-200}" python3 -m fla_check.cli selftest --jobs "$jobs2" --json \
    > "$W/selftest-all-gpus.json" 2> "$W/selftest-all-gpus.log"
  rc=$?
  echo "[selftest --jobs $jobs2, GPUs: $(nvidia-smi -L 2>/dev/null | wc -l), exit $rc in $(( $(date +%s) - start )) s]" \
    >> "$W/selftest-all-gpus.log"
fi

if want 3; then
  stamp "phase 3: ci profile"
  CUDA_VISIBLE_DEVICES=${GPU_B:-1} bash bench/gpu_ci_profile.sh "$W/ci" "${CI_CAP:-60}" > "$W/ci_profile.log" 2>&1
fi
if want 4; then
  stamp "phase 4: warm cases/s of RATE_PROCS processes on GPU 0"
  CUDA_VISIBLE_DEVICES=${GPU_A:-0} timeout -s INT -k 10 $(( ${RP_BUDGET:-120} + 15 )) python3 bench/harness_throughput.py \
    --out "$W/rp" --budget "${RP_BUDGET:-120}" --ops "${RP_OPS:-gla,gated_delta}" --no-search --no-scaling --rate-T "${RP_T:-64,256,1024}" \
    --rate-cases "${RP_CASES:-16}" --rate-batch "${RP_BATCH:-1}" --rate-procs "${RATE_PROCS:-14}" > "$W/rp.log" 2>&1
fi
stamp "done"

{
  echo "# issue 17 goals, one run"; echo; echo '```'; cat "$W/versions.txt" "$W/bytecode.txt" "$W/phases.txt" 2>/dev/null; echo '```'; echo
  echo "## kernels (built-in vs fla)"; cat "$W"/kp/*.md 2>/dev/null || tail -20 "$W/kp.log"; echo
  echo "## warm cases/s"; cat "$W"/ht/*.md 2>/dev/null || tail -20 "$W/ht.log"; echo
  echo "## warm cases/s, N processes"; cat "$W"/rp/*.md 2>/dev/null || tail -20 "$W/rp.log" 2>/dev/null; echo
  echo "## first failure"; cat "$W"/td/*.md 2>/dev/null || tail -20 "$W/td.log"; echo
  echo "## selftest"; echo '```'; grep -c "] caught" "$W/selftest.log" 2>/dev/null | sed 's/^/caught lines: /'
  grep -v "] caught" "$W/selftest.log" 2>/dev/null | tail -8; echo '```'; echo
  echo "## selftest, every GPU"; echo '```'; grep -c "] caught" "$W/selftest-all-gpus.log" 2>/dev/null | sed 's/^/caught lines: /'
  grep -v "] caught" "$W/selftest-all-gpus.log" 2>/dev/null | tail -8; echo '```'; echo
  echo "## ci profile (cold cache)"; cat "$W/ci/ci_profile.md" 2>/dev/null || tail -20 "$W/ci_profile.log"
  [ -f "$W/tests.log" ] && { echo; echo "## tests"; echo '```'; tail -5 "$W/tests.log"; echo '```'; }
} > "$OUT/summary.md" 2>&1
tar czf "$OUT/goals.tar.gz" -C "$W" . && rm -rf "$W"
cat "$OUT/summary.md"
