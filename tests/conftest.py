"""Suite-wide settings: runs under test never skip a warm-up because an earlier run (of this suite,
on this machine's Triton cache) recorded its plan as compiled (fla_check.engine.warm_ledger); the
ledger's own tests turn it back on."""
import os

os.environ.setdefault("FLA_CHECK_WARM_LEDGER", "off")
