#!/usr/bin/env bash
# Verdict calibration on a GPU (issue 13): fla's clean kernels and the built-ins under the error model.
#   bash bench/gpu_calibration.sh OUT_DIR [CAP_SECONDS]      (ONLY=REGEX runs the jobs whose name matches)
# Runs independent jobs in parallel (one GPU, many CPU cores), each capped at CAP_SECONDS with
# SIGINT (a run interrupted so still writes the cases it finished). Writes OUT_DIR/calibration.tar.gz
# (every log and JSON report) and OUT_DIR/summary.md (bench/calibration_summary.py over the reports).
# Jobs:
#   fla-{first,picked}-{op}-{fwd,bwd}: fla:recurrent + fla:chunk, fp32/fp16/bf16, ci profile, with
#       fla's autotuners pinned to their first config (FLA_CHECK_PIN_AUTOTUNE=1) or left to pick;
#   fla-nightly-{op}: 70 seeded cases per op (210 in all) with ordinary fills, first config;
#   fla-seedbug-{op}: the -0.1*finfo.max mask fill (must stay flagged on fla:chunk);
#   fla-sweep-{op}: sweep-mask-values over -20, -1e4, -0.1max, -inf on fla's modes;
#   ut-{plain,gated}: fla-check ut-transform (built-in and fla UT steps);
#   builtin-{op}: the built-in kernels, ci profile, fp32/fp16/bf16;
#   proxies: tests/controls' fla-like torch modes against fla's kernels (bench/fla_like_vs_fla.py).
set -u
OUT=${1:?usage: bash bench/gpu_calibration.sh OUT_DIR [CAP_SECONDS]}
CAP=${2:-420}
source "$(dirname "$0")/_gpu_jobs.sh"
FIRST=FLA_CHECK_PIN_AUTOTUNE=1
PICKED=FLA_CHECK_PIN_AUTOTUNE=0

for op in gla delta gated_delta; do
  job fla-first-$op-fwd $FIRST run --op $op $P $FLA --dtypes fp32,fp16,bf16
  job fla-first-$op-bwd $FIRST run --op $op $P $FLA --dtypes fp32,fp16,bf16 --backward
  job fla-picked-$op-fwd $PICKED run --op $op $P $FLA --dtypes fp32,fp16,bf16
  job fla-picked-$op-bwd $PICKED run --op $op $P $FLA --dtypes fp32,fp16,bf16 --backward
  job fla-nightly-$op $FIRST run --op $op $P $FLA --dtypes fp32,fp16,bf16 --examples 70 --seed 11
  job builtin-$op "" run --op $op --modes recurrent,chunk --dtypes fp32,fp16,bf16
done
for op in gla gated_delta; do
  job fla-seedbug-$op $FIRST run --op $op $P $FLA --dtypes fp32,bf16 --mask-fill=-0.1max --examples 8 --seed 0
done
for op in gla gated_delta; do
  job fla-sweep-$op $FIRST sweep-mask-values --op $op $P $FLA --dtypes fp32,bf16 --values=-20,-1e4,-0.1max,-inf --cases 3
done
job ut-plain $PICKED ut-transform --dtypes fp32,fp16,bf16 --seed 0
job ut-gated $PICKED ut-transform --gated --dtypes fp32,fp16,bf16 --seed 0
[[ proxies =~ ${ONLY:-.} ]] && ( timeout -s INT "$CAP" python3 bench/fla_like_vs_fla.py --out "$WORK/proxies" --budget $((CAP - 60)) \
    > "$WORK/proxies.log" 2>&1; echo "[proxies exit $?]" >> "$WORK/proxies.log" ) &
wait
finish calibration.tar.gz
