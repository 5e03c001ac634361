#!/usr/bin/env bash
# One batch of 16 bf16 cases' emulated baselines at T = 1024 (bench/baseline_batch.py, 5 calls) per op, on the tree
# in .old/ (e.g. `git archive REV fla_check | tar -x -C .old`) and then on this one, on the device: the A/B of a
# change to the emulation. Prints one line per (tree, op); the tables go to OUT_DIR/bb_OP_{old,new}.md.
# AB_TREES (default "old new") names the trees in turn: "new" is this one, any other NAME the tree in .NAME/.
#   bash bench/ab_baselines.sh OUT_DIR OP...     (after bench/_device_setup.sh; gla runs chunk and fused_chunk)
OUT=${1:?usage: bash bench/ab_baselines.sh OUT_DIR OP...}
shift
mkdir -p "$OUT"
for tree in ${AB_TREES:-old new}; do
  if [ "$tree" = new ]; then export PYTHONPATH=/tmp/site; else export PYTHONPATH=$PWD/.$tree:/tmp/site; fi
  for op in "$@"; do
    modes=chunk; [ "$op" = gla ] && modes=chunk,fused_chunk
    timeout -k 10 90 python3 bench/baseline_batch.py --op "$op" --T 1024 --modes $modes --cases 16 --calls 5 \
      > "$OUT/bb_${op}_$tree.md" 2>&1; echo "[exit $?]" >> "$OUT/bb_${op}_$tree.md"
    echo "$tree $op: $(grep -h '^| 1024\|Error' "$OUT/bb_${op}_$tree.md" | tr '\n' ' ')"
  done
done
