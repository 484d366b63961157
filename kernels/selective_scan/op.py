"""The selective scan as a PyTorch custom op with autograd, and the public ``selective_scan_fn``.

Two ops, ``minimamba::selective_scan_fwd`` and ``minimamba::selective_scan_bwd``, each with a fake
(shape-only) implementation, so that ``torch.compile(fullgraph=True)`` traces a model that calls the scan
without looking inside the Triton kernels; ``register_autograd`` ties the backward to the forward.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from minimamba import env
from minimamba.scan import check_scan_args

from .bwd import selective_scan_bwd
from .common import CHUNK, contiguous
from .fast_launch import as_tensor, phase, piece
from .fwd import selective_scan_fwd, selective_scan_fwd_packed
from .layout import bc_layouts

__all__ = ["EagerScan", "selective_scan_fn"]


# --------------------------------------------------------------------------------------------------------
# B and C in the layouts the kernels read. The forward takes them as given, (batch, [groups,] N, L): fwd.py
# converts them for the kernel it picks. The backward keeps all N states of a channel in one thread, and
# every thread reads all of B_t and C_t at every step t: (batch, groups, L, N) in fp32, made when the
# forward runs for autograd, by the channel kernel itself up to L = 512, else in layout.py's one launch.


def _f32(t: Tensor) -> Tensor:
    """fp32 and contiguous, in one copy at most."""
    return contiguous(t, torch.float32)


def _opt_f32(t: Tensor | None) -> Tensor | None:
    return None if t is None else _f32(t)


def _with_groups(t: Tensor) -> Tensor:
    """B or C as (batch, groups, N, L): (batch, N, L) is one group."""
    return t if t.dim() == 4 else t.unsqueeze(1)


def _same_groups(B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    """B and C with different numbers of groups (allowed: each group count divides d_inner) → both with
    the least common multiple of the two; channel d still sees the group it would have. The kernels
    assume one count for both."""
    B4, C4 = _with_groups(B), _with_groups(C)
    g = math.lcm(B4.shape[1], C4.shape[1])
    return tuple(t if t.shape[1] == g else t.repeat_interleave(g // t.shape[1], dim=1) for t in (B4, C4))


def _offset(x) -> int:
    """Where a piece of the forward's allocation starts, in elements: a Slot's offset or a view's."""
    return x.offset if hasattr(x, "offset") else x.storage_offset()


def _backward(saved, Bt, Ct, bc_dtypes, bc_shape, dy, dh_last, delta_softplus, need_dh0, chunk):
    """The backward kernels on B, C as (batch, groups, L, N) fp32; returns the gradients of u, delta, A, B,
    C, D, z, delta_bias, h0, with dB and dC contiguous (batch, groups, N, L), or ``bc_shape``, in
    ``bc_dtypes`` (the kernel writes them so)."""
    u, delta, A, D, z, delta_bias, h_chunks = saved
    dy = torch.zeros_like(u) if dy is None else dy.contiguous()
    dh_last = None if dh_last is None else dh_last.contiguous()
    return selective_scan_bwd(
        u, delta, A, Bt, Ct, D, z, delta_bias, h_chunks, dy, dh_last, delta_softplus, need_dh0, chunk,
        bc_dtypes=bc_dtypes, bc_shape=bc_shape,
    )  # fmt: skip


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
    return selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, save_chunks, chunk)


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
    _, _, Bt, Ct = bc_layouts(B, C, False, True)
    saved = (u, delta, A, D, z, delta_bias, h_chunks)
    grads = _backward(saved, Bt, Ct, (B.dtype, C.dtype), None, dy, dh_last, delta_softplus, need_dh0, chunk)
    du, ddelta, dA, dB, dC, dD, dz, ddb, dh0 = grads

    def empty() -> Tensor:  # outputs of a custom op must not alias each other: a fresh one each time
        return u.new_empty(0, dtype=torch.float32)

    return (  # dA, dD, ddelta_bias are views of the kernel's one fp32 allocation: copies here
        du,
        ddelta,
        dA.clone(),
        torch.empty_like(B).copy_(dB),  # the layout the fake implementation promises (empty_like(B))
        torch.empty_like(C).copy_(dC),
        empty() if dD is None else dD.clone(),
        u.new_empty(0) if dz is None else dz,
        empty() if ddb is None else ddb.clone(),
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
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, h0, h_chunks)
    ctx.delta_softplus = delta_softplus
    ctx.has_h0 = h0 is not None
    ctx.chunk = chunk
    ctx.save_chunks = save_chunks


def _grads_for_inputs(ctx, grads):
    du, ddelta, dA, dB, dC, dD, dz, ddb, dh0 = grads
    u, delta, A, B, C, D, z, delta_bias, h0, h_chunks = ctx.saved_tensors
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


def _op_backward(ctx, dy, dh_last, _dh_chunks):
    u, delta, A, B, C, D, z, delta_bias, h0, h_chunks = ctx.saved_tensors
    if not ctx.save_chunks:  # recompute_states: the forward kept no states; run it again for them
        _, _, h_chunks = selective_scan_fwd_op(
            u, delta, A, B, C, D, z, delta_bias, h0, ctx.delta_softplus, True, ctx.chunk
        )
    dy = torch.zeros_like(u) if dy is None else dy.contiguous()
    dh_last = None if dh_last is None else dh_last.contiguous()
    grads = selective_scan_bwd_op(
        u, delta, A, B, C, D, z, delta_bias, h_chunks, dy, dh_last, ctx.delta_softplus, ctx.has_h0, ctx.chunk
    )
    return _grads_for_inputs(ctx, grads)


selective_scan_fwd_op.register_autograd(_op_backward, setup_context=_setup_context)


class EagerScan(torch.autograd.Function):
    """The same forward and backward as the custom op, without its dispatcher, for eager mode.

    Host time is what limits a short scan (at L = 512 the kernels take ~0.5 ms of GPU time for a forward
    and backward), and every input, output and autograd node costs some:

    - ``torch.library.custom_op`` adds host time to every call (measure it with ``profile.py --host``),
      so eager calls come here; ``torch.compile`` still sees the custom op.
    - B and C go to the kernels as the caller gave them, (batch, N, L) or (batch, groups, N, L): no view
      (a view outside would also make autograd record, and run, a node).
    - The forward's fp32 outputs (h_last, the saved states, B and C as the backward reads them) are one
      allocation, saved as one tensor; with the fast launch on, the kernels get addresses in it
      (``fast_launch.Slot``), not views.
    - The saved states are not an output, and h_last only when the caller asked for it.
    - With ``recompute_states`` the forward saves no states: the backward runs the forward kernel again
      to get them (see :func:`selective_scan_fn`).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, h0, flags):
        phase("fwd_in")
        delta_softplus, return_last, recompute = flags
        out = selective_scan_fwd_packed(
            u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, not recompute, CHUNK, bc_last=True
        )
        # the states and B, C for the backward live in one allocation: one tensor to save, and the
        # backward finds each piece at its offset
        work, h_chunks, bc_t = out.work, out.h_chunks, out.bc_t
        if recompute:  # what the forward needs again in the backward
            ctx.save_for_backward(u, delta, A, D, z, delta_bias, work, B, C, h0)
            hc = None
        else:
            ctx.save_for_backward(u, delta, A, D, z, delta_bias, work)
            hc = (_offset(h_chunks), tuple(h_chunks.shape))
        pieces = (hc, _offset(bc_t), tuple(bc_t.shape[1:]))
        ctx.flags = (delta_softplus, h0 is not None, B.shape, (B.dtype, C.dtype), pieces)
        ctx.set_materialize_grads(False)  # no zero dh_last when the caller does not use h_last
        phase("fwd_out")
        if return_last:  # a tensor of its own: the caller may change it in place
            return out.y, as_tensor(out.h_last).clone()
        return out.y

    @staticmethod
    def backward(ctx, dy, dh_last=None):
        phase("bwd_in")
        delta_softplus, has_h0, bc_shape, bc_dtypes, (hc, o_bc, bc_t) = ctx.flags
        u, delta, A, D, z, delta_bias, work, *again = ctx.saved_tensors
        Bt = piece(work, o_bc, bc_t)
        Ct = piece(work, o_bc + bc_t[0] * bc_t[1] * bc_t[2] * bc_t[3], bc_t)
        if hc is None:  # recompute_states: the forward again, this time keeping its states
            B, C, h0 = again
            rerun = selective_scan_fwd_packed(
                u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, True, CHUNK
            )
            h_chunks = rerun.h_chunks  # a piece of rerun.work, alive until the backward has run
        else:
            h_chunks = piece(work, *hc)
        saved = (u, delta, A, D, z, delta_bias, h_chunks)
        du, ddelta, dA, dB, dC, dD, dz, ddb, dh0 = _backward(
            saved, Bt, Ct, bc_dtypes, bc_shape, dy, dh_last, delta_softplus, has_h0, CHUNK
        )
        phase("bwd_out")
        return (
            du, ddelta, dA, dB, dC,
            None if D is None else dD,
            None if z is None else dz,
            None if delta_bias is None else ddb,
            dh0 if has_h0 else None,
            None,
        )  # fmt: skip


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


#: Argument signatures (shape, dtype, device of each) that passed the checks: checking again costs ~20 µs
#: of host time per call, as much as a quarter of the kernel's time at L = 512.
_VALID: set = set()


def _validate(args: tuple) -> None:
    if torch.compiler.is_compiling():  # dynamo traces the checks once; find_spec cannot be traced
        check_scan_args(*args)
        return
    try:
        key = tuple(None if t is None else (t.shape, t.dtype, t.device) for t in args)
    except AttributeError:  # not a tensor: the checks below say which argument
        key = None
    if key is not None and key in _VALID:
        return
    check_scan_args(*args)
    _check_device([t for t in args if t is not None])
    if key is not None:
        if len(_VALID) > 4096:
            _VALID.clear()
        _VALID.add(key)


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
    recompute_states: bool = False,
):
    """The selective scan, fused in Triton; same semantics as :func:`minimamba.scan.selective_scan_ref`.

    Args:
        u, delta, z: (batch, d_inner, L), fp32/fp16/bf16. A: (d_inner, N). B, C: (batch, N, L) or
        (batch, groups, N, L). D, delta_bias: (d_inner,). h0: (batch, d_inner, N), the initial state.
        A, D, delta_bias, h0 and the state are used in fp32 whatever their dtype.
    Returns:
        y: (batch, d_inner, L) in u's dtype; with ``return_last_state`` also h_last (batch, d_inner, N) fp32.
        Differentiable with respect to every tensor argument (h0 and h_last included).

    Memory against time: for the backward, the forward keeps the state entering every ``CHUNK`` = 8 steps,
    batch · d_inner · L · N / 8 fp32 numbers (201 MB at (8, 1536, 2048, 16)), alive until the backward has
    run: in a model, one set per layer. ``recompute_states=True`` keeps none; the backward runs the forward
    kernel once more to get them, so a forward + backward costs one forward more and holds one layer's
    states at a time. The gradients are the same: the same backward kernel on the same states.
    """
    if not isinstance(recompute_states, bool):
        raise TypeError(f"recompute_states must be True or False, got {recompute_states!r}")
    _validate((u, delta, A, B, C, D, z, delta_bias, h0))
    if B.dim() != C.dim() or (B.dim() == 4 and B.shape[1] != C.shape[1]):
        B, C = _same_groups(B, C)
    u, delta = u.contiguous(), delta.contiguous()
    A, D, delta_bias = _f32(A), _opt_f32(D), _opt_f32(delta_bias)
    z = None if z is None else z.contiguous()
    h0 = _opt_f32(h0)
    delta_softplus = bool(delta_softplus)
    need_grad = torch.is_grad_enabled() and (
        u.requires_grad or delta.requires_grad or A.requires_grad or B.requires_grad or C.requires_grad
        or any(t is not None and t.requires_grad for t in (D, z, delta_bias, h0))
    )  # fmt: skip
    if torch.compiler.is_compiling():
        B4, C4 = _with_groups(B), _with_groups(C)
        save = need_grad and not recompute_states  # without saved states the op's backward recomputes them
        y, h_last, _ = selective_scan_fwd_op(
            u, delta, A, B4, C4, D, z, delta_bias, h0, delta_softplus, save, CHUNK
        )
    elif need_grad:
        flags = (delta_softplus, return_last_state, recompute_states)
        out = EagerScan.apply(u, delta, A, B, C, D, z, delta_bias, h0, flags)
        return out
    else:  # nothing to differentiate: no autograd.Function, no saved states
        out = selective_scan_fwd_packed(u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, False, CHUNK)
        y = out.y
        h_last = as_tensor(out.h_last) if return_last_state else None  # a view only when asked for
    return (y, h_last) if return_last_state else y
