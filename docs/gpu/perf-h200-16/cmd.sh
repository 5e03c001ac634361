#!/usr/bin/env bash
# perf-h200-16: every issue-17 goal in one call (bench/gpu_goals.sh phases 1, 2, 3)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/fla_core-0.6.0-py3-none-any.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
nvidia-smi -L
git log --oneline -1
git status --short | head -5
HT_BUDGET=60 HT_BATCH=64 TD_OPS=gated_delta,gla TD_WARMUPS=background TD_BUDGET=150 TD_CHILD=60 KP_CAP=150 ST_CAP=230 CI_CAP=45 bash bench/gpu_goals.sh $OUT/g 15
ls $OUT/g
cat $OUT/g/summary.md
rm -rf $OUT/g/work
