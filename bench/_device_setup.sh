# Shared by docs/gpu/*/cmd.sh from perf-h200-52 on (sourced from the repository root on the device): fla-core and
# einops from the carried wheels (.whl/, git-ignored: `pip download -q fla-core==0.6.0 einops==0.8.2
# --no-deps -d .whl` here, carried to the device) into /tmp/site, this tree installed editable, plain
# unbuffered 100-column output, the GPU and the time. PYTHONPATH is the caller's: /tmp/site, with .old/ before it
# for an A/B run against an older tree. A stale mutant catalog stops the call (bench/_preflight.sh).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
export PYTHONUNBUFFERED=1 NO_COLOR=1 COLUMNS=100
. bench/_preflight.sh
preflight
nvidia-smi -L; date -u
