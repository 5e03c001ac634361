#!/usr/bin/env bash
# perf-h200-53: two device calls on the tree that cuts the verdict kernels' compiling (perf-h200-52: the cold first
# failure and the kda ci profile slowed by it): their flags runtime (initial state, keep, operand rounding; the
# per-key decay a bool, no longer K), the scores and delta kernels only from 16 chunks.
#   check: the verdict kernels' tests on the GPU; one batch of 16 bf16 cases' baselines at T = 1024 against the
#          tree before (.old = `git archive 98a1fe5 fla_check`); bench/delta_kernel_variants.py (warps, stages,
#          value block: compile and run time; K = 128 at 64-token chunks).
#   goals: goal 1's cold first failure (time_to_detect, background warm-up) and the ci profile of every op, cold.
#   both: check, then goals (one call: a device machine goes cold 30 s after a call).
#   bash docs/gpu/perf-h200-53/cmd.sh check|goals|both OUT_DIR   (carry .whl; check also .old)
PART=${1:?usage: cmd.sh check|goals|both OUT_DIR}
OUT=${2:?usage: cmd.sh check|goals|both OUT_DIR}
mkdir -p "$OUT/w" && OUT=$(cd "$OUT" && pwd)
W=$OUT/w
source bench/_device_setup.sh
export PYTHONPATH=/tmp/site
goals() {
  timeout -s INT -k 10 130 python3 bench/time_to_detect.py --out "$W/td" --budget 120 --first-ops gated_delta,gla \
    --first-warmups background --mask-ops '' --mutants none --min-entry-s 8 --child-timeout 45 > "$W/td.log" 2>&1
  echo "[time_to_detect exit $?]" >> "$W/td.log"; tail -n 12 "$W/td/time_to_detect.md"
  bash bench/gpu_ci_profile.sh "$W/ci" 45 > "$W/ci_profile.log" 2>&1
  cat "$W/ci/ci_profile.md"; grep -h "warm-up\|cases in" "$W"/ci/ci-*.log
}
check() {
  timeout -k 10 150 bash bench/gpu_pytest.sh "$W/pytest" 140 8 tests/verdict/test_delta_kernel.py \
    tests/verdict/test_passing_kernel.py tests/verdict/test_scores_kernel.py tests/verdict/test_noise_kernel.py \
    tests/verdict/test_kernel_specialization.py tests/verdict/test_baselines.py > "$W/pytest.out" 2>&1
  tail -n 3 "$W/pytest.out"
  for tree in old new; do
    if [ $tree = old ]; then export PYTHONPATH=$PWD/.old:/tmp/site; else export PYTHONPATH=/tmp/site; fi
    for op in gla gated_delta kda; do
      modes=chunk; [ $op = gla ] && modes=chunk,fused_chunk
      timeout -k 10 90 python3 bench/baseline_batch.py --op $op --T 1024 --modes $modes --cases 16 --calls 5 \
        > "$W/bb_${op}_$tree.md" 2>&1; echo "[exit $?]" >> "$W/bb_${op}_$tree.md"
      echo "$tree $op: $(grep -h '^| 1024\|Error' "$W/bb_${op}_$tree.md" | tr '\n' ' ')"
    done
  done
  export PYTHONPATH=/tmp/site
  timeout -k 10 150 python3 bench/delta_kernel_variants.py > "$W/variants.md" 2>&1; cat "$W/variants.md"
  gzip -f "$W/pytest/pytest.log"
}
case $PART in check) check ;; goals) goals ;; *) check; date -u; goals ;; esac
date -u
tar czf "$OUT/all_$PART.tar.gz" -C "$OUT" w && rm -rf "$W"
