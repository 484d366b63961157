"""Residual add + RMSNorm, fused: what every Mamba block does first (mamba_ssm's ``Block`` with
``fused_add_norm``).

Between two blocks the residual stream r and the block's output h meet:

    r ← h + r                                       the residual add (r = h for the first block)
    out = r / sqrt(mean(r²) + eps) · weight         RMSNorm (Zhang & Sennrich 2019), no bias, no mean

In PyTorch that is the add, a cast, the square, the mean, rsqrt, two products and a cast back — seven
kernels, each a pass over the (rows, d_model) activations. Here one program per row loads h and r once,
computes in fp32, and writes r and out once. During generation a row is one sequence's token, so the
fusion removes launches (the time at batch 1); on long sequences it removes passes over memory.

Naming: ``p_`` pointers, ``b_`` blocks (values in registers), ``m_`` masks, ``o_`` offsets.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["add_rms_norm", "add_rms_norm_ref"]


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


def _residual_dtype(x: torch.Tensor, residual: torch.Tensor | None, residual_in_fp32: bool) -> torch.dtype:
    dtype = x.dtype if residual is None else torch.result_type(x, residual)
    return torch.float32 if residual_in_fp32 and dtype != torch.float64 else dtype


def _check(x, residual, weight, eps) -> None:
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, residual: (..., n) -> (RMSNorm(x + residual) in weight's dtype, x + residual).

    The new residual keeps the dtype PyTorch's ``x + residual`` would have, fp32 with ``residual_in_fp32``;
    the arithmetic is fp32 throughout (``add_rms_norm_ref`` is the PyTorch version).
    """
    _check(x, residual, weight, eps)
    n = x.shape[-1]
    x2 = x.reshape(-1, n)
    res2 = None if residual is None else residual.reshape(-1, n)
    out = torch.empty(x2.shape, dtype=weight.dtype, device=x.device)
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same in PyTorch, in fp32 (fp64 for fp64 inputs)."""
    _check(x, residual, weight, eps)
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    r = x.to(ct) if residual is None else x.to(ct) + residual.to(ct)
    out = r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + eps) * weight.to(ct)
    return out.to(weight.dtype), r.to(_residual_dtype(x, residual, residual_in_fp32))
