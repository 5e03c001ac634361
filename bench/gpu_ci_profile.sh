#!/usr/bin/env bash
# Issue 17 goal 1 (second half): the ci profile of one op over three dtypes from a cold Triton cache,
# the README's main job per op: `fla-check run --op OP --modes recurrent,chunk` (profile ci, fp32/fp16/bf16).
#   bash bench/gpu_ci_profile.sh OUT_DIR [CAP_SECONDS] [OPS]
# Ops run one after another by default (PARALLEL=1: side by side, each its own empty cache) with an empty
# TRITON_CACHE_DIR each, capped at CAP_SECONDS (SIGINT). Writes OUT_DIR/ci_profile.md (op, exit, wall s, cases, verdict).
set -u
OUT=${1:?usage: bash bench/gpu_ci_profile.sh OUT_DIR [CAP_SECONDS] [OPS]}
CAP=${2:-120}
OPS=${3:-gla simple_gla delta gated_delta kda}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2
CACHE_ROOT=$(mktemp -d /tmp/fla_check_ci_XXXXXX)
trap 'rm -rf "$CACHE_ROOT"' EXIT
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
one() {  # one OP: a cold ci-profile run, its wall time from process start
  local op=$1 start=$(date +%s.%N)
  TRITON_CACHE_DIR="$CACHE_ROOT/$op" timeout -s INT -k 10 "$CAP" python3 -m fla_check.cli run --op "$op" \
    --modes recurrent,chunk --report "$OUT/ci-$op.json" > "$OUT/ci-$op.log" 2>&1
  local rc=$?
  echo "$op $rc $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")" >> "$OUT/ci_profile.txt"
}
: > "$OUT/ci_profile.txt"
for op in $OPS; do
  if [ "${PARALLEL:-0}" = 1 ]; then one "$op" & else one "$op"; fi
done
wait
{
  echo "| op | exit | wall s (cold cache, from spawn) | cases | verdict |"
  echo "|---|---|---|---|---|"
  while read -r op rc secs; do
    python3 - "$OUT/ci-$op.json" "$op" "$rc" "$secs" <<'PY'
import json, sys
path, op, rc, secs = sys.argv[1:]
try:
    r = json.load(open(path)); cases, verdict = r.get("examples"), r.get("verdict")
except (OSError, ValueError):
    cases, verdict = "-", "no report"
print(f"| {op} | {rc} | {secs} | {cases} | {verdict} |")
PY
  done < "$OUT/ci_profile.txt"
} > "$OUT/ci_profile.md"
cat "$OUT/ci_profile.md"
