#!/usr/bin/env bash
# perf-h200-62 (prepared in the twenty-fourth session, run in the twenty-fifth), on ONE H200, back to back (carry .whl):
#   bash docs/gpu/perf-h200-62/cmd.sh goals OUT_DIR   every issue-17 goal in one call on the final tree: perf-h200-61's
#                                                     goals3 (three processes for goal 3), whose only miss was a mutant
#                                                     its own tree's edit broke; about 400-500 s
#                                                     (the twenty-fourth session's final fla_check: aae869630f77 in
#                                                     the summaries' headers, `python3 bench/_common.py --digest`)
#   bash docs/gpu/perf-h200-62/cmd.sh rest OUT_DIR    the suite but the four directories perf-h200-57 part a ran on
#                                                     6933030 (tests/engine, commands, verdict, references), 480 s cap
PART=${1:?usage: cmd.sh goals|rest OUT_DIR}
OUT=${2:?usage: cmd.sh goals|rest OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
export PYTHONPATH=/tmp/site
source bench/_device_setup.sh
if [ "$PART" = goals ]; then
  . bench/_goals_call.sh
  goals_call "$W" 3
else
  bash bench/gpu_pytest.sh "$W/pytest" 480 15 --ignore=tests/engine --ignore=tests/commands --ignore=tests/verdict \
    --ignore=tests/references
  gzip -f "$W/pytest/pytest.log"
fi
date -u
tar czf "$OUT/all_$PART.tar.gz" -C "$OUT" w && rm -rf "$W"
