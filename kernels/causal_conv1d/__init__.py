"""The causal depthwise conv1d of the Mamba block, in Triton: ``causal_conv1d_update``, one decoding step.

See ``update.py``. The readable PyTorch version is ``minimamba.block.MambaMixer.step``.
"""

import minimamba  # noqa: F401  (switches Triton to its interpreter on CPU before triton is imported)

from .update import causal_conv1d_update, causal_conv1d_update_ref

__all__ = ["causal_conv1d_update", "causal_conv1d_update_ref"]
