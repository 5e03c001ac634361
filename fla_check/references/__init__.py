"""Step-wise recurrences: the float64 ground truth and the same-dtype precision baseline.

Deliberately simple: one Python loop over time steps, vectorised over batch and heads,
never a cumulative sum of gates. Differentiable under torch autograd.
"""
from fla_check.references.recurrence import (
    delta_step,
    gated_delta_step,
    gla_step,
    kda_step,
    naive_baseline,
    reference,
    run_recurrence,
    simple_gla_step,
)

__all__ = [
    "delta_step",
    "gated_delta_step",
    "gla_step",
    "kda_step",
    "naive_baseline",
    "reference",
    "run_recurrence",
    "simple_gla_step",
]
