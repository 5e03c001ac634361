"""Seconds of one mutant's full ci search on the CPU interpreter, with parts of the interpreter fast path removed.

    TRITON_INTERPRET=1 python bench/selftest_search_time.py --id gla.recurrent.unwritten-state
    TRITON_INTERPRET=1 python bench/selftest_search_time.py --id gla.recurrent.unwritten-state \
        --without overflow,operands

What ``tests/commands/test_selftest.py::test_the_ci_search_catches_every_bug_class`` runs for the
mutant (no shrinking), timed. ``--without`` restores the interpreter's own int32 overflow check
(``overflow``) and operand type checking (``operands``) of ``fla_check.interpreter_fastpath``; the
result line (status, examples, verdict) must not change.
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--id", required=True, help="a mutant id of fla_check.commands.selftest.mutants")
    p.add_argument("--without", default="", help="comma-separated: overflow, operands")
    args = p.parse_args()
    from fla_check.backend import get_backend

    get_backend()  # installs the fast path on the interpreter
    from triton.runtime import interpreter

    from fla_check.commands.selftest import suite
    from fla_check.commands.selftest.engine import run_mutant
    from fla_check.commands.selftest.mutants import MUTANTS

    patched = {"overflow": "binary_op_sanitize_overflow_impl", "operands": "binary_op_type_checking_impl"}
    for part in filter(None, args.without.split(",")):
        delattr(interpreter.interpreter_semantic, patched[part])  # the class's own method again
    suite.SHRINK_CASES = 0
    (mutant,) = [m for m in MUTANTS if m.id == args.id]
    start = time.perf_counter()
    (result,) = run_mutant(mutant, profile="ci")
    print(f"{args.id} without [{args.without}]: {time.perf_counter() - start:.1f} s, {result.status}, "
          f"{result.examples} examples, {result.verdict}")


if __name__ == "__main__":
    main()
