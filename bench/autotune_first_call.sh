#!/usr/bin/env bash
# The cases fla:chunk (delta) failed with fla's autotuners free (docs/gpu/calibration-h200-3), each in a
# fresh process, several calls each (bench/autotune_first_call.py). Needs a GPU and fla-core.
#   bash bench/autotune_first_call.sh OUT_DIR            free (PIN=0) vs first config (PIN=1)
#   bash bench/autotune_first_call.sh OUT_DIR blocking   free, CUDA_LAUNCH_BLOCKING=1, autotuning printed
set -u
OUT=${1:?usage: bash bench/autotune_first_call.sh OUT_DIR [blocking]}
cd "$(dirname "$0")/.." || exit 2
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:${PYTHONPATH:-}
mkdir -p "$OUT"
C1='{"op": "delta", "dtype": "bf16", "B": 3, "T": 433, "H": 3, "K": 16, "V": 64, "beta_max": 2.0, "seed": 281}'
C1K64=${C1/\"K\": 16/\"K\": 64}
C1B1=${C1/\"beta_max\": 2.0/\"beta_max\": 1.0}
G1=${C1/\"delta\"/\"gated_delta\"}
C2='{"op": "delta", "dtype": "fp16", "B": 3, "T": 17, "H": 3, "K": 16, "V": 60, "beta_max": 2.0, "seed": 55974}'
C3='{"op": "delta", "dtype": "fp16", "B": 1, "T": 463, "H": 2, "K": 32, "V": 16, "beta_max": 2.0, "initial_state": true, "packing": "varlen", "segments": [[158, 69, 126, 110]], "seed": 4294967294}'
one() {  # one NAME "ENV=VAL ..." CASE ARGS...
  local name=$1 envs=$2 case=$3; shift 3
  ( env $envs timeout 400 python3 bench/autotune_first_call.py --case "$case" "$@" \
      > "$OUT/$name.jsonl" 2> "$OUT/$name.log"; echo "[$name exit $?]" >> "$OUT/$name.log" ) &
}
if [ "${2:-}" = blocking ]; then
  B="CUDA_LAUNCH_BLOCKING=1 TRITON_PRINT_AUTOTUNING=1 FLA_CHECK_PIN_AUTOTUNE=0"
  one c1 "$B" "$C1" --calls 2
  one c1k64 "$B" "$C1K64" --calls 2
  one c1b1 "$B" "$C1B1" --calls 2
  one c2 "$B" "$C2" --calls 2 --backward
  one g1 "$B" "$G1" --calls 2
else
  one c1-free FLA_CHECK_PIN_AUTOTUNE=0 "$C1" --calls 3
  one c1-first FLA_CHECK_PIN_AUTOTUNE=1 "$C1" --calls 2
  one c2-free-bwd FLA_CHECK_PIN_AUTOTUNE=0 "$C2" --calls 3 --backward
  one c2-first-bwd FLA_CHECK_PIN_AUTOTUNE=1 "$C2" --calls 2 --backward
  one c3-free-bwd FLA_CHECK_PIN_AUTOTUNE=0 "$C3" --calls 3 --backward
fi
wait
