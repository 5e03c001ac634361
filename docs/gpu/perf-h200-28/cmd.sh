#!/usr/bin/env bash
# perf-h200-28: goal 3's warm cases/s, A/B on one host, twice each, interleaved:
#  (1) T = 64: the tree before this session (0e85475, carried as .old/) against this one (poisoned allocations
#      through a dispatch mode);
#  (2) T = 256, 1024: this tree with the baselines' thread at BEHIND_SHARE 0.5 (as before) against the default 1.0.
#   bash docs/gpu/perf-h200-28/cmd.sh OUT_DIR      (carry: .old)
OUT=${1:?usage: cmd.sh OUT_DIR}
mkdir -p "$OUT/w"
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L; date -u
ht() {  # ht NAME ARGS...: one harness_throughput rate run, log in w/NAME.log
  local name=$1; shift
  timeout -s INT -k 10 150 python3 bench/harness_throughput.py --out "$OUT/w/$name" --budget 140 --ops gla,gated_delta \
    --no-search --no-scaling --rate-cases 192 --rate-batch 64 "$@" > "$OUT/w/$name.log" 2>&1
  echo "[$name exit $?]" >> "$OUT/w/$name.log"
}
for r in 1 2; do
  PYTHONPATH="$PWD/.old" ht t64_old_$r --rate-T 64
  (cd bench && PYTHONPATH="$PWD/../.old" python3 -c "import fla_check; print('old run imports', fla_check.__file__)") \
    >> "$OUT/w/t64_old_$r.log" 2>&1
  ht t64_new_$r --rate-T 64
done
date -u
for r in 1 2; do
  ht share05_$r --rate-T 256,1024 --rate-behind-share 0.5
  ht share10_$r --rate-T 256,1024
done
date -u
tar czf "$OUT/all.tar.gz" -C "$OUT" w && rm -rf "$OUT/w"
for f in t64_old_1 t64_new_1 t64_old_2 t64_new_2 share05_1 share10_1 share05_2 share10_2; do
  echo "== $f"; tar xzf "$OUT/all.tar.gz" -O w/$f.log | grep -E "rate |exit|imports"
done
