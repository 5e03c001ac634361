"""Simple GLA (one scalar log-gate per head, RetNet/Mamba2-style decay): recurrent and chunk kernels."""
