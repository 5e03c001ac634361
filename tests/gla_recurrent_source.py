"""Lines of the built-in gla_recurrent_fwd_kernel that tests rewrite into mutants of their own."""

STORE_O = "        tl.store(p_o, b_o.to(p_o.dtype.element_ty), mask=m_v & (o_v * 0 + t > 0))\n"
TIMES_ONE = STORE_O.replace("b_o.to(", "(b_o * 1.0).to(")  # an equivalent rewrite: nothing can catch it
