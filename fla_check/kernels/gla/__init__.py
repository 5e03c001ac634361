"""Built-in GLA kernels: `recurrent` (per-step), `chunk` (fla's chunk_gla algorithm),
`fused_chunk` (the legacy q*exp(G) / k*exp(-G) design, forward only)."""
