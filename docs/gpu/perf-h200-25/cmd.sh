#!/usr/bin/env bash
# perf-h200-25: where one warm case of check_cases spends its GPU time (torch.profiler: wall vs device-busy ms, the
# aten ops with the most host time, the kernels with the most device time), 64 cases per call, bf16, H=4 K=V=64,
# overlap off and on; gla (three modes) at T = 256 and 1024, gated_delta (two) at 1024.
#   bash docs/gpu/perf-h200-25/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w"
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
cd bench
for ov in off on; do
  timeout -k 10 150 python3 cuda_profile.py --ops gla --dtypes bfloat16 --T 256,1024 --H 4 --K 64 \
    --modes recurrent,chunk,fused_chunk --batch 64 --calls 2 --top 25 --overlap $ov > "$OUT/w/gla_$ov.md" 2>&1
  echo "[gla $ov exit $?]" >> "$OUT/w/gla_$ov.md"
  timeout -k 10 100 python3 cuda_profile.py --ops gated_delta --dtypes bfloat16 --T 1024 --H 4 --K 64 \
    --modes recurrent,chunk --batch 64 --calls 2 --top 25 --overlap $ov > "$OUT/w/gd_$ov.md" 2>&1
  echo "[gd $ov exit $?]" >> "$OUT/w/gd_$ov.md"
done
cd ..
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$OUT/w"
for f in gla_off gla_on gd_off gd_on; do tar xzf "$OUT/all.tar.gz" -O w/$f.md | grep -E "^####|^\| [0-9]|exit"; done
