"""The fused selective scan in Triton (Mamba §3.3.2): forward and backward kernels, a custom op, autograd.

    from minimamba.kernels.selective_scan import selective_scan_fn
    y = selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)

Same signature and semantics as :func:`minimamba.scan.selective_scan_ref`. ``fwd.py`` and ``bwd.py`` hold
the kernels (read them top to bottom), ``op.py`` the custom op, ``README.md`` the recurrence and the
bytes-moved argument, ``RESULTS.md`` what the H200 measured.
"""

import minimamba  # noqa: F401  (switches Triton to its interpreter on CPU before triton is imported)

from .op import selective_scan_fn

__all__ = ["selective_scan_fn"]
