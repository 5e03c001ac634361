#!/usr/bin/env bash
# perf-h200-38: the fourteenth session's code on one H200, in two device calls (the whole suite takes longer
# than one call on a 16-core host):
#   a: gla's recurrent forward at V-blocks 16 / 8 / 4 (bench/recurrent_prefetch.py), goal 3's warm cases/s
#      (bench/harness_throughput.py, 192 cases per T, on a quiet machine), this tree then the tree before as .old,
#      then the tests of tests/engine, tests/commands, tests/verdict and tests/references;
#   b: the rest of the suite.
#   bash docs/gpu/perf-h200-38/cmd.sh a|b OUT_DIR   (carry .whl and .old: `git archive a6e310c fla_check | tar -x -C .old`)
PART=${1:?usage: cmd.sh a|b OUT_DIR}
OUT=${2:?usage: cmd.sh a|b OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
python3 -c "import torch, triton, fla; print('torch', torch.__version__, 'triton', triton.__version__, 'fla-core', fla.__version__)"
FIRST="tests/engine tests/commands tests/verdict tests/references"
if [ "$PART" = a ]; then
  timeout -k 10 60 python3 bench/recurrent_prefetch.py --T 256,1024 --BV 16,8,4 > "$W/gla_bv.md" 2>&1
  echo "[gla bv exit $?]" >> "$W/gla_bv.md"; cat "$W/gla_bv.md"
  for r in new old; do
    pp=/tmp/site; [ $r = old ] && pp="$PWD/.old:/tmp/site"
    PYTHONPATH=$pp timeout -s INT -k 10 90 python3 bench/harness_throughput.py --out "$W/ht_$r" --budget 80 \
      --ops gla,gated_delta --no-search --no-scaling --rate-T 64,256,1024 --rate-cases 192 --rate-batch 64 \
      > "$W/ht_$r.log" 2>&1
    echo "[ht $r exit $?]" >> "$W/ht_$r.log"; echo "== $r"; grep -E "rate |exit" "$W/ht_$r.log"
  done
  date -u
  bash bench/gpu_pytest.sh "$W/pytest" 330 14 $FIRST
else
  bash bench/gpu_pytest.sh "$W/pytest" 470 15 $(for d in $FIRST; do echo "--ignore=$d"; done)
fi
gzip -f "$W/pytest/pytest.log"
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$W"
