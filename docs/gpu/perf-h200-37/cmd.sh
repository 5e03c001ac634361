#!/usr/bin/env bash
# perf-h200-37: the delta rule's recurrent forward loading ahead (16-wide V-blocks on a GPU), on one H200: its
# kernel and mutant tests, the delta / gated_delta recurrent mutants through `fla-check selftest`, its us per
# call (bench/delta_recurrent_speed.py, this tree and the tree before as .old), then goal 3's warm cases/s, this
# tree and .old interleaved (192 cases per T).
#   bash docs/gpu/perf-h200-37/cmd.sh OUT_DIR   (carry .old and .whl: `git archive a6e310c fla_check | tar -x -C .old`)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
( timeout -k 10 200 python3 -m pytest -q -p no:cacheprovider -n 6 tests/kernels tests/commands/test_mutants.py \
    tests/engine/test_batched.py -k "delta or mutants or batched" > "$W/tests.log" 2>&1
  echo "[pytest exit $?]" >> "$W/tests.log" ) &
( timeout -k 10 200 fla-check selftest --mutants delta.recurrent,gated_delta.recurrent --jobs 8 --device cuda \
    > "$W/selftest.log" 2>&1
  echo "[selftest exit $?]" >> "$W/selftest.log" ) &
wait
tail -3 "$W/tests.log"; tail -30 "$W/selftest.log"
date -u
timeout -k 10 60 python3 bench/delta_recurrent_speed.py --T 256,1024 --BV 64,32,16,8 > "$W/speed_new.md" 2>&1
echo "[speed new exit $?]" >> "$W/speed_new.md"; cat "$W/speed_new.md"
PYTHONPATH=$PWD/.old timeout -k 10 60 python3 bench/delta_recurrent_speed.py --T 256,1024 > "$W/speed_old.md" 2>&1
echo "[speed old exit $?]" >> "$W/speed_old.md"; cat "$W/speed_old.md"
date -u
for r in new1 old1 new2 old2; do
  pp=""; [ ${r%?} = old ] && pp="$PWD/.old"
  PYTHONPATH=$pp timeout -s INT -k 10 90 python3 bench/harness_throughput.py --out "$W/ht_$r" --budget 80 \
    --ops gla,gated_delta --no-search --no-scaling --rate-T 64,256,1024 --rate-cases 192 --rate-batch 64 \
    > "$W/ht_$r.log" 2>&1
  echo "[ht $r exit $?]" >> "$W/ht_$r.log"
  echo "== $r"; grep -E "rate |exit" "$W/ht_$r.log"
done
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$W"
