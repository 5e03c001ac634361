# Sourced by bench/_device_setup.sh (every docs/gpu/*/cmd.sh from perf-h200-52 on), after this tree is installed:
#   preflight   exit 2 from the calling script when the tree's selftest mutant catalog is stale: a function a mutant
#               rewrites has changed since its review (`python3 -m fla_check.commands.selftest.mutants --check`,
#               what tests/commands/test_mutants.py holds CPU CI to). Such a tree spends a goals call on a selftest
#               with broken mutants (perf-h200-61 goals3: 123 caught, 1 broken, after an edit to a kernel's launch).
#               PREFLIGHT=0 skips it (a probe of an edited tree on purpose).
preflight() {
  [ "${PREFLIGHT:-1}" = 1 ] || return 0
  if ! python3 -m fla_check.commands.selftest.mutants --check; then
    echo "preflight: stopped before any GPU work (PREFLIGHT=0 runs anyway)"
    exit 2
  fi
}
