"""The causal depthwise conv1d of the Mamba block, in Triton: over a whole sequence with autograd
(``causal_conv1d_fn``, training) and one decoding step (``causal_conv1d_update``).

See ``conv.py`` and ``update.py``. The readable PyTorch versions are ``minimamba.block.MambaMixer.forward``
and ``MambaMixer.step``; ``causal_conv1d_ref`` and ``causal_conv1d_update_ref`` are the references.
"""

import minimamba  # noqa: F401  (switches Triton to its interpreter on CPU before triton is imported)

from .conv import ConvLaunch, causal_conv1d_bwd, causal_conv1d_fn, causal_conv1d_fwd, causal_conv1d_ref
from .update import causal_conv1d_update, causal_conv1d_update_ref

__all__ = [
    "ConvLaunch",
    "causal_conv1d_bwd",
    "causal_conv1d_fn",
    "causal_conv1d_fwd",
    "causal_conv1d_ref",
    "causal_conv1d_update",
    "causal_conv1d_update_ref",
]
