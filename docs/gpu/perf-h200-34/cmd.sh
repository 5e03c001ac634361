#!/usr/bin/env bash
# perf-h200-34: the batched float64 reference as a replayed CUDA graph of 32 steps, with batched products for
# its readouts and addcmul updates, on one H200: the reference and graph tests on the GPU (bits of the replay
# against the eager loop), the reference's ms per case (bench/reference_loop.py: graphs, --eager, and the tree
# before as .old), then goal 3's warm cases/s, this tree and .old interleaved (192 cases per T).
#   bash docs/gpu/perf-h200-34/cmd.sh OUT_DIR     (carry .old: `git archive b9a0eeb fla_check | tar -x -C .old`)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
timeout -k 10 150 python3 -m pytest -q -p no:cacheprovider -n 8 tests/references tests/engine/test_batched.py \
  tests/engine/test_judge_unchanged.py > "$W/tests.log" 2>&1
echo "[pytest exit $?]" >> "$W/tests.log"; tail -3 "$W/tests.log"
for variant in graphs eager old; do
  extra=""; pp=""
  [ $variant = eager ] && extra="--eager"
  [ $variant = old ] && pp="$PWD/.old"
  PYTHONPATH=$pp timeout -k 10 120 python3 bench/reference_loop.py --ops gla,gated_delta --T 256,1024 --cases 64 \
    --calls 3 $extra > "$W/ref_$variant.md" 2>&1
  echo "[reference_loop $variant exit $?]" >> "$W/ref_$variant.md"; cat "$W/ref_$variant.md"
done
date -u
for r in new1 old1 new2 old2; do
  pp=""; [ ${r%?} = old ] && pp="$PWD/.old"
  PYTHONPATH=$pp timeout -s INT -k 10 110 python3 bench/harness_throughput.py --out "$W/ht_$r" --budget 100 \
    --ops gla,gated_delta --no-search --no-scaling --rate-T 64,256,1024 --rate-cases 192 --rate-batch 64 \
    > "$W/ht_$r.log" 2>&1
  echo "[ht $r exit $?]" >> "$W/ht_$r.log"
  echo "== $r"; grep -E "rate |exit" "$W/ht_$r.log"
done
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$W"
