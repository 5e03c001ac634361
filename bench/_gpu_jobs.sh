# Shared by bench/gpu_calibration.sh and bench/gpu_features.sh (sourced after OUT and CAP are set):
# the environment, WORK (a temporary folder of logs and reports), versions.txt, job() and finish().
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100 PYTHONPATH=$PWD:${PYTHONPATH:-}
P="--provider fla_check.providers.fla:provider"
FLA="--modes fla:recurrent,fla:chunk"
{
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))"
  python3 -c "import fla; print('fla-core', fla.__version__)" 2>&1 | tail -1
  git rev-parse HEAD 2>/dev/null || true
} > "$WORK/versions.txt" 2>&1

job() {  # job NAME "ENV=VAL ..." fla-check-args...   (run jobs also write WORK/NAME.report.json)
  local name=$1 envs=$2; shift 2
  [[ $name =~ ${ONLY:-.} ]] || return 0
  local report=()
  [ "$1" = run ] && report=(--report "$WORK/$name.report.json")
  (
    start=$(date +%s)
    env $envs timeout -s INT -k 30 "$CAP" python3 -m fla_check.cli "$@" "${report[@]}" --json \
      > "$WORK/$name.json" 2> "$WORK/$name.log"
    echo "[$name exit $? in $(( $(date +%s) - start )) s] fla-check $*" >> "$WORK/$name.log"
  ) &
}

finish() {  # finish ARCHIVE: after `wait`, summary.md, exits.txt, versions.txt and WORK as ARCHIVE under OUT
  python3 bench/calibration_summary.py "$WORK"/*.report.json > "$WORK/summary.md" 2>&1
  for f in "$WORK"/*.log; do tail -n 3 "$f"; done > "$WORK/exits.txt"
  mkdir -p "$OUT"
  cp "$WORK/summary.md" "$WORK/exits.txt" "$WORK/versions.txt" "$OUT/"
  tar czf "$OUT/$1" -C "$WORK" .
}
