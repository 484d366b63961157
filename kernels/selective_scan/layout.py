"""B and C in the layouts the kernels read, made in one launch.

The caller gives B and C as (batch, groups, N, L), in any float dtype and any strides (in a Mamba block
they are slices of one projection). The channel forward reads them as fp32 (N, L) rows: every thread
reads the whole B/C tile of a step range, and converting it there costs more instructions per step than
the copy costs bytes, except at short L, where the copy's launch costs more host time (see
``fwd.default_config``, ``native_bc_max_len``). The backward reads B_t and C_t one step at a time, all N values by every thread: fp32 (L, N) rows, 64
neighbouring bytes.

Both copies are small next to the scan's traffic (N/d_inner of it), but at short L the host time of each
PyTorch op that makes one counts: a cast and a transpose of each of B and C are 2 to 4 ops, each with its
own host time (``profile.py --host``), where a forward and backward of the whole scan takes about 0.5 ms
of GPU time (RESULTS.md). This kernel makes whichever the caller asks for, of both tensors, in one launch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .fast_launch import launch

__all__ = ["bc_layouts", "launch_layouts"]


@triton.jit
def _copy_one(p_in, p_rows, p_last, o_in, o_rows, o_last, m, ROWS: tl.constexpr, LAST: tl.constexpr):
    """One (BLOCK_N, BLOCK_L) tile of B or C: read in its own dtype, written as fp32 (N, L) rows and/or
    fp32 (L, N) rows."""
    x = tl.load(p_in + o_in, mask=m, other=0.0).to(tl.float32)
    if ROWS:
        tl.store(p_rows + o_rows, x, mask=m)
    if LAST:
        tl.store(p_last + o_last, x, mask=m)


@triton.jit
def bc_layouts_kernel(
    p_B,  # (batch, groups, N, L), strides sB_*
    p_C,  # (batch, groups, N, L), strides sC_*
    p_rows,  # (2, batch, groups, N, L) fp32 (ROWS): B then C
    p_last,  # (2, batch, groups, L, N) fp32 (LAST): B then C
    groups,
    N,
    L,
    sB_b,
    sB_g,
    sB_n,
    sB_l,
    sC_b,
    sC_g,
    sC_n,
    sC_l,
    one,  # batch · groups · N · L: where C's copy starts
    BLOCK_N: tl.constexpr,
    BLOCK_L: tl.constexpr,
    ROWS: tl.constexpr,
    LAST: tl.constexpr,
):
    i_l = tl.program_id(0)
    i_bg = tl.program_id(1).to(tl.int64)  # sequence · groups + group
    i_b, i_g = i_bg // groups, i_bg % groups
    o_n = tl.arange(0, BLOCK_N)
    o_l = i_l * BLOCK_L + tl.arange(0, BLOCK_L)
    m = (o_n[:, None] < N) & (o_l[None, :] < L)
    o_rows = (i_bg * N + o_n[:, None]) * L + o_l[None, :]
    o_last = (i_bg * L + o_l[None, :]) * N + o_n[:, None]
    o_B = i_b * sB_b + i_g * sB_g + o_n[:, None] * sB_n + o_l[None, :] * sB_l
    o_C = i_b * sC_b + i_g * sC_g + o_n[:, None] * sC_n + o_l[None, :] * sC_l
    _copy_one(p_B, p_rows, p_last, o_B, o_rows, o_last, m, ROWS, LAST)
    _copy_one(p_C, p_rows + one, p_last + one, o_C, o_rows, o_last, m, ROWS, LAST)


def _strides4(t: torch.Tensor) -> tuple:
    """The (batch, groups, N, L) strides of B or C, given as (batch, N, L) (one group) or with groups."""
    s = t.stride()
    return (s[0], 0, s[1], s[2]) if t.dim() == 3 else s


def launch_layouts(B: torch.Tensor, C: torch.Tensor, p_rows, p_last) -> None:
    """Copy B and C ((batch, N, L) or (batch, groups, N, L), same shape, any dtype and strides) into
    ``p_rows`` as fp32 (2, batch, groups, N, L) and/or into ``p_last`` as fp32 (2, batch, groups, L, N):
    contiguous tensors or :class:`~.fast_launch.Slot` s, None for a copy not asked for. One launch."""
    batch, N, L = B.shape[0], B.shape[-2], B.shape[-1]
    groups = B.shape[1] if B.dim() == 4 else 1
    if C.shape != B.shape:
        raise ValueError(f"C must have B's shape {tuple(B.shape)} here, got {tuple(C.shape)}")
    rows, last = p_rows is not None, p_last is not None
    if not (rows or last) or B.numel() == 0:
        return
    block_n = max(2, 1 << (N - 1).bit_length())
    block_l = max(2, min(4096 // block_n, 1 << (L - 1).bit_length()))
    grid = (-(-L // block_l), batch * groups, 1)
    # a copy not asked for: the other's pointer, never written
    args = [B, C, p_rows if rows else p_last, p_last if last else p_rows, groups, N, L, *_strides4(B),
            *_strides4(C), B.numel()]  # fmt: skip
    consts = dict(BLOCK_N=block_n, BLOCK_L=block_l, ROWS=rows, LAST=last)
    # what Triton specialises on: dtypes, alignment of B and C (the outputs are fresh), the integers
    key = (rows, last, B.shape, B.stride(), C.stride(), B.dtype, C.dtype, B.data_ptr() % 16 == 0,
           C.data_ptr() % 16 == 0)  # fmt: skip
    launch(bc_layouts_kernel, grid, args, consts, 4, key)


def bc_layouts(B: torch.Tensor, C: torch.Tensor, rows: bool, last: bool):
    """B and C (batch, groups, N, L), same shape, any dtype and strides → (B32, C32, Bt, Ct): fp32
    contiguous (batch, groups, N, L) copies when ``rows`` (else B and C as given), and fp32 contiguous
    (batch, groups, L, N) copies when ``last`` (else None). One kernel launch, none if neither is asked."""
    if not (rows or last):
        return B, C, None, None
    batch, groups, N, L = B.shape
    dev, f32 = B.device, torch.float32
    out_rows = torch.empty((2, batch, groups, N, L), device=dev, dtype=f32) if rows else None
    out_last = torch.empty((2, batch, groups, L, N), device=dev, dtype=f32) if last else None
    launch_layouts(B, C, out_rows, out_last)
    B32, C32 = out_rows.unbind(0) if rows else (B, C)
    Bt, Ct = out_last.unbind(0) if last else (None, None)
    return B32, C32, Bt, Ct
