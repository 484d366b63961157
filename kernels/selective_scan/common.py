"""What the forward and backward kernels share: constants, Triton helpers, and small host-side helpers.

``softplus``, ``split4``/``join4`` and ``delta_tile`` are ``@triton.jit`` functions, inlined into every
kernel that calls them; the rest runs on the host (``launch_sizes``: blocks of channels and segments, the
same rule for the forward and the backward).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = [
    "CHUNK",
    "LN2",
    "LOG2E",
    "T",
    "cdiv",
    "contiguous",
    "delta_tile",
    "join4",
    "launch_sizes",
    "pick_block_d",
    "pick_seg_len",
    "plan_key",
    "pow2",
    "softplus",
    "split4",
]

#: Time steps per iteration of the channel kernels, inside one thread (tiles of 4 steps, see ``split4``).
T = 4
#: The forward saves the state entering every CHUNK steps for the backward, which walks a chunk as two
#: tiles of 4 steps: it must be 8.
CHUNK = 8

# exp(x) = exp2(x · log2 e): exp2 is the GPU's native special function
LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def softplus(x):
    """log(1 + eˣ) = max(x, 0) + log1p(e^-|x|), accurate to float32 rounding for every x.

    log1p(e) = 2·atanh(s) with s = e / (2 + e) ∈ (0, 1/3], and 2·atanh(s) = 2s(1 + s²/3 + s⁴/5 + …): eight
    terms leave a relative error below 2e-9 — no library log (about 25 instructions) and no cancellation.
    """
    e = tl.exp2(-tl.abs(x) * LOG2E)  # (0, 1]
    s = tl.fdiv(e, 2.0 + e)
    s2 = s * s
    p = 1.0 / 15.0
    p = p * s2 + 1.0 / 13.0
    p = p * s2 + 1.0 / 11.0
    p = p * s2 + 1.0 / 9.0
    p = p * s2 + 1.0 / 7.0
    p = p * s2 + 1.0 / 5.0
    p = p * s2 + 1.0 / 3.0
    p = p * s2 + 1.0
    return tl.maximum(x, 0.0) + 2.0 * s * p


@triton.jit
def split4(x):
    """A (..., 4) tensor whose last axis lives in one thread → its four (...) slices, t = 0, 1, 2, 3."""
    p, q = tl.split(tl.reshape(x, x.shape[:-1] + [2, 2]))  # p: t = 0, 2; q: t = 1, 3
    x0, x2 = tl.split(p)
    x1, x3 = tl.split(q)
    return x0, x1, x2, x3


@triton.jit
def join4(x0, x1, x2, x3):
    """The inverse of split4: four (...) tensors → (..., 4)."""
    return tl.reshape(tl.join(tl.join(x0, x2), tl.join(x1, x3)), x0.shape + [4])


@triton.jit
def delta_tile(b_raw, b_bias, m, HAS_DELTA_BIAS: tl.constexpr, DELTA_SOFTPLUS: tl.constexpr):
    """The time step of a (BLOCK_D, steps) tile, from the raw ``delta`` loaded as fp32: Δ = softplus(delta +
    delta_bias) (each part when switched on), and 0 where ``m`` is off (past the end: exp(0·A) = 1 and
    Δ·u = 0, the state passes unchanged). ``b_bias``: (BLOCK_D,), read only with HAS_DELTA_BIAS.

    Returns (delta + delta_bias, Δ): the backward needs the first for softplus' derivative."""
    if HAS_DELTA_BIAS:
        b_raw += b_bias[:, None]
    if DELTA_SOFTPLUS:
        b_dt = softplus(b_raw)
    else:
        b_dt = b_raw
    b_dt = tl.where(m, b_dt, 0.0)
    return b_raw, b_dt


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) on the host: ``triton.cdiv`` is a ConstexprFunction whose call costs ~15 µs of host time,
    paid several times per scan call."""
    return -(-a // b)


def pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << max(0, (int(n) - 1).bit_length())


def contiguous(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """t contiguous (and in ``dtype``), in one copy at most (``.to(dtype, memory_format=...)`` alone returns
    a non-contiguous tensor of that dtype unchanged)."""
    if dtype is None or t.dtype == dtype:
        return t.contiguous()
    return t.to(dtype, memory_format=torch.contiguous_format)


# ---- launch sizes, shared by the forward and the backward ----


def pick_block_d(batch: int, d_inner: int, d_per_group: int, want: int) -> int:
    """The largest power of two <= ``want`` such that a block of channels never straddles two groups."""
    block_d = want
    if d_per_group != d_inner:  # several groups: the block must divide the group size
        while block_d > 1 and d_per_group % block_d:
            block_d //= 2
    return max(1, min(block_d, pow2(d_inner)))


def pick_seg_len(programs: int, L: int, target: int) -> int:
    """Steps per segment: enough segments that batch · channel blocks · segments reaches ``target``
    programs (one segment when there are that many already), each a multiple of CHUNK steps."""
    n_seg = max(1, min(-(-target // max(programs, 1)), L // (4 * CHUNK)))
    seg = -(-L // n_seg)
    return max(CHUNK, -(-seg // CHUNK) * CHUNK)


def launch_sizes(cfg: dict, batch: int, d_inner: int, d_per_group: int, L: int, chunk: int) -> tuple:
    """(block_d, seg_len, n_seg) from a configuration: block_d defaults to one channel per thread
    (32 · num_warps); seg_len, when not given, comes from the ``target`` number of programs."""
    block_d = pick_block_d(batch, d_inner, d_per_group, cfg.get("block_d") or 32 * cfg["num_warps"])
    seg_len = cfg.get("seg_len") or pick_seg_len(batch * cdiv(d_inner, block_d), L, cfg["target"])
    seg_len = max(chunk, -(-int(seg_len) // chunk) * chunk)
    return block_d, seg_len, max(1, cdiv(L, seg_len))


def plan_key(u: torch.Tensor, N: int, groups: int, chunk: int, flags: tuple, overrides: dict, launch: dict):
    """What a launch plan (fwd or bwd) depends on: the shapes, the device's kind, u's dtype, the switches
    and the launch sizes asked for."""
    return (
        *u.shape,
        N,
        groups,
        chunk,
        u.is_cuda,
        u.dtype,
        flags,
        tuple(overrides.items()),
        tuple(launch.items()),
    )
