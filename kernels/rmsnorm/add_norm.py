"""Residual add + RMSNorm, fused: what every Mamba block does first (mamba_ssm's ``Block`` with
``fused_add_norm``).

Between two blocks the residual stream r and the block's output h meet:

    r ← h + r                                       the residual add (r = h for the first block)
    out = r / sqrt(mean(r²) + eps) · weight         RMSNorm (Zhang & Sennrich 2019), no bias, no mean

In PyTorch that is the add, a cast, the square, the mean, rsqrt, two products and a cast back — seven
kernels, each a pass over the (rows, d_model) activations. Here one program per row loads h and r once,
computes in fp32, and writes r and out once. During generation a row is one sequence's token, so the
fusion removes launches (the time at batch 1); on long sequences it removes passes over memory.

Training (``add_rms_norm_fn``, with autograd) needs the backward. With x̂ = r · rstd, rstd =
1/sqrt(mean(r²) + eps), the gradient dout of ``out`` and dr_next of the new residual (the next block adds
to it):

    g   = dout · weight
    dr  = rstd · (g − x̂ · mean(g · x̂)) + dr_next          the gradient of h and of the old residual alike
    dw  = Σ_rows dout · x̂

Autograd saves the new residual r only (the output anyway); the backward recomputes rstd from it. One
program walks several rows, keeping its partial sum of dw in registers, and PyTorch adds the partial sums
(deterministic). mamba_ssm's ``layer_norm_fn(..., prenorm=True, is_rms_norm=True)`` is the same op.

Naming: ``p_`` pointers, ``b_`` blocks (values in registers), ``m_`` masks, ``o_`` offsets.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from torch import Tensor

from minimamba import env

__all__ = ["add_rms_norm", "add_rms_norm_bwd", "add_rms_norm_fn", "add_rms_norm_ref"]


@triton.jit
def _add_rms_norm_kernel(
    p_x,  # the block's output h (rows, n)
    p_res,  # the residual stream r (rows, n); not read without HAS_RES
    p_w,  # RMSNorm weight (n,)
    p_out,  # normalized output (rows, n), weight's dtype
    p_res_out,  # the new residual h + r (rows, n)
    n,  # features per row (d_model)
    s_x,  # row strides
    s_res,
    s_out,
    s_res_out,
    eps,
    HAS_RES: tl.constexpr,
    BLOCK_N: tl.constexpr,  # n rounded up to a power of 2: a row is one block
):
    i_row = tl.program_id(0)
    o_n = tl.arange(0, BLOCK_N)
    m_n = o_n < n
    b_r = tl.load(p_x + i_row * s_x + o_n, mask=m_n, other=0.0).to(tl.float32)
    if HAS_RES:
        b_r += tl.load(p_res + i_row * s_res + o_n, mask=m_n, other=0.0).to(tl.float32)
    tl.store(p_res_out + i_row * s_res_out + o_n, b_r.to(p_res_out.dtype.element_ty), mask=m_n)
    b_rstd = 1.0 / tl.sqrt(tl.sum(b_r * b_r, axis=0) / n + eps)  # masked lanes are 0: they add nothing
    b_w = tl.load(p_w + o_n, mask=m_n, other=0.0).to(tl.float32)
    tl.store(p_out + i_row * s_out + o_n, (b_r * b_rstd * b_w).to(p_out.dtype.element_ty), mask=m_n)


@triton.jit
def _add_rms_norm_bwd_kernel(
    p_r,  # the new residual r = h + residual from the forward (rows, n)
    p_w,  # RMSNorm weight (n,)
    p_dout,  # ∂loss/∂out (rows, n)
    p_dr_next,  # ∂loss/∂r from the residual stream's later use (rows, n); not read without HAS_DR_NEXT
    p_dx,  # ∂loss/∂h (rows, n), h's dtype
    p_dres,  # ∂loss/∂residual (rows, n), residual's dtype; not written without HAS_RES
    p_dw,  # fp32 partial sums of ∂loss/∂weight (programs, n)
    rows,
    n,
    s_r,  # row strides
    s_dout,
    s_dr_next,
    s_dx,
    s_dres,
    eps,
    HAS_DR_NEXT: tl.constexpr,
    HAS_RES: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    i_p = tl.program_id(0)
    o_n = tl.arange(0, BLOCK_N)
    m_n = o_n < n
    b_w = tl.load(p_w + o_n, mask=m_n, other=0.0).to(tl.float32)
    b_dw = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for i in range(i_p, rows, tl.num_programs(0)):  # rows i_p, i_p + programs, …
        i_row = tl.full((), 0, tl.int64) + i  # i_row · stride in int64
        b_r = tl.load(p_r + i_row * s_r + o_n, mask=m_n, other=0.0).to(tl.float32)
        b_rstd = 1.0 / tl.sqrt(tl.sum(b_r * b_r, axis=0) / n + eps)
        b_xhat = b_r * b_rstd
        b_dout = tl.load(p_dout + i_row * s_dout + o_n, mask=m_n, other=0.0).to(tl.float32)
        b_dw += b_dout * b_xhat
        b_g = b_dout * b_w
        b_dr = b_rstd * (b_g - b_xhat * (tl.sum(b_g * b_xhat, axis=0) / n))
        if HAS_DR_NEXT:
            b_dr += tl.load(p_dr_next + i_row * s_dr_next + o_n, mask=m_n, other=0.0).to(tl.float32)
        tl.store(p_dx + i_row * s_dx + o_n, b_dr.to(p_dx.dtype.element_ty), mask=m_n)
        if HAS_RES:
            tl.store(p_dres + i_row * s_dres + o_n, b_dr.to(p_dres.dtype.element_ty), mask=m_n)
    tl.store(p_dw + i_p * n + o_n, b_dw, mask=m_n)


def _residual_dtype(x: torch.Tensor, residual: torch.Tensor | None, residual_in_fp32: bool) -> torch.dtype:
    dtype = x.dtype if residual is None else torch.result_type(x, residual)
    return torch.float32 if residual_in_fp32 and dtype != torch.float64 else dtype


#: Whether and how Triton runs here, decided once per process (asking costs host time on every call).
_triton_status = functools.cache(env.triton_status)


def _check_launch(x: torch.Tensor) -> None:
    if x.dtype == torch.float64:
        raise TypeError(
            "the Triton add + RMSNorm computes in fp32: x must be float32, float16 or bfloat16, got float64"
        )
    status = _triton_status()
    if not status.usable:
        raise RuntimeError(f"the Triton add + RMSNorm cannot run here: {status.reason}")
    if not x.is_cuda and not status.interpreted:
        raise ValueError(f"x is on {x.device}: the Triton kernels need CUDA tensors (or TRITON_INTERPRET=1)")


def _check(x, residual, weight, eps, out_dtype=None) -> None:
    if out_dtype is not None and (not isinstance(out_dtype, torch.dtype) or not out_dtype.is_floating_point):
        raise TypeError(f"out_dtype must be None or a floating-point torch.dtype, got {out_dtype!r}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 1:
        raise TypeError(f"x must be a floating-point tensor (..., n), got {getattr(x, 'dtype', type(x))}")
    if not isinstance(weight, torch.Tensor) or weight.shape != x.shape[-1:]:
        raise ValueError(f"weight must have shape ({x.shape[-1]},), got {getattr(weight, 'shape', weight)}")
    if residual is not None and (not isinstance(residual, torch.Tensor) or residual.shape != x.shape):
        raise ValueError(
            f"residual must be None or shaped like x {tuple(x.shape)}, got {getattr(residual, 'shape', residual)}"
        )
    if isinstance(eps, bool) or not isinstance(eps, float) or eps <= 0:
        raise ValueError(f"eps must be a float > 0, got {eps!r}")


def add_rms_norm(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float = 1e-5,
    residual_in_fp32: bool = False,
    out_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, residual: (..., n) -> (RMSNorm(x + residual) in ``out_dtype`` (default weight's dtype), x + residual).

    The new residual keeps the dtype PyTorch's ``x + residual`` would have, fp32 with ``residual_in_fp32``;
    the arithmetic is fp32 throughout (``add_rms_norm_ref`` is the PyTorch version). ``out_dtype`` bf16
    under autocast writes what the next matmul reads, where the weight's fp32 would be cast by another pass.
    """
    _check(x, residual, weight, eps, out_dtype)
    n = x.shape[-1]
    x2 = x.reshape(-1, n)
    res2 = None if residual is None else residual.reshape(-1, n)
    out = torch.empty(x2.shape, dtype=out_dtype or weight.dtype, device=x.device)
    res_out = torch.empty(x2.shape, dtype=_residual_dtype(x, residual, residual_in_fp32), device=x.device)
    if x2.shape[0]:
        x2 = x2 if x2.stride(-1) == 1 else x2.contiguous()
        res2 = res2 if res2 is None or res2.stride(-1) == 1 else res2.contiguous()
        _add_rms_norm_kernel[(x2.shape[0],)](
            x2,
            x2 if res2 is None else res2,
            weight.contiguous(),
            out,
            res_out,
            n,
            x2.stride(0),
            0 if res2 is None else res2.stride(0),
            out.stride(0),
            res_out.stride(0),
            eps,
            HAS_RES=res2 is not None,
            BLOCK_N=triton.next_power_of_2(n),
        )
    return out.view(x.shape), res_out.view(x.shape)


def add_rms_norm_ref(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float = 1e-5,
    residual_in_fp32: bool = False,
    out_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same in PyTorch, in fp32 (fp64 for fp64 inputs)."""
    _check(x, residual, weight, eps, out_dtype)
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    r = x.to(ct) if residual is None else x.to(ct) + residual.to(ct)
    out = r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + eps) * weight.to(ct)
    return out.to(out_dtype or weight.dtype), r.to(_residual_dtype(x, residual, residual_in_fp32))


def _bwd_programs(rows: int, device: torch.device) -> int:
    """Programs of the backward: 4 per SM on a GPU (each walks rows / programs rows), at most one per row."""
    per_device = (
        4 * torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    )
    return max(1, min(rows, per_device))


def add_rms_norm_bwd(
    res_out: Tensor,
    weight: Tensor,
    dout: Tensor,
    dres_out: Tensor | None,
    eps: float,
    x_dtype: torch.dtype,
    residual_dtype: torch.dtype | None,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """The gradients of ``add_rms_norm``: from the new residual ``res_out`` (..., n) it returned, the gradient
    ``dout`` of its normalized output and ``dres_out`` of the new residual (None: unused), returns (dx in
    ``x_dtype``, dresidual in ``residual_dtype`` or None when the forward had no residual, dweight in
    weight's dtype). fp32 arithmetic."""
    _check_launch(res_out)
    n = res_out.shape[-1]
    for name, t in (("dout", dout), ("dres_out", dres_out)):
        if t is not None and (not isinstance(t, torch.Tensor) or t.shape != res_out.shape):
            raise ValueError(
                f"{name} must be shaped like the residual {tuple(res_out.shape)}, got {getattr(t, 'shape', t)}"
            )
    r2 = res_out.reshape(-1, n)
    rows = r2.shape[0]
    dx = torch.empty(r2.shape, dtype=x_dtype, device=r2.device)
    dres = None if residual_dtype is None else torch.empty(r2.shape, dtype=residual_dtype, device=r2.device)
    if rows == 0:
        return (
            dx.view(res_out.shape),
            None if dres is None else dres.view(res_out.shape),
            torch.zeros_like(weight),
        )
    r2 = r2 if r2.stride(-1) == 1 else r2.contiguous()
    dout2 = dout.reshape(-1, n)
    dout2 = dout2 if dout2.stride(-1) == 1 else dout2.contiguous()
    dr2 = None if dres_out is None else dres_out.reshape(-1, n)
    dr2 = dr2 if dr2 is None or dr2.stride(-1) == 1 else dr2.contiguous()
    programs = _bwd_programs(rows, r2.device)
    dw_part = torch.empty(programs, n, dtype=torch.float32, device=r2.device)
    block_n = triton.next_power_of_2(n)
    _add_rms_norm_bwd_kernel[(programs,)](
        r2, weight.contiguous(), dout2, dout2 if dr2 is None else dr2, dx, dx if dres is None else dres, dw_part,
        rows, n, r2.stride(0), dout2.stride(0), 0 if dr2 is None else dr2.stride(0), dx.stride(0),
        0 if dres is None else dres.stride(0), eps,
        HAS_DR_NEXT=dr2 is not None, HAS_RES=dres is not None, BLOCK_N=block_n,
        num_warps=4 if block_n <= 1024 else 8,
    )  # fmt: skip
    dw = dw_part.sum(0).to(weight.dtype)
    return dx.view(res_out.shape), None if dres is None else dres.view(res_out.shape), dw


# --------------------------------------------------------------------------------------------------------
# Autograd: custom ops for torch.compile (fake implementations give shapes without entering Triton), and an
# autograd.Function with the same kernels for eager calls, where the dispatcher would add host time.


@torch.library.custom_op("minimamba::add_rms_norm_fwd", mutates_args=())
def _fwd_op(
    x: Tensor,
    residual: Tensor | None,
    weight: Tensor,
    eps: float,
    residual_in_fp32: bool,
    out_dtype: torch.dtype | None,
) -> tuple[Tensor, Tensor]:
    return add_rms_norm(x, residual, weight, eps, residual_in_fp32, out_dtype)


@_fwd_op.register_fake
def _(x, residual, weight, eps, residual_in_fp32, out_dtype):
    res_dtype = _residual_dtype(x, residual, residual_in_fp32)
    return x.new_empty(x.shape, dtype=out_dtype or weight.dtype), x.new_empty(x.shape, dtype=res_dtype)


@torch.library.custom_op("minimamba::add_rms_norm_bwd", mutates_args=())
def _bwd_op(
    res_out: Tensor,
    weight: Tensor,
    dout: Tensor,
    dres_out: Tensor | None,
    eps: float,
    x_dtype: torch.dtype,
    residual_dtype: torch.dtype | None,
) -> tuple[Tensor, Tensor, Tensor]:
    dx, dres, dw = add_rms_norm_bwd(res_out, weight, dout, dres_out, eps, x_dtype, residual_dtype)
    return dx, dx.new_empty(0) if dres is None else dres, dw


@_bwd_op.register_fake
def _(res_out, weight, dout, dres_out, eps, x_dtype, residual_dtype):
    dres = (
        res_out.new_empty(0, dtype=x_dtype)
        if residual_dtype is None
        else res_out.new_empty(res_out.shape, dtype=residual_dtype)
    )
    return res_out.new_empty(res_out.shape, dtype=x_dtype), dres, torch.empty_like(weight)


def _setup_context(ctx, inputs, output):
    x, residual, weight, eps, _, _ = inputs
    ctx.save_for_backward(output[1], weight)  # the new residual: rstd is recomputed from it
    ctx.meta = (eps, x.dtype, None if residual is None else residual.dtype)


def _op_backward(ctx, dout, dres_out):
    res_out, weight = ctx.saved_tensors
    eps, x_dtype, residual_dtype = ctx.meta
    if dout is None:
        dout = torch.zeros_like(res_out, dtype=weight.dtype)
    dx, dres, dw = _bwd_op(res_out, weight, dout, dres_out, eps, x_dtype, residual_dtype)
    return dx, None if residual_dtype is None else dres, dw, None, None, None


_fwd_op.register_autograd(_op_backward, setup_context=_setup_context)


class _EagerAddNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, residual, weight, eps, residual_in_fp32, out_dtype):
        out, res_out = add_rms_norm(x, residual, weight, eps, residual_in_fp32, out_dtype)
        ctx.save_for_backward(res_out, weight)
        ctx.meta = (eps, x.dtype, None if residual is None else residual.dtype)
        ctx.set_materialize_grads(False)  # no zero gradient for a residual nobody uses (the last block's)
        return out, res_out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, dres_out):
        res_out, weight = ctx.saved_tensors
        eps, x_dtype, residual_dtype = ctx.meta
        if dout is None:
            dout = torch.zeros_like(res_out, dtype=weight.dtype)
        dx, dres, dw = add_rms_norm_bwd(res_out, weight, dout, dres_out, eps, x_dtype, residual_dtype)
        return dx, dres, dw, None, None, None


def add_rms_norm_fn(
    x: Tensor,
    residual: Tensor | None,
    weight: Tensor,
    eps: float = 1e-5,
    residual_in_fp32: bool = False,
    out_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """``add_rms_norm`` with autograd (training): x, residual (..., n) -> (RMSNorm(x + residual) in
    ``out_dtype`` (default weight's dtype), the new residual x + residual), as ``add_rms_norm_ref``,
    differentiable in x, residual and weight.

    Autograd saves the new residual only. Under ``torch.compile`` it is the custom op
    ``minimamba::add_rms_norm_fwd``; eagerly an ``autograd.Function`` around the same kernels.
    """
    _check(x, residual, weight, eps, out_dtype)
    if not isinstance(residual_in_fp32, bool):
        raise TypeError(f"residual_in_fp32 must be a bool, got {type(residual_in_fp32).__name__}")
    if torch.compiler.is_compiling():
        return _fwd_op(x, residual, weight, eps, residual_in_fp32, out_dtype)
    _check_launch(x)
    return _EagerAddNorm.apply(x, residual, weight, eps, residual_in_fp32, out_dtype)
