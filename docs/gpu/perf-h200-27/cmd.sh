#!/usr/bin/env bash
# perf-h200-27: where a warm batched case's host time goes (cProfile, gla bf16 T = 256 and 1024, one case's share
# of 64), then goal 3's cases/s A/B: the tree before this session (0e85475, carried as .old/) against this one
# (poisoned allocations through a dispatch mode), 192 cases per T.
#   bash docs/gpu/perf-h200-27/cmd.sh OUT_DIR      (carry: .old)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w"
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
for T in 1024 256; do
  timeout -k 10 100 python3 bench/host_profile.py --ops gla --dtypes bfloat16 --T $T --H 4 --K 64 \
    --modes recurrent,chunk,fused_chunk --batch 64 --calls 2 --top 45 > "$OUT/w/host_gla_$T.md" 2>&1
  echo "[host $T exit $?]" >> "$OUT/w/host_gla_$T.md"
done
date -u
for tree in old new; do
  pp=""; [ $tree = old ] && pp="$PWD/.old"
  PYTHONPATH=$pp timeout -s INT -k 10 120 python3 bench/harness_throughput.py --out "$OUT/w/ht_$tree" --budget 100 \
    --ops gla,gated_delta --no-search --no-scaling --rate-T 64,256,1024 --rate-cases 192 --rate-batch 64 \
    > "$OUT/w/ht_$tree.log" 2>&1
  echo "[ht $tree exit $?]" >> "$OUT/w/ht_$tree.log"
  PYTHONPATH=$pp python3 -c "import fla_check; print('fla_check from', fla_check.__file__)" >> "$OUT/w/ht_$tree.log" 2>&1
done
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$OUT/w"
for f in host_gla_1024 host_gla_256; do tar xzf "$OUT/all.tar.gz" -O w/$f.md | head -12; done
for t in old new; do tar xzf "$OUT/all.tar.gz" -O w/ht_$t.log | grep -E "rate |exit|from"; done
