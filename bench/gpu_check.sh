#!/usr/bin/env bash
# Built-in kernels (and fla-core when importable) checked by fla-check itself on a GPU.
#   bash bench/gpu_check.sh OUT_DIR [builtin|fla]
# Writes OUT_DIR/gpu_check_<part>.log (everything printed) and OUT_DIR/reports_<part>.tar.gz.
set -u
OUT=${1:?usage: bash bench/gpu_check.sh OUT_DIR [builtin|fla]}
PART=${2:-builtin}
mkdir -p "$OUT"
cd "$(dirname "$0")/.." || exit 2
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
LOG="$OUT/gpu_check_$PART.log"
fc() { echo; echo "\$ fla-check $*"; timeout ${FC_TIMEOUT:-100} python -m fla_check.cli "$@"; echo "[exit $?]"; }
{
  python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))"
  python -c "import fla; print('fla-core', fla.__version__)" 2>&1 | tail -1
  if [ "$PART" = builtin ]; then
    fc list
    fc run --op gla --modes recurrent,chunk,fused_chunk --dtypes fp32,fp16,bf16 --seed 0 --examples 24
    fc run --op delta --modes recurrent,chunk --dtypes fp32,fp16,bf16 --seed 0 --examples 24
    fc run --op gated_delta --modes recurrent,chunk --dtypes fp32,fp16,bf16 --seed 0 --examples 24
    fc run --op gla --modes recurrent,chunk,fused_chunk --dtypes fp32,bf16 --mask-fill=-0.1max --seed 0
    fc ut-transform --gated --dtypes fp32,bf16 --seed 0
  elif [ "$PART" = diag ]; then
    for op in delta gated_delta; do
      fc run --op $op --modes recurrent,chunk --dtypes fp32,bf16 --seed 0 --examples 8
    done
  else
    export FLA_CHECK_PIN_AUTOTUNE=1
    P="--provider fla_check.providers.fla:provider"
    for op in gla delta gated_delta; do
      fc run --op $op $P --modes fla:recurrent,fla:chunk --dtypes fp32,bf16 --seed 0 --examples 16
    done
    fc run --op gla $P --modes fla:recurrent,fla:chunk --dtypes fp32,bf16 --mask-fill=-0.1max --seed 0 --examples 16
    fc sweep-mask-values --op gla $P --modes fla:recurrent,fla:chunk --dtypes fp32,bf16
    fc sweep-mask-values --op gated_delta $P --modes fla:recurrent,fla:chunk --dtypes fp32,bf16
  fi
} 2>&1 | tee "$LOG"
tar czf "$OUT/reports_$PART.tar.gz" reports 2>/dev/null
