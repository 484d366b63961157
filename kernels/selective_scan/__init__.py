"""The fused selective scan in Triton (Mamba §3.3.2): forward and backward kernels, a custom op, autograd.

    from minimamba.kernels.selective_scan import selective_scan_fn
    y = selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)

Same signature and semantics as :func:`minimamba.scan.selective_scan_ref`. ``fwd.py``, ``fwd_time.py`` and
``bwd.py`` hold the kernels (read them top to bottom), ``common.py`` what they share, ``op.py`` the custom
op, ``fast_launch.py`` the host-time layer (``MINIMAMBA_FAST_LAUNCH=0`` switches it off), ``README.md`` the
math, the bytes and the layout, ``RESULTS.md`` what the GPU measured (``bench.py``).
"""

import minimamba  # noqa: F401  (switches Triton to its interpreter on CPU before triton is imported)

from .op import selective_scan_fn

__all__ = ["selective_scan_fn"]
