#!/usr/bin/env bash
# GPU run for issues 14-16: the test suite on a GPU host, fla's KDA / simple GLA / GVA Gated DeltaNet
# modes (every option, forward and backward), fla under --configs all and with the determinism repeat.
# the config-specific mutant under --configs all, the invariance checks over fla's modes,
# and the fla:recurrent delta dq margin of calibration run 3 (bf16 T=433) under the rebuilt-state model.
#   bash bench/gpu_features.sh OUT_DIR [CAP_SECONDS]    (ONLY=REGEX runs the jobs whose name matches)
# Jobs run in parallel (one GPU, many CPU cores), each capped at CAP_SECONDS with SIGINT (an interrupted
# run still writes the cases it finished). Writes OUT_DIR/features.tar.gz (logs, JSON reports),
# OUT_DIR/exits.txt, OUT_DIR/versions.txt and OUT_DIR/summary.md (bench/calibration_summary.py).
set -u
OUT=${1:?usage: bash bench/gpu_features.sh OUT_DIR [CAP_SECONDS]}
CAP=${2:-420}
source "$(dirname "$0")/_gpu_jobs.sh"
FIRST=FLA_CHECK_PIN_AUTOTUNE=1
for op in kda simple_gla; do
  job fla-$op-fwd $FIRST run --op $op $P $FLA,recurrent,chunk --dtypes fp32,fp16,bf16
  job fla-$op-bwd $FIRST run --op $op $P $FLA,recurrent --dtypes fp32,fp16,bf16 --backward
done
OPTS="--value-ratios 1,2,3,4,8 --kernel-options qk_l2norm,gate_in_kernel,beta_sigmoid"
job fla-gva-fwd $FIRST run --op gated_delta $P $FLA,chunk --dtypes fp32,fp16,bf16 $OPTS
job fla-gva-bwd $FIRST run --op gated_delta $P --modes fla:chunk,chunk --dtypes fp16,bf16 --backward --value-ratios 1,2,3,4,8 --kernel-options qk_l2norm
job fla-configs-all-delta "" run --op delta $P --modes fla:chunk --dtypes bf16,fp16 --configs all --examples 3 --seed 1
job fla-configs-all-gla "" run --op gla $P --modes fla:chunk --dtypes bf16 --configs all --examples 2 --seed 1
for op in gla delta gated_delta; do
  job fla-repeat-$op "$FIRST FLA_CHECK_REPEAT=all" run --op $op $P $FLA --dtypes fp32,fp16,bf16 --examples 20 --seed 3
done
for preset in $(python3 -c "from fla_check.presets import PRESETS; print(*PRESETS)"); do
  job preset-$preset-fwd $FIRST run --preset $preset $P $FLA,chunk --examples 8
  job preset-$preset-bwd $FIRST run --preset $preset $P --modes fla:chunk,fla:recurrent --backward --examples 8
done
UNGUARDED="$FIRST FLA_CHECK_FLA_UNGUARDED=640"  # fla's #640 guard lifted: does its gated chunk backward go wrong on Hopper?
for op in simple_gla gated_delta; do
  job fla-unguarded-$op "$UNGUARDED" run --op $op $P --modes fla:chunk --dtypes fp32,fp16,bf16 --backward
done
for preset in $(python3 -c "from fla_check.presets import PRESETS; print(*(p for p in PRESETS if p.startswith('qwen')))"); do
  job fla-unguarded-preset-$preset "$UNGUARDED" run --preset $preset $P --modes fla:chunk --backward --examples 8
done
# replay the cases features-h200-4 shrunk with the guard lifted, as run and under every autotune config of fla's kernels
R4=$(mktemp -d) && tar xzf docs/gpu/features-h200-4/features.tar.gz -C "$R4"
for name_case in preset-qwen3-next:15 gated_delta:0 simple_gla:0; do
  name=${name_case%:*} case=${name_case#*:}
  job replay-640-$name "$UNGUARDED" replay "$R4/fla-unguarded-$name.report.json" --case "$case" $P
  job replay-640-$name-configs "$UNGUARDED" replay "$R4/fla-unguarded-$name.report.json" --case "$case" $P --configs all
done
KDA_OPTS="--kernel-options qk_l2norm,gate_in_kernel,beta_sigmoid,lower_bound,safe_gate"
job fla-kda-options-fwd $FIRST run --op kda $P $FLA --dtypes fp32,fp16,bf16 $KDA_OPTS
job fla-kda-options-bwd $FIRST run --op kda $P --modes fla:chunk --dtypes fp32,fp16,bf16 --backward $KDA_OPTS
# the bound and safe_gate rest on the in-kernel gate: narrowed to them so a run draws each (check its "drawn" line)
job fla-kda-safe-gate $FIRST run --op kda $P --modes fla:chunk --dtypes fp32,bf16 --examples 40 \
  --kernel-options gate_in_kernel,lower_bound,safe_gate
for op in gla simple_gla delta gated_delta kda; do
  job fla-layouts-$op $FIRST run --op $op $P $FLA --dtypes fp32,bf16 --chunk-sizes all --state-layouts all
done
job selftest-config-specific "" selftest --mutants simple_gla.chunk.config-specific
for op in gla delta gated_delta; do
  job fla-invariance-$op $FIRST run --op $op $P $FLA --isolation none --invariance all --invariance-scope all \
    --dtypes fp32,bf16 --examples 12 --seed 5
done
C1='{"op": "delta", "dtype": "bf16", "B": 3, "T": 433, "H": 3, "K": 16, "V": 64, "beta_max": 2.0, "seed": 281}'
[[ recurrent-dq-margin =~ ${ONLY:-.} ]] && ( timeout -s INT "$CAP" python3 bench/autotune_first_call.py --case "$C1" \
    --mode fla:recurrent --calls 1 --backward > "$WORK/recurrent-dq-margin.jsonl" 2> "$WORK/recurrent-dq-margin.log";
    echo "[recurrent-dq-margin exit $?]" >> "$WORK/recurrent-dq-margin.log" ) &
XDIST=$(python3 -c "import xdist" 2>/dev/null && echo "-n 12")
[[ pytest =~ ${ONLY:-.} ]] && ( start=$(date +%s); timeout -s INT -k 30 "$CAP" python3 -m pytest -q -p no:cacheprovider $XDIST \
    > "$WORK/pytest.log" 2>&1; echo "[pytest exit $? in $(( $(date +%s) - start )) s] python3 -m pytest -q $XDIST" >> "$WORK/pytest.log" ) &
wait
finish features.tar.gz
tail -n 40 "$WORK/pytest.log" > "$OUT/pytest-tail.txt" 2>/dev/null
cp "$WORK"/recurrent-dq-margin.jsonl "$OUT/" 2>/dev/null
