#!/usr/bin/env bash
# The harness goals of issue 17 on a GPU in one bounded run (<= 9 minutes): time from process
# start to the first failing -0.1*finfo.max masking case (cold and warm Triton cache, --warmup
# off and on), and warm cases/s with the float64 reference included at T = 64, 256, 1024.
#
#   bash bench/gpu_harness.sh "$OUT"
#
# Writes {time_to_detect,harness_throughput}.{json,md} under OUT and prints both tables. Each
# step has a budget counted from its process' start and a hard `timeout -s INT` cap of budget +
# 15 s. The first-failure rows make their own Triton cache dirs (an empty one per cold row);
# the throughput step starts from an empty cache too. Budgets: TD_BUDGET=330 HT_BUDGET=190 (caps sum to 550 s).
set -u
OUT=${1:?usage: bash bench/gpu_harness.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2
export PYTHONUNBUFFERED=1
TD_BUDGET=${TD_BUDGET:-330}
HT_BUDGET=${HT_BUDGET:-190}
CACHE_ROOT=$(mktemp -d /tmp/fla_check_harness_XXXXXX)
trap 'rm -rf "$CACHE_ROOT"' EXIT

STEP_SLACK=15
source bench/_step.sh

python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
# 1. process start -> first failing masking case: cold/warm cache x --warmup off/on, gla then gated_delta
step time_to_detect "$TD_BUDGET" --first-ops gla,gated_delta --mask-ops "" --mutants none --min-entry-s 15 \
  --child-timeout 150 --warmup-seconds 90
# 2. warm cases/s with the reference (T <= 1024, 32 cases per T), then the cold/warm search split
step harness_throughput "$HT_BUDGET" --ops gla,gated_delta --examples 30 --rate-T 64,256,1024 --rate-cases 32 \
  --no-scaling
for f in "$OUT"/time_to_detect.md "$OUT"/harness_throughput.md; do echo; cat "$f"; done
