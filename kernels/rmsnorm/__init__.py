"""Residual add + RMSNorm in one Triton kernel (the block boundary of Mamba's residual stream), forward and
backward (``add_rms_norm_fn``, with autograd) and the forward alone (``add_rms_norm``, decoding).

See ``add_norm.py``. The readable PyTorch version is ``minimamba.model.Block._add_norm`` with ``RMSNorm``.
"""

import minimamba  # noqa: F401  (switches Triton to its interpreter on CPU before triton is imported)

from .add_norm import add_rms_norm, add_rms_norm_bwd, add_rms_norm_fn, add_rms_norm_ref

__all__ = ["add_rms_norm", "add_rms_norm_bwd", "add_rms_norm_fn", "add_rms_norm_ref"]
