#!/usr/bin/env bash
# The test suite on a GPU host, every result on its own line so a run cut by its cap still names its
# failures (run 5's -q summary was lost to xdist's teardown after the SIGINT).
#   bash bench/gpu_pytest.sh OUT_DIR [CAP_SECONDS] [WORKERS] [TEST_PATHS...]   (no paths: the whole suite)
# Writes OUT_DIR/pytest.log (the -v lines), OUT_DIR/failed.txt (FAILED/ERROR lines), OUT_DIR/pip.txt and
# OUT_DIR/gpu_memory.csv (nvidia-smi every 10 s), OUT_DIR/progress.csv (result lines every 10 s).
set -u
OUT=${1:?usage: bash bench/gpu_pytest.sh OUT_DIR [CAP_SECONDS] [WORKERS]}
CAP=${2:-500}
WORKERS=${3:-16}
shift $(( $# < 3 ? $# : 3 ))
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))" > "$OUT/pip.txt" 2>&1
python3 -c "import fla; print('fla-core', fla.__version__)" >> "$OUT/pip.txt" 2>&1
start=$(date +%s)
# GPU memory every 10 s while the suite runs (pytest-h200-13: two tests failed under memory pressure nobody recorded)
nvidia-smi --query-gpu=timestamp,index,memory.used,memory.total --format=csv,noheader -l 10 > "$OUT/gpu_memory.csv" 2>&1 &
watch=$!
# results so far every 10 s (epoch seconds, result lines): when the last test ended, against when pytest exited
(while sleep 10; do echo "$(date +%s),$(grep -cE ' (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS) ' "$OUT/pytest.log")"; done) \
  > "$OUT/progress.csv" 2>/dev/null &
progress=$!
timeout -s INT -k 30 "$CAP" python3 -m pytest -v -p no:cacheprovider -n "$WORKERS" -rfE "$@" > "$OUT/pytest.log" 2>&1
echo "[pytest exit $? in $(( $(date +%s) - start )) s] python3 -m pytest -v -p no:cacheprovider -n $WORKERS -rfE $*" >> "$OUT/pytest.log"
kill "$watch" "$progress" 2>/dev/null
grep -E "(FAILED|ERROR) tests/" "$OUT/pytest.log" | sed 's/^\[gw[0-9]*\] \[ *[0-9]*%\] //' | sort -u > "$OUT/failed.txt"
grep -cE " PASSED " "$OUT/pytest.log" | sed 's/^/passed lines: /'
tail -n 3 "$OUT/pytest.log"; cat "$OUT/failed.txt"
