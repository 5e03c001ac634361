"""Let third-party autotuned Triton kernels run under the CPU interpreter (TRITON_INTERPRET=1).

`triton.autotune` benchmarks every config through `driver.active`, which does not exist in
the interpreter ("0 active drivers"). Pinning the autotuner to the first config that survives
the kernel's own `early_config_prune` skips benchmarking entirely (Triton's single-config path).
The pin is process-wide because autograd runs backward kernels outside the provider's call;
`unpin_autotune` restores Triton's behaviour (configs already chosen stay cached). The
implementation is shared with the built-in kernels: :mod:`fla_check.kernels.common.autotune`.
"""
from __future__ import annotations

from fla_check.kernels.common.autotune import (  # noqa: F401 (this module's API)
    _first_config, is_interpreter, is_pinned, pin_autotune, pinned_autotune, unpin_autotune, unpinned_autotune,
)
