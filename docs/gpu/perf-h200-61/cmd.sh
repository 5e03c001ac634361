#!/usr/bin/env bash
# perf-h200-61 (twenty-fourth session), on ONE H200, back to back on one machine (carry .whl):
#   bash docs/gpu/perf-h200-58/cmd.sh procs OUT_DIR    first: goal 3's T = 1024 rows with 2, 3 and 4 processes
#   bash docs/gpu/perf-h200-61/cmd.sh goals4 OUT_DIR   perf-h200-60's goals call with RATE_PROCS=4 (ran inline as the
#                                                      device's command line, the same settings)
#   bash docs/gpu/perf-h200-61/cmd.sh warps OUT_DIR    (a later machine) gla's recurrent forward by warps per program:
#                                                      the kernel alone (bench/recurrent_prefetch.py), then goal 3's
#                                                      gla T = 1024 rate with FWD_WARPS 4, 1, 2 (copies of this tree
#                                                      in .wN/, first on PYTHONPATH), one process and three
#                                                      (ran on 52cde1b: later trees lack the FWD_WARPS constant)
#   bash docs/gpu/perf-h200-61/cmd.sh goals3 OUT_DIR   (right after warps) the goals call with RATE_PROCS=3 (inline as
#                                                      well; its tree still had the FWD_WARPS edit that broke a mutant)
#   bash docs/gpu/perf-h200-61/cmd.sh final OUT_DIR    (a later machine) phases 2 and 4 of the goals call (selftest, the
#                                                      rates of three processes) on the tree with that edit reverted
#                                                      (not run: the device refused the call)
#   bash docs/gpu/perf-h200-61/cmd.sh rest OUT_DIR     (instead of final: 263 s of device time left) the suite but
#                                                      the four directories perf-h200-57 part a ran, capped at 130 s
PART=${1:?usage: cmd.sh goals4|warps|goals3|final|rest OUT_DIR}
OUT=${2:?usage: cmd.sh goals4|warps|goals3|final|rest OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
export PYTHONPATH=/tmp/site
source bench/_device_setup.sh
if [ "$PART" = rest ]; then
  bash bench/gpu_pytest.sh "$W/pytest" 130 15 --ignore=tests/engine --ignore=tests/commands --ignore=tests/verdict \
    --ignore=tests/references
  gzip -f "$W/pytest/pytest.log"
elif [ "$PART" = warps ]; then
  for w in 4 1 2; do
    rm -rf ".w$w" && mkdir ".w$w" && cp -r fla_check ".w$w/"
    sed -i "s/^FWD_WARPS = 4 /FWD_WARPS = $w /" ".w$w/fla_check/kernels/gla/recurrent.py"
    grep -H "^FWD_WARPS" ".w$w/fla_check/kernels/gla/recurrent.py" | cut -c1-60
  done
  (cd bench && timeout -k 5 80 python3 recurrent_prefetch.py --T 256,1024 --BV 4,8,16 --warps 1,2,4) > "$W/sweep.log" 2>&1
  echo "[recurrent_prefetch exit $?]" >> "$W/sweep.log"
  cat "$W/sweep.log"
  for run in "4 1" "1 1" "4 3" "1 3" "2 3" "2 1"; do
    set -- $run
    if [ "$2" = 1 ]; then how=""; else how="--no-rate --rate-procs $2"; fi
    PYTHONPATH=$PWD/.w$1:/tmp/site timeout -k 10 60 python3 bench/harness_throughput.py --out "$W/w$1p$2" --budget 45 \
      --ops gla --no-search --no-scaling --rate-T 1024 --rate-cases 256 --rate-batch 64 $how > "$W/w$1p$2.log" 2>&1
    echo "[harness_throughput FWD_WARPS $1, $2 process(es) exit $?]" >> "$W/w$1p$2.log"
    grep "  rate \|exit" "$W/w$1p$2.log" | sed "s/^/warps $1: /" | cut -c1-100
  done
else
  . bench/_goals_call.sh
  case $PART in goals4) goals_call "$W" 4;; goals3) goals_call "$W" 3;; *) goals_call "$W" 3 "2 4";; esac
fi
date -u
tar czf "$OUT/all_$PART.tar.gz" -C "$OUT" w && rm -rf "$W"
