"""One decoding step of a Mamba layer's SSM, fused in Triton (the recurrent mode of Mamba §3.4, §4.5).

    from minimamba.kernels.state_update import selective_state_update
    y = selective_state_update(ssm_state, x, dt, A, B, C, D, z, dt_bias, dt_softplus=True)

The analogue of mamba_ssm's ``selective_state_update``: the state ``ssm_state`` (batch, d_inner, N) is
updated in place by one token and y (batch, d_inner) is returned, with the math of
:meth:`minimamba.block.MambaMixer.step`. ``state_update.py`` holds the kernel (read it top to bottom), the
host wrapper and ``selective_state_update_ref``, the PyTorch reference (also the fallback where the kernel
cannot run).
"""

import minimamba  # noqa: F401  (switches Triton to its interpreter on CPU before triton is imported)

from .state_update import check_state_update_args, selective_state_update, selective_state_update_ref

__all__ = ["check_state_update_args", "selective_state_update", "selective_state_update_ref"]
