#!/usr/bin/env bash
# Compile timelines (bench/compile_timeline.py) of cold GPU runs, one after another on an idle host:
# the ci profile of each op in OPS, then the masking search (--mask-fill=-0.1max) of each op in MASK_OPS
# cold and then warm (the cold run's cache). Each capped at CAP seconds.
#   OPS="gated_delta kda gla" MASK_OPS="gated_delta" CAP=80 bash bench/gpu_timelines.sh OUT_DIR
# Writes OUT_DIR/timelines.tar.gz (each run's events.jsonl, run.log, timeline.txt) and OUT_DIR/summary.txt.
set -u
OUT=${1:?usage: bash bench/gpu_timelines.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2
W="$OUT/work"
mkdir -p "$W"
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
. bench/_bytecode.sh
use_bytecode_cache "$W/bytecode.txt"
CAP=${CAP:-80}
line() { python3 - "$1" <<'PY'
import sys; t = open(sys.argv[1] + "/timeline.txt").read().splitlines(); print(t[1])
PY
}
for op in ${OPS:-gated_delta kda gla}; do
  timeout -k 5 $(( CAP + 20 )) python3 bench/compile_timeline.py --out "$W/ci-$op" --timeout "$CAP" -- \
    run --op "$op" --modes recurrent,chunk --no-color > /dev/null 2>&1
  echo "ci $op: $(line "$W/ci-$op")" >> "$OUT/summary.txt"
done
for op in ${MASK_OPS:-gated_delta}; do
  mkdir -p "$W/cache-$op"
  for c in cold warm; do
    timeout -k 5 $(( CAP + 20 )) python3 bench/compile_timeline.py --out "$W/mask-$op-$c" --timeout "$CAP" \
      --cache-dir "$W/cache-$op" -- run --op "$op" --modes recurrent,chunk --mask-fill=-0.1max --no-color > /dev/null 2>&1
    echo "mask $op $c: $(line "$W/mask-$op-$c")" >> "$OUT/summary.txt"
  done
done
rm -rf "$W"/cache-*
tar czf "$OUT/timelines.tar.gz" -C "$W" .
cat "$OUT/summary.txt"
