"""One decoding step of the causal depthwise conv1d (Mamba §3.4, Figure 3: the "Conv" box), fused.

In generation the conv keeps a window of its last ``d_conv`` inputs per channel (``conv_state``, oldest
first). For a new input x_t (batch, d_inner) one step is

    window ← (window[1:], x_t)                  shift in the new input (in place)
    out_d  = Σ_k window[d, k] · w[d, k] + b_d   the conv at the newest position (depthwise: per channel)
    out    = SiLU(out)                          the block's activation after the conv

In PyTorch (``MambaMixer.step``) that is six kernels — roll, copy, the new column, the product, the sum,
the bias — plus SiLU; each reads and writes the (batch, d_inner, d_conv) window or a (batch, d_inner)
vector. Here one program per (sequence, block of channels) loads its window once, shifts it in
registers, writes it back and computes the output: one launch, every byte read and written once
(``batch · d_inner · (2 · d_conv + 2)`` elements). At batch 1 the time is the launch, so the fusion is
what matters; mamba_ssm calls causal_conv1d's CUDA ``causal_conv1d_update`` for the same job.

Naming: ``p_`` pointers, ``b_`` blocks (values in registers), ``m_`` masks, ``o_`` offsets, ``s_`` strides.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

__all__ = ["causal_conv1d_update", "causal_conv1d_update_ref"]


@triton.jit
def _conv_update_kernel(
    p_state,  # conv_state (batch, d_inner, d_conv), oldest input first; updated in place
    p_x,  # the new input x_t (batch, d_inner)
    p_w,  # depthwise weights (d_inner, d_conv)
    p_b,  # bias (d_inner,); not read without HAS_BIAS
    p_out,  # output (batch, d_inner), x's dtype
    d_inner,  # channels
    s_state_b,  # strides of conv_state: sequence, channel, tap
    s_state_d,
    s_state_k,
    s_x_b,  # strides of x: sequence, channel
    s_x_d,
    s_w_d,  # strides of w: channel, tap
    s_w_k,
    s_out_b,  # strides of out: sequence, channel
    s_out_d,
    D_CONV: tl.constexpr,  # taps (4 in Mamba)
    BLOCK_K: tl.constexpr,  # D_CONV rounded up to a power of 2
    BLOCK_D: tl.constexpr,  # channels per program
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,  # apply SiLU to the output
):
    i_b, i_d = tl.program_id(0), tl.program_id(1)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)  # this program's channels
    o_k = tl.arange(0, BLOCK_K)  # taps
    m_d = o_d < d_inner
    m_dk = m_d[:, None] & (o_k[None, :] < D_CONV)
    p_row = p_state + i_b * s_state_b + o_d[:, None] * s_state_d
    # the shifted window: taps 1 … d_conv−1 move one to the left, the new input becomes the last tap
    m_old = m_d[:, None] & (o_k[None, :] < D_CONV - 1)
    b_win = tl.load(p_row + (o_k[None, :] + 1) * s_state_k, mask=m_old, other=0.0).to(tl.float32)
    b_x = tl.load(p_x + i_b * s_x_b + o_d * s_x_d, mask=m_d, other=0.0).to(tl.float32)  # (BLOCK_D,)
    b_win = tl.where(o_k[None, :] == D_CONV - 1, b_x[:, None], b_win)  # (BLOCK_D, BLOCK_K)
    tl.store(p_row + o_k[None, :] * s_state_k, b_win.to(p_state.dtype.element_ty), mask=m_dk)
    b_w = tl.load(p_w + o_d[:, None] * s_w_d + o_k[None, :] * s_w_k, mask=m_dk, other=0.0).to(tl.float32)
    b_out = tl.sum(b_win * b_w, axis=1)  # (BLOCK_D,) the conv at the newest position
    if HAS_BIAS:
        b_out += tl.load(p_b + o_d, mask=m_d, other=0.0).to(tl.float32)
    if SILU:
        b_out = b_out * tl.sigmoid(b_out)
    tl.store(p_out + i_b * s_out_b + o_d * s_out_d, b_out.to(p_out.dtype.element_ty), mask=m_d)


def _check(conv_state, x, weight, bias) -> None:
    tensors = {"conv_state": conv_state, "x": x, "weight": weight}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {getattr(t, 'dtype', type(t))}")
    if conv_state.dim() != 3:
        raise ValueError(f"conv_state must be (batch, d_inner, d_conv), got shape {tuple(conv_state.shape)}")
    batch, d_inner, d_conv = conv_state.shape
    if x.shape != (batch, d_inner):
        raise ValueError(f"x must be (batch, d_inner) = {(batch, d_inner)}, got {tuple(x.shape)}")
    if weight.shape != (d_inner, d_conv):
        raise ValueError(f"weight must be (d_inner, d_conv) = {(d_inner, d_conv)}, got {tuple(weight.shape)}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (d_inner,)):
        raise ValueError(f"bias must be None or a ({d_inner},) tensor, got {getattr(bias, 'shape', bias)}")
    devices = {t.device for t in (conv_state, x, weight, *([] if bias is None else [bias]))}
    if len(devices) != 1:
        raise ValueError(
            f"conv_state, x, weight and bias must be on one device, got {sorted(map(str, devices))}"
        )


def causal_conv1d_update(
    conv_state: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    silu: bool = True,
) -> torch.Tensor:
    """One conv step: conv_state (batch, d_inner, d_conv) updated in place, x (batch, d_inner),
    weight (d_inner, d_conv), bias (d_inner,) -> out (batch, d_inner) in x's dtype (SiLU applied if ``silu``).
    """
    _check(conv_state, x, weight, bias)
    batch, d_inner, d_conv = conv_state.shape
    out = torch.empty_like(x)
    if out.numel() == 0:
        return out
    block_d = min(256, triton.next_power_of_2(d_inner))
    grid = (batch, triton.cdiv(d_inner, block_d))
    _conv_update_kernel[grid](
        conv_state,
        x,
        weight,
        weight if bias is None else bias,
        out,
        d_inner,
        *conv_state.stride(),
        *x.stride(),
        *weight.stride(),
        *out.stride(),
        D_CONV=d_conv,
        BLOCK_K=triton.next_power_of_2(d_conv),
        BLOCK_D=block_d,
        HAS_BIAS=bias is not None,
        SILU=silu,
    )
    return out


def causal_conv1d_update_ref(
    conv_state: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    silu: bool = True,
) -> torch.Tensor:
    """The same step in PyTorch (as ``MambaMixer.step`` writes it), in fp32; conv_state updated in place."""
    _check(conv_state, x, weight, bias)
    window = torch.cat([conv_state[..., 1:], x[..., None].to(conv_state.dtype)], dim=-1)
    conv_state.copy_(window)
    out = (window.float() * weight.float()).sum(-1)  # (batch, d_inner)
    if bias is not None:
        out = out + bias.float()
    return (F.silu(out) if silu else out).to(x.dtype)
