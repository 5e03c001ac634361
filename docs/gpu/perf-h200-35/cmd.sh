#!/usr/bin/env bash
# perf-h200-35: which forms of the float64 step loop's readout and updates suit the GPU, eager and as a replayed
# graph (bench/step_forms.py), and where a warm T = 1024 case's time goes now (bench/op_counts.py, as perf-h200-33).
#   bash docs/gpu/perf-h200-35/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
timeout -k 10 150 python3 bench/step_forms.py --rows 256,512 --T 1024 --reps 3 > "$W/forms.md" 2>&1
echo "[step_forms exit $?]" >> "$W/forms.md"; cat "$W/forms.md"
cd bench
timeout -k 10 150 python3 op_counts.py --ops gla --modes recurrent,chunk,fused_chunk --dtypes bfloat16 \
  --T 256,1024 --H 4 --K 64 --batch 64 --time 2 --sync --overlap off --top 10 > "$W/phases_gla.md" 2>&1
echo "[op_counts gla exit $?]" >> "$W/phases_gla.md"
timeout -k 10 120 python3 op_counts.py --ops gated_delta --modes recurrent,chunk --dtypes bfloat16 \
  --T 256,1024 --H 4 --K 64 --batch 64 --time 2 --sync --overlap off --top 10 > "$W/phases_gd.md" 2>&1
echo "[op_counts gated_delta exit $?]" >> "$W/phases_gd.md"
grep -E "^\| |^####|exit" "$W/phases_gla.md" "$W/phases_gd.md"
date -u
cd .. && tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$W"
