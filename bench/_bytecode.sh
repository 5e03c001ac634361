# Shared by bench/gpu_goals.sh and bench/gpu_startup_profile.sh (sourced):
#   use_bytecode_cache FILE   times `import torch, triton` without a Python bytecode cache, then gives Python a
#                             writable one (PYTHONPYCACHEPREFIX, exported), fills it once and times the import again;
#                             both times and whether torch ships .pyc files go to FILE. BYTECODE=0: nothing.
# A pip-installed environment has its .pyc files. The H200 device's torch has none and sets
# PYTHONDONTWRITEBYTECODE=1, so every timed process compiled torch's sources again (perf-h200-9's warm profile:
# 913 sources, 4.1 s; `import torch, triton` 3.5-4.4 s without the cache, 1.6-2.1 s with it).
import_s() { local s=$EPOCHREALTIME; python3 -c "import torch, triton" > /dev/null 2>&1; awk "BEGIN{printf \"%.2f\", $EPOCHREALTIME - $s}"; }
use_bytecode_cache() {
  [ "${BYTECODE:-1}" = 1 ] || return 0
  {
    python3 -c "import sys, os, torch; print('dont_write_bytecode', sys.flags.dont_write_bytecode, 'prefix', os.environ.get('PYTHONPYCACHEPREFIX')); print(torch.__file__)"
    ls -d "$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')/__pycache__" 2>&1 | head -1
    echo "import torch, triton, no prefix: $(import_s) s, $(import_s) s"
    export PYTHONPYCACHEPREFIX=${PYTHONPYCACHEPREFIX:-/tmp/fla-check-pyc}
    unset PYTHONDONTWRITEBYTECODE
    python3 -c "import torch, triton, hypothesis, rich, click, numpy, fla_check.cli, fla_check.engine.search" 2>&1 | tail -1
    python3 -c "import fla" > /dev/null 2>&1
    echo "import torch, triton, PYTHONPYCACHEPREFIX filled: $(import_s) s, $(import_s) s"
  } > "$1" 2>&1  # a brace group: its export and unset stay in this shell
}
