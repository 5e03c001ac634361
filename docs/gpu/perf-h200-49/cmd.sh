#!/usr/bin/env bash
# perf-h200-49: GLA's intra-chunk scores in one float64 Triton launch (verdict/scores_kernel.py), this tree
# against the one before (.old, `git archive 10ddc97 fla_check`) on one host:
#   1. one batch of 16 bf16 cases' baselines at T = 1024 (bench/baseline_batch.py): gla chunk and fused_chunk,
#      kda chunk (its per-channel scores take the same path), old then new;
#   2. the new tree's device-time sections of gla chunk (--device-sections);
#   3. the verdict's fused-noise tests on the GPU (the new kernel's among them).
#   bash docs/gpu/perf-h200-49/cmd.sh OUT_DIR   (carry .whl and .old)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
for tree in old new; do
  if [ $tree = old ]; then export PYTHONPATH=$PWD/.old:/tmp/site; else export PYTHONPATH=/tmp/site; fi
  python3 -c "import fla_check, torch, triton, fla; print('$tree', fla_check.__file__, torch.__version__, triton.__version__, fla.__version__)"
  timeout -k 10 60 python3 bench/baseline_batch.py --op gla --T 1024 --modes chunk,fused_chunk --cases 16 --calls 5 \
    > "$OUT/bb_gla_$tree.md" 2>&1; echo "[exit $?]" >> "$OUT/bb_gla_$tree.md"
  timeout -k 10 60 python3 bench/baseline_batch.py --op kda --T 1024 --modes chunk --cases 16 --calls 5 \
    > "$OUT/bb_kda_$tree.md" 2>&1; echo "[exit $?]" >> "$OUT/bb_kda_$tree.md"
  grep -h "^| 1024\|exit\|Error" "$OUT/bb_gla_$tree.md" "$OUT/bb_kda_$tree.md"; date -u
done
export PYTHONPATH=/tmp/site
timeout -k 10 90 python3 bench/baseline_batch.py --op gla --T 1024 --modes chunk,fused_chunk --cases 16 --calls 1 \
  --device-sections > "$OUT/sections_gla.md" 2>&1; echo "[exit $?]" >> "$OUT/sections_gla.md"
grep -v "^USDT" "$OUT/sections_gla.md"
bash bench/gpu_pytest.sh "$OUT/pytest" 150 15 tests/verdict/test_scores_kernel.py tests/verdict/test_passing_kernel.py \
  tests/verdict/test_noise_kernel.py tests/verdict/test_emulation.py tests/verdict/test_baselines.py
gzip -f "$OUT/pytest/pytest.log"
date -u
