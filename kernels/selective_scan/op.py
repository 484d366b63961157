"""The selective scan as a PyTorch custom op with autograd, and the public ``selective_scan_fn``.

Two ops, ``minimamba::selective_scan_fwd`` and ``minimamba::selective_scan_bwd``, each with a fake
(shape-only) implementation, so that ``torch.compile(fullgraph=True)`` traces a model that calls the scan
without looking inside the Triton kernels; ``register_autograd`` ties the backward to the forward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minimamba import env
from minimamba.scan import check_scan_args

from . import bwd as _bwd
from . import fwd as _fwd

__all__ = ["selective_scan_fn"]


# --------------------------------------------------------------------------------------------------------
# The two custom ops. Arguments are validated, contiguous, B/C have a groups axis, A/D/delta_bias/h0 fp32.


@torch.library.custom_op("minimamba::selective_scan_fwd", mutates_args=())
def selective_scan_fwd_op(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    h0: Tensor | None,
    delta_softplus: bool,
    save_chunks: bool,
    chunk: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns y, h_last (fp32) and the states entering every ``chunk`` steps (fp32)."""
    return _fwd.selective_scan_fwd(
        u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, save_chunks, chunk
    )


@selective_scan_fwd_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, save_chunks, chunk):
    batch, d_inner, L = u.shape
    N = A.shape[1]
    n_chunks = (L + chunk - 1) // chunk
    shape = (batch, n_chunks, N, d_inner) if save_chunks else (0,)
    return (
        torch.empty_like(u),
        u.new_empty(batch, d_inner, N, dtype=torch.float32),
        u.new_empty(shape, dtype=torch.float32),
    )


@torch.library.custom_op("minimamba::selective_scan_bwd", mutates_args=())
def selective_scan_bwd_op(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    h_chunks: Tensor,
    dy: Tensor,
    dh_last: Tensor | None,
    delta_softplus: bool,
    need_dh0: bool,
    chunk: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0; an absent input's gradient is empty."""
    grads = _bwd.selective_scan_bwd(
        u, delta, A, B, C, D, z, delta_bias, h_chunks, dy, dh_last, delta_softplus, need_dh0, chunk
    )
    du, ddelta, dA, dB, dC, dD, dz, ddb, dh0 = grads

    def empty() -> Tensor:  # outputs of a custom op must not alias each other: a fresh one each time
        return u.new_empty(0, dtype=torch.float32)

    return (
        du,
        ddelta,
        dA,
        dB.to(B.dtype),
        dC.to(C.dtype),
        empty() if dD is None else dD,
        u.new_empty(0) if dz is None else dz,
        empty() if ddb is None else ddb,
        empty() if dh0 is None else dh0,
    )


@selective_scan_bwd_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, h_chunks, dy, dh_last, delta_softplus, need_dh0, chunk):
    batch, d_inner, L = u.shape
    N = A.shape[1]

    def empty() -> Tensor:
        return u.new_empty(0, dtype=torch.float32)

    return (
        torch.empty_like(u),
        torch.empty_like(delta),
        torch.empty_like(A),
        torch.empty_like(B),
        torch.empty_like(C),
        empty() if D is None else torch.empty_like(D),
        u.new_empty(0) if z is None else torch.empty_like(z),
        empty() if delta_bias is None else torch.empty_like(delta_bias),
        u.new_empty(batch, d_inner, N, dtype=torch.float32) if need_dh0 else empty(),
    )


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, save_chunks, chunk = inputs
    _, _, h_chunks = output
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, h_chunks)
    ctx.delta_softplus = delta_softplus
    ctx.has_h0 = h0 is not None
    ctx.chunk = chunk
    ctx.save_chunks = save_chunks


def _backward_with(bwd, ctx, dy, dh_last):
    u, delta, A, B, C, D, z, delta_bias, h_chunks = ctx.saved_tensors
    if not ctx.save_chunks:
        raise RuntimeError(
            "selective_scan_fwd ran without saving its block states (no input required grad when it ran)"
        )
    dy = torch.zeros_like(u) if dy is None else dy.contiguous()
    dh_last = None if dh_last is None else dh_last.contiguous()
    du, ddelta, dA, dB, dC, dD, dz, ddb, dh0 = bwd(
        u, delta, A, B, C, D, z, delta_bias, h_chunks, dy, dh_last, ctx.delta_softplus, ctx.has_h0, ctx.chunk
    )
    return (
        du,
        ddelta,
        dA,
        dB,
        dC,
        None if D is None else dD,
        None if z is None else dz,
        None if delta_bias is None else ddb,
        dh0 if ctx.has_h0 else None,
        None,
        None,
        None,
    )


def _backward(ctx, dy, dh_last, _dh_chunks):
    return _backward_with(selective_scan_bwd_op, ctx, dy, dh_last)


selective_scan_fwd_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerScan(torch.autograd.Function):
    """The same forward and backward as the custom op, without its dispatcher, for eager mode.

    ``torch.library.custom_op`` costs about 0.35 ms of host time per call on the H200's host (torch 2.11,
    measured with ``profile.py --host``): more than the kernel itself at L = 512. ``torch.compile`` still
    sees the custom op (selective_scan_fn picks it while compiling).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, save_chunks, chunk):
        inputs = (u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, save_chunks, chunk)
        out = _fwd.selective_scan_fwd(*inputs)
        _setup_context(ctx, inputs, out)
        ctx.mark_non_differentiable(out[2])
        ctx.set_materialize_grads(False)  # else autograd makes a zero gradient for the saved states
        return out

    @staticmethod
    def backward(ctx, dy, dh_last, _dh_chunks):
        return _backward_with(_bwd.selective_scan_bwd, ctx, dy, dh_last)


# --------------------------------------------------------------------------------------------------------
# The public function: validate, normalise, call the op.


def _check_device(tensors: list[Tensor]) -> None:
    u = tensors[0]
    if any(t.dtype == torch.float64 for t in tensors):
        raise TypeError(
            "the Triton selective scan computes in fp32 and takes float32, float16 or bfloat16 inputs; "
            "got float64: use minimamba.scan.selective_scan(..., backend='ref') for float64"
        )
    status = env.triton_status()
    if not status.usable:
        raise RuntimeError(f"the Triton selective scan cannot run here: {status.reason}")
    if u.is_cuda:
        if any(t.dtype == torch.bfloat16 for t in tensors) and not env.supports_bf16_kernels(u.device):
            cc = env.compute_capability(u.device)
            raise TypeError(
                f"bfloat16 Triton kernels need compute capability >= 8.0; this GPU has {cc}. Use float16 or "
                "float32 inputs, or minimamba.scan.selective_scan(..., backend='chunked') (or 'ref')"
            )
    elif not status.interpreted:
        raise ValueError(
            f"u is on {u.device}: the Triton kernel needs CUDA tensors, or TRITON_INTERPRET=1 for CPU tensors"
        )


def _states_last(t: Tensor) -> Tensor:
    """(batch, groups, N, L) → (batch, groups, L, N) fp32 contiguous: the kernels read B_t, C_t (all N states
    of one step) in every thread, 64 contiguous bytes in this layout; B and C are N/d_inner of the traffic,
    so the copy is cheap. Differentiable: the gradient goes back through the transpose and the cast."""
    return t.transpose(-1, -2).float().contiguous()


def selective_scan_fn(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    h0: Tensor | None = None,
):
    """The selective scan, fused in Triton; same semantics as :func:`minimamba.scan.selective_scan_ref`.

    Args:
        u, delta, z: (batch, d_inner, L), fp32/fp16/bf16. A: (d_inner, N). B, C: (batch, N, L) or
        (batch, groups, N, L). D, delta_bias: (d_inner,). h0: (batch, d_inner, N), the initial state.
        A, D, delta_bias, h0 and the state are used in fp32 whatever their dtype.
    Returns:
        y: (batch, d_inner, L) in u's dtype; with ``return_last_state`` also h_last (batch, d_inner, N) fp32.
        Differentiable with respect to every tensor argument (h0 and h_last included).
    """
    check_scan_args(u, delta, A, B, C, D, z, delta_bias, h0)
    given = [t for t in (u, delta, A, B, C, D, z, delta_bias, h0) if t is not None]
    if (
        not torch.compiler.is_compiling()
    ):  # checked when the model runs eagerly; dynamo cannot trace find_spec
        _check_device(given)

    def f32(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.float().contiguous()

    B4 = B if B.dim() == 4 else B.unsqueeze(1)  # (batch, 1, N, L): one group
    C4 = C if C.dim() == 4 else C.unsqueeze(1)
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in given)
    op = selective_scan_fwd_op if torch.compiler.is_compiling() else _EagerScan.apply
    y, h_last, _ = op(
        u.contiguous(),
        delta.contiguous(),
        f32(A),
        _states_last(B4),
        _states_last(C4),
        f32(D),
        None if z is None else z.contiguous(),
        f32(delta_bias),
        f32(h0),
        bool(delta_softplus),
        need_grad,
        _fwd.CHUNK,
    )
    return (y, h_last) if return_last_state else y
