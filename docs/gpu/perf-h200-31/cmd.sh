#!/usr/bin/env bash
# perf-h200-31: gla's recurrent forward kernel (the kernel a warm T = 1024 gla case waits for, perf-h200-30) against
# two variants that load step t + 1 before step t computes (bench/recurrent_prefetch.py), per V-block width.
#   bash docs/gpu/perf-h200-31/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NO_COLOR=1
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
cd bench && timeout -k 10 200 python3 recurrent_prefetch.py --T 256,1024 --BV 64,32,16,8 --reps 50 2>&1 | tee "$OUT/prefetch.md"
echo "[exit ${PIPESTATUS[0]}]"; date -u
