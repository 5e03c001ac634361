"""Every error fla-check raises on purpose, under one root: :class:`FlaCheckError`.

Each keeps the stdlib base it always had (``except ValueError`` around ``get_op`` still
works). :attr:`FlaCheckError.usage` says how the CLI ends when one reaches it: True (the
default) is a usage error, exit 2, one line on stderr; False is a failure of fla-check itself,
exit 3 with the traceback (``cli.py`` maps both, in one place).

Not here: search's private control-flow signals (``ModeFailure``, ``_BudgetSpent``), which
never leave :mod:`fla_check.engine.search`.
"""
from __future__ import annotations


class FlaCheckError(Exception):
    """Root of fla-check's errors."""

    usage: bool = True  # the CLI: True -> usage error (exit 2), False -> internal error (exit 3)


class UsageError(FlaCheckError, ValueError):
    """A command-line value that cannot be used (e.g. ``--examples 0``)."""


# -- configuration: names, cases, declarations, backend ------------------------------------
class BackendError(FlaCheckError, RuntimeError):
    """The requested backend cannot be used in this process."""


class UnknownNameError(FlaCheckError, ValueError):
    """An op or mode name that is not registered."""


class ModeRegistrationError(FlaCheckError, ValueError):
    """A mode that cannot be added to the registry (reserved or malformed name)."""


class DuplicateModeError(ModeRegistrationError):
    """A different mode is already registered under the same qualified name."""


class PresetError(FlaCheckError, ValueError):
    """An unknown model preset, or one combined with options it fixes (usage error)."""


class CaseError(FlaCheckError, ValueError):
    """An inconsistent case configuration (or an unparseable mask fill)."""


class DeclarationError(FlaCheckError, ValueError):
    """A malformed arithmetic declaration."""


class ShardError(FlaCheckError, ValueError):
    """A malformed ``i/n`` shard spec."""


class RepeatPolicyError(FlaCheckError, ValueError):
    """An unknown determinism-check policy."""


# -- providers ----------------------------------------------------------------------------
class InvarianceSpecError(FlaCheckError, ValueError):
    """An unknown invariance check or scope (``--invariance``, ``FLA_CHECK_INVARIANCE``)."""


class ProviderError(FlaCheckError):
    """Base class: a provider could not be found, loaded or registered."""


class ProviderSpecError(ProviderError, ValueError):
    """A malformed provider spec or provider definition."""


class ProviderNotFoundError(ProviderError, LookupError):
    """No module, attribute or entry point matches the spec."""


class ProviderTypeError(ProviderError, TypeError):
    """The spec names an object that is neither a Provider nor a factory returning one."""


class ProviderUnavailableError(ProviderError):
    """The provider exists but its optional dependencies are missing (message says what to install)."""


class ProviderOpError(ProviderError, UnknownNameError):
    """A provider contributes modes to an op fla-check does not know."""


class DuplicateProviderModeError(ProviderError, DuplicateModeError):
    """A different mode is already registered under the same qualified name."""


class FlaSetupError(ProviderError):
    """fla was imported before fla-check could pin its Triton path."""


class FlaUnguardedError(ProviderError, UsageError):
    """An unknown value of ``FLA_CHECK_FLA_UNGUARDED`` (the fla guards fla-check may lift), or a
    guard this fla version no longer has where fla-check lifts it."""


# -- commands -----------------------------------------------------------------------------
class ReportError(FlaCheckError, ValueError):
    """A report file that cannot be read: unreadable, not JSON, not a report, or a schema version
    this fla-check does not know."""


class GateError(FlaCheckError, ValueError):
    """A report that cannot be gated or compared (wrong kind, other op, unknown mode)."""


class SweepError(FlaCheckError, ValueError):
    """An op or a value list the sweep cannot run (usage error)."""


class SelectionError(FlaCheckError, ValueError):
    """A mutant id, id prefix or bug class that selects nothing."""


class PlotUnavailable(FlaCheckError, RuntimeError):
    """No heatmap can be drawn (matplotlib missing)."""


# -- fla-check's own failures (exit 3 when they reach the CLI) ------------------------------
class EmulationError(FlaCheckError, RuntimeError):
    """The emulation produced NaN/Inf where the reference is finite (a bug of fla-check)."""

    usage = False


class GradientError(FlaCheckError, RuntimeError):
    """A mode's outputs cannot be differentiated (no autograd graph); the runner reports it as
    the mode's ERROR."""

    usage = False


class VariantUnsupported(FlaCheckError, RuntimeError):
    """A UT variant cannot run here (missing package, backend limitation); str() is the reason."""

    usage = False


class MutationError(FlaCheckError, ValueError):
    """A mutant's rewrite cannot be applied: its function is missing, or a pattern does not match
    exactly once inside it (a stale catalog)."""

    usage = False


class ConfigPolicyError(UsageError):
    """A bad ``--configs`` policy or ``--config KERNEL:INDEX`` (unknown kernel, index out of range)."""


class IsolationOptionError(UsageError):
    """Bad isolation options: an unknown ``--isolation`` kind, a ``--case-timeout`` <= 0 or one
    without process isolation."""


class IsolationError(FlaCheckError, RuntimeError):
    """An isolation worker process could not be started (fla-check's failure, exit 3)."""

    usage = False


class HarnessOutOfMemory(FlaCheckError, RuntimeError):
    """fla-check's own work on a case (inputs, float64 reference, gradients, baseline emulation,
    judging) ran out of memory: not a kernel's failure, so a run stops there instead of shrinking
    the case (exit 3, the report of the cases before it kept). `stage` says what ran out,
    `elements` the case's input elements; a mode that runs out of memory is that mode's ERROR."""

    usage = False

    def __init__(self, message: str, stage: str = "", elements: int = 0):
        super().__init__(message)
        self.stage, self.elements = stage, elements


class RunInterrupted(FlaCheckError, RuntimeError):
    """Ctrl-C or SIGTERM stopped a run outside the search's own handling; the message says what
    report was left. The CLI ends with exit 130 (interrupted), not 2 or 3."""

    usage = False
