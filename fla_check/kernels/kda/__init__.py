"""KDA (Kimi Delta Attention) kernels: the delta rule with a per-key-channel log gate."""
