"""fla-check: numerical-consistency harness for linear-attention Triton kernels."""

__version__ = "0.1.0"
