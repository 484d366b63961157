"""The causal depthwise conv1d of the Mamba block over a whole sequence (training), forward and backward.

Each channel d of x (batch, d_inner, L) is convolved with its own ``d_conv`` taps w[d, :] (depthwise),
looking only at the present and the past (causal: inputs before t = 0 are zeros):

    pre[b, d, t] = bias[d] + Σ_k w[d, k] · x[b, d, t − (K − 1) + k]       k = 0 … K − 1,  K = d_conv
    out[b, d, t] = SiLU(pre[b, d, t])                                       (or pre, without SiLU)

The backward, with g = ∂loss/∂out and SiLU'(p) = σ(p) · (1 + p · (1 − σ(p))):

    gp[b, d, s] = g[b, d, s] · SiLU'(pre[b, d, s])        pre recomputed from x: nothing is saved but x
    dx[b, d, t] = Σ_k w[d, k] · gp[b, d, t + (K − 1) − k]   (the same conv, flipped, looking at the future)
    dw[d, k]    = Σ_b,t gp[b, d, t] · x[b, d, t − (K − 1) + k]
    dbias[d]    = Σ_b,t gp[b, d, t]

In PyTorch (``causal_conv1d_ref``, as ``MambaMixer.forward`` writes it) the forward is ``F.conv1d`` with
K − 1 zeros of padding on both sides, a slice and SiLU: the conv writes (batch, d_inner, L + K − 1),
SiLU reads it back and autograd keeps both. Here one program per (sequence, block of channels, block of
time steps) reads its x once per tap (K ≤ 4, from cache after the first), computes in fp32 and writes
the output once. The backward recomputes ``pre`` at the K shifted positions each dx needs, so the
forward saves x only; dw and dbias are summed per program in fp32 and the partial sums added by PyTorch
(a deterministic reduction). mamba_ssm calls the ``causal_conv1d`` package's CUDA kernels for this.

x, out, dx may have any strides (the Mamba block's fused path passes a contiguous x, the output of
``in_proj``'s first half). Naming: ``p_`` pointers, ``b_`` blocks (values in registers), ``m_`` masks, ``o_`` offsets,
``s_`` strides.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from minimamba import env

__all__ = ["ConvLaunch", "causal_conv1d_bwd", "causal_conv1d_fn", "causal_conv1d_fwd", "causal_conv1d_ref"]

#: Whether and how Triton runs here, decided once per process (asking costs host time on every call).
_triton_status = functools.cache(env.triton_status)

#: The widest conv the kernels take: Mamba uses d_conv = 4 (mamba_ssm's CUDA kernels take 2 … 4).
MAX_D_CONV = 4


@triton.jit
def _pre_activation(
    p_xrow,  # (BLOCK_D, 1) pointers: each channel's row of x
    s_x_t,
    p_wrow,  # (BLOCK_D,) pointers: each channel's taps
    s_w_k,
    b_bias,  # (BLOCK_D,) fp32
    m_d,
    o_s,  # (BLOCK_T,) the positions to compute
    L,
    D_CONV: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """pre at positions o_s: bias + Σ_k w[:, k] · x[:, o_s − (K − 1) + k], (BLOCK_D, BLOCK_T) fp32."""
    b_pre = tl.zeros((BLOCK_D, BLOCK_T), dtype=tl.float32) + b_bias[:, None]
    for k in tl.static_range(D_CONV):
        o_src = o_s - (D_CONV - 1) + k  # the input tap k reads; < 0 is the causal zero padding
        m = m_d[:, None] & ((o_src >= 0) & (o_src < L))[None, :]
        b_x = tl.load(p_xrow + o_src[None, :] * s_x_t, mask=m, other=0.0).to(tl.float32)
        b_w = tl.load(p_wrow + k * s_w_k, mask=m_d, other=0.0).to(tl.float32)  # (BLOCK_D,)
        b_pre += b_w[:, None] * b_x
    return b_pre


@triton.jit
def _conv_fwd_kernel(
    p_x,  # input (batch, d_inner, L)
    p_w,  # taps (d_inner, d_conv)
    p_b,  # bias (d_inner,); not read without HAS_BIAS
    p_out,  # output (batch, d_inner, L), x's dtype
    d_inner,
    L,
    s_x_b,  # strides of x: sequence, channel, time
    s_x_d,
    s_x_t,
    s_w_d,  # strides of w: channel, tap
    s_w_k,
    s_out_b,  # strides of out
    s_out_d,
    s_out_t,
    D_CONV: tl.constexpr,
    BLOCK_D: tl.constexpr,  # channels per program
    BLOCK_T: tl.constexpr,  # time steps per program
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
):
    i_b, i_d, i_t = tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2)  # i_b · s_x_b in int64
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)
    o_t = i_t * BLOCK_T + tl.arange(0, BLOCK_T)
    m_d, m_t = o_d < d_inner, o_t < L
    b_bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_BIAS:
        b_bias = tl.load(p_b + o_d, mask=m_d, other=0.0).to(tl.float32)
    p_xrow = p_x + i_b * s_x_b + o_d[:, None] * s_x_d  # (BLOCK_D, 1): each channel's row of x
    p_wrow = p_w + o_d * s_w_d
    b_out = _pre_activation(p_xrow, s_x_t, p_wrow, s_w_k, b_bias, m_d, o_t, L, D_CONV, BLOCK_D, BLOCK_T)
    if SILU:
        b_out = b_out * tl.sigmoid(b_out)
    p = p_out + i_b * s_out_b + o_d[:, None] * s_out_d + o_t[None, :] * s_out_t
    tl.store(p, b_out.to(p_out.dtype.element_ty), mask=m_d[:, None] & m_t[None, :])


@triton.jit
def _conv_bwd_kernel(
    p_x,  # input (batch, d_inner, L), as in the forward
    p_w,  # taps (d_inner, d_conv)
    p_b,  # bias (d_inner,); not read without HAS_BIAS
    p_g,  # ∂loss/∂out (batch, d_inner, L)
    p_dx,  # ∂loss/∂x (batch, d_inner, L), x's dtype
    p_dw,  # fp32 partial sums of ∂loss/∂w, (batch · time blocks, d_inner, d_conv), contiguous
    p_db,  # fp32 partial sums of ∂loss/∂bias, (batch · time blocks, d_inner), contiguous
    d_inner,
    L,
    s_x_b,
    s_x_d,
    s_x_t,
    s_w_d,
    s_w_k,
    s_g_b,
    s_g_d,
    s_g_t,
    s_dx_b,
    s_dx_d,
    s_dx_t,
    D_CONV: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
):
    i_b, i_d, i_t = tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2)  # i_b · s_x_b in int64
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)
    o_t = i_t * BLOCK_T + tl.arange(0, BLOCK_T)
    m_d, m_t = o_d < d_inner, o_t < L
    b_bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_BIAS:
        b_bias = tl.load(p_b + o_d, mask=m_d, other=0.0).to(tl.float32)
    p_xrow = p_x + i_b * s_x_b + o_d[:, None] * s_x_d
    p_wrow = p_w + o_d * s_w_d
    b_dx = tl.zeros((BLOCK_D, BLOCK_T), dtype=tl.float32)
    i_part = i_b * tl.num_programs(2) + i_t  # this program's row of the partial sums
    for j in tl.static_range(D_CONV):
        # gp at s = t + j: x[t] met tap K − 1 − j there
        o_s = o_t + j
        m_s = m_d[:, None] & (o_s < L)[None, :]
        b_gp = tl.load(p_g + i_b * s_g_b + o_d[:, None] * s_g_d + o_s[None, :] * s_g_t, mask=m_s, other=0.0)
        b_gp = b_gp.to(tl.float32)
        if SILU:  # recompute pre at s; SiLU'(p) = σ(p) (1 + p (1 − σ(p)))
            b_pre = _pre_activation(
                p_xrow, s_x_t, p_wrow, s_w_k, b_bias, m_d, o_s, L, D_CONV, BLOCK_D, BLOCK_T
            )
            b_sig = tl.sigmoid(b_pre)
            b_gp = b_gp * b_sig * (1.0 + b_pre * (1.0 - b_sig))
        b_w = tl.load(p_wrow + (D_CONV - 1 - j) * s_w_k, mask=m_d, other=0.0).to(tl.float32)
        b_dx += b_w[:, None] * b_gp
        if j == 0:  # gp at this program's own steps: the weight and bias gradients
            if HAS_BIAS:
                tl.store(p_db + i_part * d_inner + o_d, tl.sum(b_gp, axis=1), mask=m_d)
            for k in tl.static_range(D_CONV):
                o_src = o_t - (D_CONV - 1) + k
                m = m_d[:, None] & ((o_src >= 0) & (o_src < L))[None, :]
                b_x = tl.load(p_xrow + o_src[None, :] * s_x_t, mask=m, other=0.0).to(tl.float32)
                p = p_dw + (i_part * d_inner + o_d) * D_CONV + k
                tl.store(p, tl.sum(b_gp * b_x, axis=1), mask=m_d)
    p = p_dx + i_b * s_dx_b + o_d[:, None] * s_dx_d + o_t[None, :] * s_dx_t
    tl.store(p, b_dx.to(p_dx.dtype.element_ty), mask=m_d[:, None] & m_t[None, :])


@triton.jit
def _shifted(p_row, s_t, o_t, shift: tl.constexpr, m_d, L):
    """A (BLOCK_D, BLOCK_T) fp32 tile of rows ``p_row`` at the steps o_t + shift, zero outside 0 … L − 1
    (the causal padding before the start, nothing past the end)."""
    o = o_t + shift
    m = m_d[:, None] & ((o >= 0) & (o < L))[None, :]
    return tl.load(p_row + o[None, :] * s_t, mask=m, other=0.0).to(tl.float32)


@triton.jit
def _gp(
    p_grow, s_g_t, o_t, j: tl.constexpr, m_d, L, b_bias, w0, w1, w2, w3, xa, xb, xc, xd, SILU: tl.constexpr
):
    """gp at the steps o_t + j: the output gradient there times SiLU'(pre), with pre = bias + w0·xa + w1·xb +
    w2·xc + w3·xd from the four x tiles at the shifts j − 3 … j (the gradient itself without SiLU)."""
    gp = _shifted(p_grow, s_g_t, o_t, j, m_d, L)
    if SILU:
        pre = b_bias + w0 * xa + w1 * xb + w2 * xc + w3 * xd
        sig = tl.sigmoid(pre)
        gp = gp * sig * (1.0 + pre * (1.0 - sig))
    return gp


@triton.jit
def _conv_bwd_window_kernel(
    p_x,  # the arguments of _conv_bwd_kernel
    p_w,
    p_b,
    p_g,
    p_dx,
    p_dw,
    p_db,
    d_inner,
    L,
    s_x_b,
    s_x_d,
    s_x_t,
    s_w_d,
    s_w_k,
    s_g_b,
    s_g_d,
    s_g_t,
    s_dx_b,
    s_dx_d,
    s_dx_t,
    D_CONV: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
):
    """The backward of ``_conv_bwd_kernel``, each shifted tile of x loaded once.

    The taps are padded in front to four, w4[k'] = w[k' − (4 − K)] (zeros for k' < 4 − K), so that
    pre[t] = bias + Σ_k' w4[k'] · x[t − 3 + k'] for any K ≤ 4. A program needs x at the seven shifts
    t − 3 … t + 3 of its steps t: ``pre`` at t + j (j = 0 … 3) reads shifts j − 3 … j. Each of the seven
    is loaded once and the four ``pre`` tiles built from them (7 loads of x, where the other kernel makes
    16, and the weight gradient reuses shifts −3 … 0 instead of loading 4 more)."""
    i_b, i_d, i_t = tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)
    o_t = i_t * BLOCK_T + tl.arange(0, BLOCK_T)
    m_d, m_t = o_d < d_inner, o_t < L
    PAD: tl.constexpr = 4 - D_CONV
    p_wrow = p_w + o_d * s_w_d
    # w4[k'] for k' = 0 … 3, zeros in front of the K real taps
    w0 = tl.zeros((BLOCK_D, 1), dtype=tl.float32)
    w1 = tl.zeros((BLOCK_D, 1), dtype=tl.float32)
    w2 = tl.zeros((BLOCK_D, 1), dtype=tl.float32)
    if PAD <= 0:
        w0 = tl.load(p_wrow + (0 - PAD) * s_w_k, mask=m_d, other=0.0).to(tl.float32)[:, None]
    if PAD <= 1:
        w1 = tl.load(p_wrow + (1 - PAD) * s_w_k, mask=m_d, other=0.0).to(tl.float32)[:, None]
    if PAD <= 2:
        w2 = tl.load(p_wrow + (2 - PAD) * s_w_k, mask=m_d, other=0.0).to(tl.float32)[:, None]
    w3 = tl.load(p_wrow + (3 - PAD) * s_w_k, mask=m_d, other=0.0).to(tl.float32)[:, None]
    b_bias = tl.zeros((BLOCK_D, 1), dtype=tl.float32)
    if HAS_BIAS:
        b_bias = tl.load(p_b + o_d, mask=m_d, other=0.0).to(tl.float32)[:, None]
    p_xrow = p_x + i_b * s_x_b + o_d[:, None] * s_x_d
    p_grow = p_g + i_b * s_g_b + o_d[:, None] * s_g_d
    # x at the shifts −3 … 3 of the program's steps
    xm3 = _shifted(p_xrow, s_x_t, o_t, -3, m_d, L)
    xm2 = _shifted(p_xrow, s_x_t, o_t, -2, m_d, L)
    xm1 = _shifted(p_xrow, s_x_t, o_t, -1, m_d, L)
    x0 = _shifted(p_xrow, s_x_t, o_t, 0, m_d, L)
    # j = 0: gp at the program's own steps, and the weight and bias gradients
    gp = _gp(p_grow, s_g_t, o_t, 0, m_d, L, b_bias, w0, w1, w2, w3, xm3, xm2, xm1, x0, SILU)
    b_dx = w3 * gp
    i_part = i_b * tl.num_programs(2) + i_t
    if HAS_BIAS:
        tl.store(p_db + i_part * d_inner + o_d, tl.sum(gp, axis=1), mask=m_d)
    p_dwrow = p_dw + (i_part * d_inner + o_d) * D_CONV
    if PAD <= 0:
        tl.store(p_dwrow + 0 - PAD, tl.sum(gp * xm3, axis=1), mask=m_d)
    if PAD <= 1:
        tl.store(p_dwrow + 1 - PAD, tl.sum(gp * xm2, axis=1), mask=m_d)
    if PAD <= 2:
        tl.store(p_dwrow + 2 - PAD, tl.sum(gp * xm1, axis=1), mask=m_d)
    tl.store(p_dwrow + 3 - PAD, tl.sum(gp * x0, axis=1), mask=m_d)
    # j = 1 … 3: gp at t + j, the window of x moved one step on each time (one new load)
    xp1 = _shifted(p_xrow, s_x_t, o_t, 1, m_d, L)
    b_dx += w2 * _gp(p_grow, s_g_t, o_t, 1, m_d, L, b_bias, w0, w1, w2, w3, xm2, xm1, x0, xp1, SILU)
    xp2 = _shifted(p_xrow, s_x_t, o_t, 2, m_d, L)
    b_dx += w1 * _gp(p_grow, s_g_t, o_t, 2, m_d, L, b_bias, w0, w1, w2, w3, xm1, x0, xp1, xp2, SILU)
    xp3 = _shifted(p_xrow, s_x_t, o_t, 3, m_d, L)
    b_dx += w0 * _gp(p_grow, s_g_t, o_t, 3, m_d, L, b_bias, w0, w1, w2, w3, x0, xp1, xp2, xp3, SILU)
    p = p_dx + i_b * s_dx_b + o_d[:, None] * s_dx_d + o_t[None, :] * s_dx_t
    tl.store(p, b_dx.to(p_dx.dtype.element_ty), mask=m_d[:, None] & m_t[None, :])


# --------------------------------------------------------------------------------------------------------
# Launchers


def _check(x, weight, bias, silu, kernel: bool) -> None:
    for name, t in (("x", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {getattr(t, 'dtype', type(t))}")
    if x.dim() != 3:
        raise ValueError(f"x must be (batch, d_inner, L), got shape {tuple(x.shape)}")
    d_inner = x.shape[1]
    if weight.dim() != 2 or weight.shape[0] != d_inner or not 1 <= weight.shape[1] <= MAX_D_CONV:
        raise ValueError(
            f"weight must be (d_inner, d_conv) with d_inner = {d_inner} and 1 <= d_conv <= {MAX_D_CONV}, "
            f"got shape {tuple(weight.shape)}"
        )
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (d_inner,)):
        raise ValueError(f"bias must be None or a ({d_inner},) tensor, got {getattr(bias, 'shape', bias)}")
    if not isinstance(silu, bool):
        raise TypeError(f"silu must be a bool, got {type(silu).__name__}")
    devices = {t.device for t in (x, weight, *([] if bias is None else [bias]))}
    if len(devices) != 1:
        raise ValueError(f"x, weight and bias must be on one device, got {sorted(map(str, devices))}")
    if kernel:
        if x.dtype == torch.float64:
            raise TypeError(
                "the Triton conv computes in fp32: x must be float32, float16 or bfloat16, got float64"
            )
        status = _triton_status()
        if not status.usable:
            raise RuntimeError(f"the Triton conv cannot run here: {status.reason}")
        if not x.is_cuda and not status.interpreted:
            raise ValueError(
                f"x is on {x.device}: the Triton conv needs CUDA tensors (or TRITON_INTERPRET=1)"
            )


@dataclasses.dataclass(frozen=True)
class ConvLaunch:
    """How a conv kernel is launched: one program per (sequence, ``block_d`` channels, ``block_t`` time
    steps), ``num_warps`` warps each. Both blocks are powers of two; they shrink to the tensor for tiny
    shapes (the CPU interpreter pays per element)."""

    block_d: int = 64
    block_t: int = 64
    num_warps: int = 4
    #: the backward only: load each shifted tile of x once (``_conv_bwd_window_kernel``) instead of
    #: d_conv times (``_conv_bwd_kernel``)
    window: bool = False

    def __post_init__(self):
        for name in ("block_d", "block_t", "num_warps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1 or v & (v - 1):
                raise ValueError(f"ConvLaunch.{name} must be a power of two >= 1, got {v!r}")
        if not isinstance(self.window, bool):
            raise ValueError(f"ConvLaunch.window must be a bool, got {self.window!r}")

    def blocks(self, d_inner: int, L: int) -> tuple[int, int]:
        """(BLOCK_D, BLOCK_T) for a (batch, d_inner, L) input."""
        return min(self.block_d, triton.next_power_of_2(d_inner)), min(
            self.block_t, triton.next_power_of_2(L)
        )


#: The forward's launch: 64 × 64 outputs per program, coalesced whichever of channel or time is the
#: contiguous axis.
FWD_LAUNCH = ConvLaunch(64, 64, 4)
#: The backward's: the kernel that loads each shifted tile of x once, 32 channels × 64 steps, 4 warps: the
#: fastest of the launches ``bench.py`` tries on an H100 on a time-contiguous x (the block's) at
#: (8, 1536, 2048) and (4, 4096, 2048) bf16, 1.3× the d_conv-loads kernel at 64 × 64, 8 warps
#: (``results.json``).
BWD_LAUNCH = ConvLaunch(32, 64, 4, window=True)


def _launch_arg(launch, default: ConvLaunch) -> ConvLaunch:
    if launch is None:
        return default
    if not isinstance(launch, ConvLaunch):
        raise TypeError(f"launch must be a ConvLaunch or None, got {type(launch).__name__}")
    return launch


def causal_conv1d_fwd(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    silu: bool = True,
    *,
    launch: ConvLaunch | None = None,
) -> Tensor:
    """x (batch, d_inner, L), weight (d_inner, d_conv ≤ 4), bias (d_inner,) -> out (batch, d_inner, L),
    contiguous, in x's dtype (fp32 arithmetic), SiLU applied if ``silu``. No autograd: see ``causal_conv1d_fn``.
    ``launch`` overrides ``FWD_LAUNCH`` (the benchmark tries others)."""
    _check(x, weight, bias, silu, kernel=True)
    launch = _launch_arg(launch, FWD_LAUNCH)
    batch, d_inner, L = x.shape
    out = torch.empty(batch, d_inner, L, dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    bd, bt = launch.blocks(d_inner, L)
    _conv_fwd_kernel[(batch, triton.cdiv(d_inner, bd), triton.cdiv(L, bt))](
        x, weight, weight if bias is None else bias, out, d_inner, L,
        *x.stride(), *weight.stride(), *out.stride(),
        D_CONV=weight.shape[1], BLOCK_D=bd, BLOCK_T=bt, HAS_BIAS=bias is not None, SILU=silu,
        num_warps=launch.num_warps,
    )  # fmt: skip
    return out


def causal_conv1d_bwd(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    dout: Tensor,
    silu: bool = True,
    *,
    launch: ConvLaunch | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The gradients (dx in x's dtype, dweight in weight's dtype, dbias in bias's dtype or None) of
    ``causal_conv1d_fwd(x, weight, bias, silu)`` for the output gradient ``dout`` (batch, d_inner, L).
    ``launch`` overrides ``BWD_LAUNCH``."""
    _check(x, weight, bias, silu, kernel=True)
    launch = _launch_arg(launch, BWD_LAUNCH)
    if not isinstance(dout, torch.Tensor) or tuple(dout.shape) != tuple(x.shape) or dout.device != x.device:
        raise ValueError(
            f"dout must be a tensor shaped like x {tuple(x.shape)} on {x.device}, got {getattr(dout, 'shape', dout)}"
        )
    batch, d_inner, L = x.shape
    d_conv = weight.shape[1]
    dx = torch.empty(batch, d_inner, L, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        dw = torch.zeros_like(weight)
        return dx, dw, None if bias is None else torch.zeros_like(bias)
    bd, bt = launch.blocks(d_inner, L)
    n_t = triton.cdiv(L, bt)
    dw_part = torch.empty(batch * n_t, d_inner, d_conv, dtype=torch.float32, device=x.device)
    db_part = (
        torch.empty(batch * n_t, d_inner, dtype=torch.float32, device=x.device) if bias is not None else None
    )
    kernel = _conv_bwd_window_kernel if launch.window else _conv_bwd_kernel
    kernel[(batch, triton.cdiv(d_inner, bd), n_t)](
        x, weight, weight if bias is None else bias, dout, dx, dw_part, dw_part if db_part is None else db_part,
        d_inner, L, *x.stride(), *weight.stride(), *dout.stride(), *dx.stride(),
        D_CONV=d_conv, BLOCK_D=bd, BLOCK_T=bt, HAS_BIAS=bias is not None, SILU=silu,
        num_warps=launch.num_warps,
    )  # fmt: skip
    dw = dw_part.sum(0).to(weight.dtype)
    db = None if db_part is None else db_part.sum(0).to(bias.dtype)
    return dx, dw, db


def causal_conv1d_ref(x: Tensor, weight: Tensor, bias: Tensor | None = None, silu: bool = True) -> Tensor:
    """The same conv in PyTorch, as ``MambaMixer.forward`` writes it (``F.conv1d`` padded by d_conv − 1 on
    both sides, the first L outputs kept), in fp32 (fp64 for fp64 x), returned in x's dtype.
    Differentiable by autograd: the reference for the backward too."""
    _check(x, weight, bias, silu, kernel=False)
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    d_inner, d_conv = weight.shape
    w = weight.to(ct)[:, None, :]  # (d_inner, 1, d_conv): groups = d_inner, one input channel each
    b = None if bias is None else bias.to(ct)
    out = F.conv1d(x.to(ct), w, b, padding=d_conv - 1, groups=d_inner)[..., : x.shape[-1]]
    return (F.silu(out) if silu else out).to(x.dtype)


# --------------------------------------------------------------------------------------------------------
# Autograd: a custom op for torch.compile (with a fake implementation, so that the compiler traces shapes
# without entering Triton), and an autograd.Function with the same kernels for eager calls, where the
# custom op's dispatcher would add host time to every call.


@torch.library.custom_op("minimamba::causal_conv1d_fwd", mutates_args=())
def _fwd_op(x: Tensor, weight: Tensor, bias: Tensor | None, silu: bool) -> Tensor:
    return causal_conv1d_fwd(x, weight, bias, silu)


@_fwd_op.register_fake
def _(x, weight, bias, silu):
    return x.new_empty(x.shape)


@torch.library.custom_op("minimamba::causal_conv1d_bwd", mutates_args=())
def _bwd_op(
    x: Tensor, weight: Tensor, bias: Tensor | None, dout: Tensor, silu: bool
) -> tuple[Tensor, Tensor, Tensor]:
    dx, dw, db = causal_conv1d_bwd(x, weight, bias, dout, silu)
    return dx, dw, x.new_empty(0, dtype=torch.float32) if db is None else db


@_bwd_op.register_fake
def _(x, weight, bias, dout, silu):
    db = x.new_empty(0, dtype=torch.float32) if bias is None else torch.empty_like(bias)
    return x.new_empty(x.shape), torch.empty_like(weight), db


def _setup_context(ctx, inputs, output):
    x, weight, bias, silu = inputs
    ctx.save_for_backward(x, weight, bias)  # x, not the output: the backward recomputes it
    ctx.silu = silu


def _op_backward(ctx, dout):
    x, weight, bias = ctx.saved_tensors
    dx, dw, db = _bwd_op(x, weight, bias, dout, ctx.silu)
    return dx, dw, None if bias is None else db, None


_fwd_op.register_autograd(_op_backward, setup_context=_setup_context)


class _EagerConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, silu):
        ctx.save_for_backward(x, weight, bias)
        ctx.silu = silu
        return causal_conv1d_fwd(x, weight, bias, silu)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        x, weight, bias = ctx.saved_tensors
        dx, dw, db = causal_conv1d_bwd(x, weight, bias, dout, ctx.silu)
        return dx, dw, db, None


def causal_conv1d_fn(x: Tensor, weight: Tensor, bias: Tensor | None = None, silu: bool = True) -> Tensor:
    """The fused causal depthwise conv (+ SiLU) with autograd: the same values as ``causal_conv1d_ref``.

    Args:
        x: (batch, d_inner, L), fp32/fp16/bf16, any strides. weight: (d_inner, d_conv), d_conv ≤ 4.
        bias: (d_inner,) or None. silu: apply SiLU to the output.
    Returns:
        (batch, d_inner, L), contiguous, in x's dtype. Autograd saves x (not the output) and the backward
        recomputes the conv. Under ``torch.compile`` it is the custom op ``minimamba::causal_conv1d_fwd``.
    """
    _check(x, weight, bias, silu, kernel=not torch.compiler.is_compiling())
    if torch.compiler.is_compiling():
        return _fwd_op(x, weight, bias, silu)
    return _EagerConv.apply(x, weight, bias, silu)
