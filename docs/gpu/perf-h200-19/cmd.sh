#!/usr/bin/env bash
# perf-h200-19: where a warm case's time goes at T = 256 and 1024 with check_many (64 cases per batch)
#   bash docs/gpu/perf-h200-19/cmd.sh OUT_DIR
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w"
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L
W=$OUT/w
cd bench
timeout 200 python3 op_counts.py --ops gla,gated_delta --dtypes float32 --T 256,1024 --H 4 --K 64 --batch 64 --time 2 \
  --sync > $W/oc.log 2>&1; echo "[oc exit $?]" >> $W/oc.log
timeout 120 python3 op_counts.py --ops gla --modes recurrent,chunk,fused_chunk --dtypes bfloat16 --T 1024 --H 4 --K 64 \
  --batch 64 --time 2 --sync > $W/oc_bf16.log 2>&1; echo "[oc bf16 exit $?]" >> $W/oc_bf16.log
timeout 150 python3 host_profile.py --ops gated_delta,gla --dtypes float32 --T 1024 --H 4 --K 64 --batch 64 --calls 1 \
  --top 30 > $W/hp1024.log 2>&1; echo "[hp exit $?]" >> $W/hp1024.log
cd ..
tar czf $OUT/all.tar.gz -C $OUT w && rm -rf $W
tar xzf $OUT/all.tar.gz -O w/oc.log | grep -v "^- " | grep -v "^$" | head -60
tar xzf $OUT/all.tar.gz -O w/oc_bf16.log | grep -v "^- " | grep -v "^$" | head -20
tar xzf $OUT/all.tar.gz -O w/hp1024.log | head -60
