#!/usr/bin/env bash
# perf-h200-22: the final code's warm cases/s (goal 3) after GLA's off-diagonal scores stopped expanding qf, with the
# emulation tests on the GPU first, then where a warm gla / gated_delta case's time goes at T = 256 and 1024.
#   bash docs/gpu/perf-h200-22/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w"
W=$OUT/w
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
timeout 100 python3 -m pytest -q -x -p no:cacheprovider tests/verdict/test_noise_kernel.py tests/verdict/test_emulation.py \
  tests/verdict/test_baselines.py > "$W/tests.log" 2>&1; echo "[pytest exit $?]" >> "$W/tests.log"; tail -2 "$W/tests.log"
timeout -s INT -k 10 75 python3 bench/harness_throughput.py --out "$W/ht" --budget 60 --ops gla,gated_delta --no-search \
  --no-scaling --rate-T 64,256,1024 --rate-cases 64 --rate-batch 64 > "$W/ht.log" 2>&1; echo "[ht exit $?]" >> "$W/ht.log"
cd bench
timeout 120 python3 op_counts.py --ops gla --modes recurrent,chunk,fused_chunk --dtypes bfloat16 --T 256,1024 --H 4 --K 64 \
  --batch 64 --time 2 --sync > "$W/oc_gla.log" 2>&1; echo "[oc gla exit $?]" >> "$W/oc_gla.log"
timeout 100 python3 op_counts.py --ops gated_delta --dtypes bfloat16 --T 1024 --H 4 --K 64 --batch 64 --time 2 \
  --sync > "$W/oc_gd.log" 2>&1; echo "[oc gd exit $?]" >> "$W/oc_gd.log"
cd ..
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$W"
tar xzf "$OUT/all.tar.gz" -O w/ht.log | grep -E "rate |exit"
for f in oc_gla oc_gd; do tar xzf "$OUT/all.tar.gz" -O w/$f.log | grep -v "^- " | grep -v "^$"; done
