"""The fused selective scan, backward: recompute the states, run the adjoint backwards, reduce.

Forward (per batch b, channel d, state n; see fwd.py):  a_t = exp(Δ_t A),  x_t = Δ_t B_t u_t,
h_t = a_t h_{t-1} + x_t,  y'_t = C_t·h_t + D u_t,  y_t = y'_t · silu(z_t).

Given dy, with g_t = dy_t · silu(z_t) the gradient of y'_t, the adjoint λ_t = ∂loss/∂h_t obeys the
transposed recurrence, which runs backwards in time:

    λ_t = g_t C_t + μ_t,     μ_t = a_{t+1} λ_{t+1}   (μ = dh_last after the last step)

and every gradient is a product of λ with something the forward had (Mamba §3.3.2, "recomputation": the
states h are not stored; they are recomputed from the state the forward saved every CHUNK steps):

    dC_t = Σ_d g_t h_t          dB_t = Σ_d λ_t Δ_t u_t          dD = Σ_t g_t u_t
    du_t = Δ_t Σ_n λ_t B_t + D g_t
    dΔ_t = u_t Σ_n λ_t B_t + Σ_n λ_t (a_t h_{t-1}) A        (a_t h_{t-1} = h_t − x_t)
    dA   = Σ_t λ_t (a_t h_{t-1}) Δ_t                         dh0 = μ before the first step = a_0 λ_0
    dz_t = dy_t · y'_t · silu'(z_t),   ddelta = dΔ · sigmoid(delta + delta_bias) with softplus

**Layout**, as in the forward: one thread per channel with all N states in its registers, 32 · num_warps
channels per program, 4 steps per tile. The sums over states (Σ_n) stay inside the thread; the sums over
channels (dB, dC) cross the threads of the program and then the programs (fp32 atomics); each program then
counts itself done on its segment, and the last to finish writes the segment's dB, dC out, in B's and C's
dtype and (N, L) layout.

**Order.** Tiles of 4 steps, from the last to the first. Each starts from the state the forward saved at
the start of its CHUNK = 8 steps (advanced over the chunk's first tile when it is the second one),
recomputes its 4 states forwards, keeps them in registers, and walks them backwards. No (batch, d_inner,
L, N) tensor is ever written.

**Segments** (few sequences · channels): as in the forward, a first pass (``STATE_ONLY``) runs the adjoint
of every segment from μ = 0 (the last segment from dh_last) and keeps the μ it ends with; the main pass starts each segment from the μ
combined from the segments after it: μ_in[s] = exp(A · ΣΔ[s+1]) ⊙ μ_in[s+1] + μ_end[s+1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .common import CHUNK, LN2, LOG2E, cdiv, delta_tile, join4, launch_sizes, plan_key, pow2, split4
from .fast_launch import launch

__all__ = ["BackwardPlan", "default_config", "plan", "selective_scan_bwd", "selective_scan_bwd_kernel"]

#: Launch sizes that replace the defaults on a GPU (bench.py sets them while it tries configurations).
OVERRIDES: dict = {}
#: The last compiled kernel launched (bench.py and profile.py read its registers and spills).
LAST: list = []


# shfl.sync.bfly: every thread of the warp swaps a register with the thread whose lane differs in one bit
_BFLY16 = tl.constexpr("shfl.sync.bfly.b32 $0, $1, 16, 0x1f, 0xffffffff;")
_BFLY8 = tl.constexpr("shfl.sync.bfly.b32 $0, $1, 8, 0x1f, 0xffffffff;")
_BFLY4 = tl.constexpr("shfl.sync.bfly.b32 $0, $1, 4, 0x1f, 0xffffffff;")
_BFLY2 = tl.constexpr("shfl.sync.bfly.b32 $0, $1, 2, 0x1f, 0xffffffff;")
_BFLY1 = tl.constexpr("shfl.sync.bfly.b32 $0, $1, 1, 0x1f, 0xffffffff;")


@triton.jit
def _swap_add(v, lane, BIT: tl.constexpr, ASM: tl.constexpr):
    """One level of a reduce-scatter across the warp: the values of each thread, in pairs (2m, 2m+1);
    the thread whose lane has bit BIT set keeps the odd ones and sends the even ones to its partner
    (lane ^ 2^BIT), the other keeps the even ones; each adds what it receives. Half the values remain."""
    lo, hi = tl.split(tl.reshape(v, [v.shape[0], v.shape[1] // 2, 2]))
    odd = ((lane >> BIT) & 1)[:, None] != 0
    send = tl.where(odd, lo, hi).to(tl.int32, bitcast=True)
    got = tl.inline_asm_elementwise(ASM, "=r,r", [send], dtype=tl.int32, is_pure=True, pack=1)
    return tl.where(odd, hi, lo) + got.to(tl.float32, bitcast=True)


@triton.jit
def _channel_sums(p_dB, p_dC, rs_off, rs_mask, lane, pB, pC, tN):
    """dB_t and dC_t: the sums over the warp's 32 channels of pB = λ Δu and pC = g h ((BLOCK_D, BLOCK_N)
    each), added to HBM with fp32 atomics.

    A butterfly (``tl.sum``) would leave every sum in every thread: 5 shuffles per value and thread. A
    reduce-scatter halves the values at each of the 5 levels (31 shuffles for the 32 values of a thread)
    and leaves thread ℓ with the sums of entries 32 j + bitreverse(ℓ): (state, dB or dC) = divmod(·, 2).
    """
    v = tl.reshape(tl.join(pB, pC), [pB.shape[0], 2 * pB.shape[1]])  # entry 2n + (0: dB, 1: dC)
    v = _swap_add(v, lane, 4, _BFLY16)
    v = _swap_add(v, lane, 3, _BFLY8)
    v = _swap_add(v, lane, 2, _BFLY4)
    v = _swap_add(v, lane, 1, _BFLY2)
    v = _swap_add(v, lane, 0, _BFLY1)
    p = tl.where((rs_off & 1) == 0, p_dB, p_dC) + (rs_off >> 1) + tN
    tl.atomic_add(p, v, mask=rs_mask, sem="relaxed")


@triton.jit
def _step_grads(lam, h, dt, u, g, B, C, b_A2, b_dA, p_dB, p_dC, rs_off, rs_mask, lane, t, N, t_end,
                RS: tl.constexpr):  # fmt: skip
    """The gradients of one step t, given λ_t and h_t ((BLOCK_D, BLOCK_N) each).

    Returns dΔ_t (before softplus'), Σ_n λ B, dB_t and dC_t (summed over the program's channels; with
    RS added to HBM here instead, and zeros returned), C·h (y' without D u) and the updated dA.
    """
    du = dt * u
    q = lam * (h - du[:, None] * B[None, :])  # λ_t ⊙ a_t h_{t-1}, as h_t − x_t
    s_lb = tl.sum(lam * B[None, :], axis=1)  # (BLOCK_D,)
    ddt = u * s_lb + tl.sum(q * b_A2, axis=1) * LN2  # A = A2 · ln 2: one tensor fewer in registers
    b_dA += q * dt[:, None]
    yp = tl.sum(h * C[None, :], axis=1)
    if RS:
        m = rs_mask & (rs_off * 0 + t < t_end)  # this step exists
        _channel_sums(p_dB, p_dC, rs_off, m, lane, lam * du[:, None], g[:, None] * h, t * N)
        dB = tl.zeros([B.shape[0]], dtype=tl.float32)
        dC = dB
    else:
        dB = tl.sum(lam * du[:, None], axis=0)  # (BLOCK_N,) over the channels of the program
        dC = tl.sum(g[:, None] * h, axis=0)
    return ddt, s_lb, dB, dC, yp, b_dA


@triton.jit
def _vec(p_row, m_n, N, t, t_end, EVEN: tl.constexpr):
    """B_t or C_t: (BLOCK_N,) fp32, 0 past t_end, loaded where it is used (a tile would hold 64 registers).
    EVEN: every tile is whole and N is a power of two, so no mask (and no zeroing of registers)."""
    if EVEN:
        return tl.load(p_row + t * N)
    return tl.load(p_row + t * N, mask=m_n & (m_n.to(tl.int32) * 0 + t < t_end), other=0.0)


@triton.jit
def _tile_bwd(b_h, b_mu, b_dt, b_u, b_g, p_Brow, p_Crow, m_n, N, t0, t_end, b_A2, b_dA,
              p_dB, p_dC, rs_off, rs_mask, lane, RS: tl.constexpr, EVEN: tl.constexpr):  # fmt: skip
    """Four steps backwards. b_h: the state before the tile; b_mu: a_{t+1} λ_{t+1} after the tile.

    Returns μ before the tile, the (BLOCK_D, 4) tiles dΔ, Σ_n λB, y' − D u, the (BLOCK_N, 4) tiles dB, dC
    (zeros with RS: added to HBM step by step) and dA.
    """
    dt0, dt1, dt2, dt3 = split4(b_dt)
    u0, u1, u2, u3 = split4(b_u)
    g0, g1, g2, g3 = split4(b_g)
    # recompute the 4 states forwards and keep them
    B = _vec(p_Brow, m_n, N, t0, t_end, EVEN)
    h0 = tl.exp2(dt0[:, None] * b_A2) * b_h + (dt0 * u0)[:, None] * B[None, :]
    B = _vec(p_Brow, m_n, N, t0 + 1, t_end, EVEN)
    h1 = tl.exp2(dt1[:, None] * b_A2) * h0 + (dt1 * u1)[:, None] * B[None, :]
    B = _vec(p_Brow, m_n, N, t0 + 2, t_end, EVEN)
    h2 = tl.exp2(dt2[:, None] * b_A2) * h1 + (dt2 * u2)[:, None] * B[None, :]
    B = _vec(p_Brow, m_n, N, t0 + 3, t_end, EVEN)
    h3 = tl.exp2(dt3[:, None] * b_A2) * h2 + (dt3 * u3)[:, None] * B[None, :]
    # walk them backwards: λ_t = g_t C_t + μ, then μ ← a_t λ_t (a_t recomputed: fewer registers)
    C = _vec(p_Crow, m_n, N, t0 + 3, t_end, EVEN)
    lam = g3[:, None] * C[None, :] + b_mu
    ddt3, slb3, dB3, dC3, yp3, b_dA = _step_grads(
        lam, h3, dt3, u3, g3, B, C, b_A2, b_dA, p_dB, p_dC, rs_off, rs_mask, lane, t0 + 3, N, t_end, RS
    )
    b_mu = tl.exp2(dt3[:, None] * b_A2) * lam
    B, C = _vec(p_Brow, m_n, N, t0 + 2, t_end, EVEN), _vec(p_Crow, m_n, N, t0 + 2, t_end, EVEN)
    lam = g2[:, None] * C[None, :] + b_mu
    ddt2, slb2, dB2, dC2, yp2, b_dA = _step_grads(
        lam, h2, dt2, u2, g2, B, C, b_A2, b_dA, p_dB, p_dC, rs_off, rs_mask, lane, t0 + 2, N, t_end, RS
    )
    b_mu = tl.exp2(dt2[:, None] * b_A2) * lam
    B, C = _vec(p_Brow, m_n, N, t0 + 1, t_end, EVEN), _vec(p_Crow, m_n, N, t0 + 1, t_end, EVEN)
    lam = g1[:, None] * C[None, :] + b_mu
    ddt1, slb1, dB1, dC1, yp1, b_dA = _step_grads(
        lam, h1, dt1, u1, g1, B, C, b_A2, b_dA, p_dB, p_dC, rs_off, rs_mask, lane, t0 + 1, N, t_end, RS
    )
    b_mu = tl.exp2(dt1[:, None] * b_A2) * lam
    B, C = _vec(p_Brow, m_n, N, t0, t_end, EVEN), _vec(p_Crow, m_n, N, t0, t_end, EVEN)
    lam = g0[:, None] * C[None, :] + b_mu
    ddt0, slb0, dB0, dC0, yp0, b_dA = _step_grads(
        lam, h0, dt0, u0, g0, B, C, b_A2, b_dA, p_dB, p_dC, rs_off, rs_mask, lane, t0, N, t_end, RS
    )
    b_mu = tl.exp2(dt0[:, None] * b_A2) * lam
    return (
        b_mu,
        join4(ddt0, ddt1, ddt2, ddt3),
        join4(slb0, slb1, slb2, slb3),
        join4(yp0, yp1, yp2, yp3),
        join4(dB0, dB1, dB2, dB3),
        join4(dC0, dC1, dC2, dC3),
        b_dA,
    )


@triton.jit
def _tile_adjoint(b_mu, b_dt, b_g, b_C, b_A2):
    """Four steps of the adjoint alone (the segment pass): μ ← a_t (g_t C_t + μ), t from last to first."""
    dt0, dt1, dt2, dt3 = split4(b_dt)
    g0, g1, g2, g3 = split4(b_g)
    C0, C1, C2, C3 = split4(b_C)
    b_mu = tl.exp2(dt3[:, None] * b_A2) * (g3[:, None] * C3[None, :] + b_mu)
    b_mu = tl.exp2(dt2[:, None] * b_A2) * (g2[:, None] * C2[None, :] + b_mu)
    b_mu = tl.exp2(dt1[:, None] * b_A2) * (g1[:, None] * C1[None, :] + b_mu)
    b_mu = tl.exp2(dt0[:, None] * b_A2) * (g0[:, None] * C0[None, :] + b_mu)
    return b_mu


@triton.jit
def _advance(b_h, p_u, p_delta, p_B, o_row_d, m_d, o_row_n, m_n, N, t0, t_end, b_bias, b_A2,
             HAS_DELTA_BIAS: tl.constexpr, DELTA_SOFTPLUS: tl.constexpr, EVEN: tl.constexpr):  # fmt: skip
    """The state after the 4 steps from t0, from the state before them (the forward's recurrence)."""
    o_l = t0 + tl.arange(0, 4)
    m_l = o_l < t_end
    o_dl = o_row_d[:, None] + o_l[None, :]
    m_dl = m_d[:, None] & m_l[None, :]
    if EVEN:
        b_u = tl.load(p_u + o_dl).to(tl.float32)
        b_dt = tl.load(p_delta + o_dl).to(tl.float32)
        b_B = tl.load(p_B + o_row_n[:, None] + o_l[None, :] * N)
    else:
        b_u = tl.load(p_u + o_dl, mask=m_dl, other=0.0).to(tl.float32)
        b_dt = tl.load(p_delta + o_dl, mask=m_dl, other=0.0).to(tl.float32)
        b_B = tl.load(p_B + o_row_n[:, None] + o_l[None, :] * N, mask=m_n[:, None] & m_l[None, :], other=0.0)
    _, b_dt = delta_tile(b_dt, b_bias, m_dl, HAS_DELTA_BIAS, DELTA_SOFTPLUS)
    d0, d1, d2, d3 = split4(b_dt)
    x0, x1, x2, x3 = split4(b_dt * b_u)
    B0, B1, B2, B3 = split4(b_B)
    b_h = tl.exp2(d0[:, None] * b_A2) * b_h + x0[:, None] * B0[None, :]
    b_h = tl.exp2(d1[:, None] * b_A2) * b_h + x1[:, None] * B1[None, :]
    b_h = tl.exp2(d2[:, None] * b_A2) * b_h + x2[:, None] * B2[None, :]
    return tl.exp2(d3[:, None] * b_A2) * b_h + x3[:, None] * B3[None, :]


@triton.jit
def _load_tile(
    p_u,
    p_delta,
    p_z,
    p_dy,
    o_row_d,
    m_d,
    o_row_n,
    m_n,
    N,
    t0,
    t_end,
    b_bias,
    HAS_Z: tl.constexpr,
    HAS_DELTA_BIAS: tl.constexpr,
    DELTA_SOFTPLUS: tl.constexpr,
    EVEN: tl.constexpr,
):
    """The 4 steps from t0: Δ (0 past t_end), the raw Δ + bias, u, z, dy, g = dy·silu(z), and the
    offsets and mask of the (BLOCK_N, 4) tile of B, C, dB, dC."""
    o_l = t0 + tl.arange(0, 4)
    m_l = o_l < t_end
    o_dl = o_row_d[:, None] + o_l[None, :]
    m_dl = m_d[:, None] & m_l[None, :]
    o_nl = o_row_n[:, None] + o_l[None, :] * N
    m_nl = m_n[:, None] & m_l[None, :]
    if EVEN:
        b_u = tl.load(p_u + o_dl).to(tl.float32)
        b_raw = tl.load(p_delta + o_dl).to(tl.float32)
        b_dy = tl.load(p_dy + o_dl).to(tl.float32)
    else:
        b_u = tl.load(p_u + o_dl, mask=m_dl, other=0.0).to(tl.float32)
        b_raw = tl.load(p_delta + o_dl, mask=m_dl, other=0.0).to(tl.float32)
        b_dy = tl.load(p_dy + o_dl, mask=m_dl, other=0.0).to(tl.float32)
    b_raw, b_dt = delta_tile(b_raw, b_bias, m_dl, HAS_DELTA_BIAS, DELTA_SOFTPLUS)
    if HAS_Z:
        if EVEN:
            b_z = tl.load(p_z + o_dl).to(tl.float32)
        else:
            b_z = tl.load(p_z + o_dl, mask=m_dl, other=0.0).to(tl.float32)
        b_sig = tl.sigmoid(b_z)
        b_g = b_dy * b_z * b_sig
    else:
        b_z = b_dy
        b_sig = b_dy
        b_g = b_dy
    return o_dl, m_dl, o_nl, m_nl, b_u, b_raw, b_dt, b_dy, b_z, b_sig, b_g


@triton.jit
def _clear(p_dA, p_dB, p_dC, p_dD, p_ddb, p_done, i_d, i_b, i_s, o_d, m_d, o_n, m_state, N, o_seq, t_lo,
           t_hi, d_per_group, BLOCK_D: tl.constexpr, HAS_D: tl.constexpr, HAS_DELTA_BIAS: tl.constexpr):  # fmt: skip
    """Zeros in what the main pass adds into, each element by one program of the segment pass: dB and dC
    of steps [t_lo, t_hi) of this sequence and group (they are contiguous: (L, N) rows) and the count of
    blocks done with them, by the group's first block of channels; dA, dD, ddelta_bias of its channels by
    the first sequence's first segment."""
    if (i_d * BLOCK_D) % d_per_group == 0:
        tl.store(p_done, 0.0)
        n = (t_hi - t_lo) * N
        o = o_seq + t_lo * N
        for j in range(0, n, 4 * BLOCK_D):
            o_z = j + tl.arange(0, 4 * BLOCK_D)
            tl.store(p_dB + o + o_z, tl.zeros([4 * BLOCK_D], dtype=tl.float32), mask=o_z < n)
            tl.store(p_dC + o + o_z, tl.zeros([4 * BLOCK_D], dtype=tl.float32), mask=o_z < n)
    if (i_b == 0) & (i_s == 0):
        tl.store(
            p_dA + o_d[:, None] * N + o_n[None, :], tl.zeros(m_state.shape, dtype=tl.float32), mask=m_state
        )
        if HAS_D:
            tl.store(p_dD + o_d, tl.zeros([BLOCK_D], dtype=tl.float32), mask=m_d)
        if HAS_DELTA_BIAS:
            tl.store(p_ddb + o_d, tl.zeros([BLOCK_D], dtype=tl.float32), mask=m_d)


@triton.jit
def _rows_out(p_rows, p_out, t_lo, t_hi, N, L, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    """dB (or dC) of steps [t_lo, t_hi) of one sequence and group: from the (L, N) fp32 rows the atomics
    added into (read from L2, where the atomics happened) to the (N, L) output, in its dtype."""
    o_n = tl.arange(0, BLOCK_N)
    for t in range(t_lo, t_hi, BLOCK_T):
        o_t = t + tl.arange(0, BLOCK_T)
        m = (o_n[:, None] < N) & (o_t[None, :] < t_hi)
        v = tl.load(p_rows + o_t[None, :] * N + o_n[:, None], mask=m, other=0.0, cache_modifier=".cg")
        tl.store(p_out + o_n[:, None] * L + o_t[None, :], v.to(p_out.dtype.element_ty), mask=m)


@triton.jit(do_not_specialize=["s_n"])
def selective_scan_bwd_kernel(
    # ---- what the forward had (contiguous) ----
    p_u,  # (batch, d_inner, L)
    p_delta,  # (batch, d_inner, L) raw time step
    p_A,  # (d_inner, N) fp32
    p_B,  # (batch, groups, L, N) fp32
    p_C,  # (batch, groups, L, N) fp32
    p_D,  # (d_inner,) fp32 (HAS_D)
    p_z,  # (batch, d_inner, L) (HAS_Z)
    p_delta_bias,  # (d_inner,) fp32 (HAS_DELTA_BIAS)
    p_h_chunks,  # (batch, n_chunks, N, d_inner) fp32: the state entering every CHUNK steps
    # ---- incoming gradients ----
    p_dy,  # (batch, d_inner, L)
    p_dh_last,  # (batch, d_inner, N) fp32 (HAS_DH_LAST)
    # ---- gradients out ----
    p_du,  # (batch, d_inner, L) in u's dtype
    p_ddelta,  # (batch, d_inner, L) in delta's dtype
    p_dz,  # (batch, d_inner, L) in z's dtype (HAS_Z)
    p_dB_out,  # (batch, groups, N, L) in B's dtype
    p_dC_out,  # (batch, groups, N, L) in C's dtype
    p_dh0,  # (batch, d_inner, N) fp32 (NEED_DH0)
    p_acc,  # fp32, zeroed where atomics add (by the segment pass with ZERO): the accumulators, below
    # ---- sizes ----
    d_inner,
    L,
    N,
    d_per_group,
    seg_len,  # a multiple of CHUNK
    s_n,  # 1, hidden from the compiler (see fwd.py)
    # ---- compile-time switches ----
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CHUNK: tl.constexpr,  # must be 8 and equal the forward's (the saved states sit at its edges)
    STAGES: tl.constexpr,
    STATE_ONLY: tl.constexpr,
    ZERO: tl.constexpr,  # the segment pass clears dA, dB, dC, dD, ddelta_bias (no fill launch before it)
    HAS_SEG: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_DELTA_BIAS: tl.constexpr,
    DELTA_SOFTPLUS: tl.constexpr,
    HAS_DH_LAST: tl.constexpr,
    NEED_DH0: tl.constexpr,
    RS: tl.constexpr,  # dB, dC summed over the warp by a reduce-scatter (a GPU with 32-thread warps)
    EVEN: tl.constexpr,  # L % 4 == 0, d_inner % BLOCK_D == 0, N a power of two: loads without masks
):
    tl.static_assert(CHUNK == 8, "the backward walks blocks of two 4-step tiles")
    # ---- 1. ownership and offsets, as in the forward ----
    i_d = tl.program_id(0)
    i_b = tl.program_id(1).to(tl.int64)
    i_s = tl.program_id(2)
    n_seg = tl.num_programs(2)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)
    m_d = o_d < d_inner
    o_n = tl.arange(0, BLOCK_N)
    m_n = o_n < N
    i_g = (i_d * BLOCK_D) // d_per_group
    n_groups = d_inner // d_per_group
    o_row_d = (i_b * d_inner + o_d) * L
    o_row_n = (i_b * n_groups + i_g) * L * N + o_n  # B, C, dB, dC at step 0; step t adds t·N
    o_n = o_n * s_n
    o_bd = i_b * d_inner + o_d[:, None]
    o_state = o_bd * N + o_n[None, :]
    m_state = m_d[:, None] & m_n[None, :]
    i_s_2d = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.int32) + i_s  # the segment, as a mask operand

    # the accumulators, one allocation: what every program adds to, and what the segment pass hands on
    n_rows = tl.num_programs(1).to(tl.int64) * n_groups * L * N
    p_dB = p_acc  # (batch, groups, L, N): dB_t of every block of channels added in rows
    p_dC = p_dB + n_rows  # (batch, groups, L, N)
    p_dA = p_dC + n_rows  # (d_inner, N)
    p_dD = p_dA + d_inner * N  # (d_inner,) (HAS_D)
    p_ddelta_bias = p_dD + d_inner  # (d_inner,) (HAS_DELTA_BIAS)
    p_seg_mu = p_ddelta_bias + d_inner  # (batch, d_inner, n_seg, N): per segment, μ before its first step
    #                                     from μ = 0 after it
    p_seg_dsum = p_seg_mu + tl.num_programs(1).to(tl.int64) * d_inner * n_seg * N  # (batch, d_inner, n_seg):
    #                                                                  per segment, the sum of its Δ
    p_done = p_seg_dsum + tl.num_programs(1).to(tl.int64) * d_inner * n_seg  # (batch, groups, n_seg): blocks
    #                                                      of channels done adding to a segment's dB, dC
    p_done += (i_b * n_groups + i_g) * n_seg + i_s

    b_A2 = tl.load(p_A + o_d[:, None] * N + o_n[None, :], mask=m_state, other=0.0) * LOG2E
    if HAS_D:
        b_D = tl.load(p_D + o_d, mask=m_d, other=0.0)
    if HAS_DELTA_BIAS:
        b_bias = tl.load(p_delta_bias + o_d, mask=m_d, other=0.0)
    else:
        b_bias = tl.zeros([BLOCK_D], dtype=tl.float32)

    if STATE_ONLY and ZERO:  # before the main pass adds into them: its atomics need zeros there
        _clear(p_dA, p_dB, p_dC, p_dD, p_ddelta_bias, p_done, i_d, i_b, i_s, o_d, m_d, o_n, m_state, N,
               (i_b * n_groups + i_g) * L * N, i_s * seg_len, tl.minimum(i_s * seg_len + seg_len, L),
               d_per_group, BLOCK_D, HAS_D, HAS_DELTA_BIAS)  # fmt: skip

    # ---- 2. μ after this segment: dh_last for the last one, combined from the later ones otherwise ----
    if HAS_DH_LAST:
        b_mu = tl.load(p_dh_last + o_state, mask=m_state & (i_s_2d == n_seg - 1), other=0.0)
    else:
        b_mu = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    if HAS_SEG and not STATE_ONLY:
        for k in range(0, n_seg - 1 - i_s):
            j = n_seg - 1 - k
            b_dsum = tl.load(p_seg_dsum + (i_b * d_inner + o_d) * n_seg + j, mask=m_d, other=0.0)
            b_mend = tl.load(p_seg_mu + (o_bd * n_seg + j) * N + o_n[None, :], mask=m_state, other=0.0)
            b_mu = tl.exp2(b_dsum[:, None] * b_A2) * b_mu + b_mend

    if RS:  # which sums each thread adds to HBM after the reduce-scatter (see _channel_sums)
        lane = tl.inline_asm_elementwise("mov.u32 $0, %laneid;", "=r,r", [o_d], dtype=tl.int32, is_pure=True,
                                         pack=1)  # fmt: skip
        rev = ((lane & 1) << 4) | ((lane & 2) << 2) | (lane & 4) | ((lane & 8) >> 2) | ((lane & 16) >> 4)
        rs_i = tl.arange(0, 2 * BLOCK_N // 32)[None, :] * 32 + rev[:, None]  # entry 2n + (0: dB, 1: dC)
        rs_off = (((i_b * n_groups + i_g) * L * N + rs_i // 2) << 1) | (rs_i & 1)  # (offset, which)
        rs_n_ok = rs_i // 2 < N
    else:
        lane = o_d
        rs_off = o_d[:, None].to(tl.int64)
        rs_n_ok = m_d[:, None]
    b_dA = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)  # per-program partial sums
    b_dD = tl.zeros([BLOCK_D], dtype=tl.float32)
    b_ddb = tl.zeros([BLOCK_D], dtype=tl.float32)
    b_dsum = tl.zeros([BLOCK_D], dtype=tl.float32)

    # ---- 3. tiles of 4 steps from the last to the first ----
    t_start = i_s * seg_len
    t_end = tl.minimum(t_start + seg_len, L)
    k_lo = t_start // 4
    k_hi = tl.cdiv(t_end, 4)
    n_chunks = tl.cdiv(L, CHUNK)
    n_tiles = k_hi - k_lo
    if STATE_ONLY:  # the first segment's μ is never read (nothing comes before it): only its zeros
        n_tiles = n_tiles * (i_s > 0)
    for i in tl.range(0, n_tiles, num_stages=STAGES):
        k = k_hi - 1 - i  # this tile: steps 4k … 4k+3
        t0 = k * 4
        o_dl, m_dl, o_nl, m_nl, b_u, b_raw, b_dt, b_dy, b_z, b_sig, b_g = _load_tile(
            p_u, p_delta, p_z, p_dy, o_row_d, m_d, o_row_n, m_n, N, t0, t_end, b_bias,
            HAS_Z, HAS_DELTA_BIAS, DELTA_SOFTPLUS, EVEN)  # fmt: skip
        if STATE_ONLY:
            b_dsum += tl.sum(b_dt, axis=1)
            b_mu = _tile_adjoint(b_mu, b_dt, b_g, tl.load(p_C + o_nl, mask=m_nl, other=0.0), b_A2)
        else:
            # the state entering the tile: the one saved at the start of its 8-step chunk, advanced over
            # the chunk's first tile when this is the second
            o_hc = ((i_b * n_chunks + k // 2) * N + o_n[None, :]) * d_inner + o_d[:, None] * s_n
            b_h = tl.load(p_h_chunks + o_hc, mask=m_state, other=0.0)
            if k % 2 == 1:
                b_h = _advance(b_h, p_u, p_delta, p_B, o_row_d, m_d, o_row_n, m_n, N, t0 - 4, t_end, b_bias, b_A2,
                               HAS_DELTA_BIAS, DELTA_SOFTPLUS, EVEN)  # fmt: skip
            b_mu, b_ddt, b_slb, b_yp, b_dBt, b_dCt, b_dA = _tile_bwd(
                b_h, b_mu, b_dt, b_u, b_g, p_B + o_row_n, p_C + o_row_n, m_n, N, t0, t_end, b_A2, b_dA,
                p_dB, p_dC, rs_off, rs_n_ok, lane, RS, EVEN,
            )  # fmt: skip
            b_du = b_dt * b_slb
            if HAS_D:
                b_du += b_D[:, None] * b_g
                b_dD += tl.sum(b_g * b_u, axis=1)
                b_yp += b_D[:, None] * b_u
            if HAS_Z:  # y' = C·h + D u recomputed; silu'(z) = σ(z)(1 + z(1 − σ(z)))
                b_dz = b_dy * b_yp * b_sig * (1.0 + b_z * (1.0 - b_sig))
                tl.store(p_dz + o_dl, b_dz.to(p_dz.dtype.element_ty), mask=m_dl)
            if DELTA_SOFTPLUS:
                b_ddt *= tl.sigmoid(b_raw)
            b_ddt = tl.where(m_dl, b_ddt, 0.0)
            if HAS_DELTA_BIAS:
                b_ddb += tl.sum(b_ddt, axis=1)
            tl.store(p_du + o_dl, b_du.to(p_du.dtype.element_ty), mask=m_dl)
            tl.store(p_ddelta + o_dl, b_ddt.to(p_ddelta.dtype.element_ty), mask=m_dl)
            if not RS:  # dB, dC: summed over this program's channels, added to the other programs'
                tl.atomic_add(p_dB + o_nl, b_dBt, mask=m_nl, sem="relaxed")
                tl.atomic_add(p_dC + o_nl, b_dCt, mask=m_nl, sem="relaxed")

    # ---- 4. what this program hands on ----
    if STATE_ONLY:
        tl.store(p_seg_dsum + (i_b * d_inner + o_d) * n_seg + i_s, b_dsum, mask=m_d)
        tl.store(p_seg_mu + (o_bd * n_seg + i_s) * N + o_n[None, :], b_mu, mask=m_state)
    else:
        tl.atomic_add(p_dA + o_d[:, None] * N + o_n[None, :], b_dA, mask=m_state, sem="relaxed")
        if HAS_D:
            tl.atomic_add(p_dD + o_d, b_dD, mask=m_d, sem="relaxed")
        if HAS_DELTA_BIAS:
            tl.atomic_add(p_ddelta_bias + o_d, b_ddb, mask=m_d, sem="relaxed")
        if NEED_DH0:  # dh0 = a_0 λ_0: the μ left after the first step
            tl.store(p_dh0 + o_state, b_mu, mask=m_state & (i_s_2d == 0))
        # dB, dC of this segment are whole once every block of channels of the group has added to them: the
        # last to finish writes them out. The barrier and the release make this program's additions
        # visible before the count; the acquire makes the others' visible to the last one.
        tl.debug_barrier()
        done = tl.atomic_add(p_done, 1.0, sem="acq_rel")
        if done == tl.cdiv(d_per_group, BLOCK_D) - 1:
            o_rows = (i_b * n_groups + i_g) * L * N
            o_out = (i_b * n_groups + i_g) * N * L
            _rows_out(p_dB + o_rows, p_dB_out + o_out, t_start, t_end, N, L, BLOCK_N, 32)
            _rows_out(p_dC + o_rows, p_dC_out + o_out, t_start, t_end, N, L, BLOCK_N, 32)


def default_config(
    batch: int, d_inner: int, L: int, N: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> dict:
    """Launch sizes of the backward (the forward's signature; the dtype does not change them): one warp of
    32 channels per program, loads not pipelined (each iteration is long enough to hide them, and the
    pipeline's buffers cost registers), and segments until there are 32 programs per SM of the H200 (4224;
    with 255 registers a thread, 8 warps fit on an SM at once: 4 full waves); up to L = 512, where the
    segment pass (which skips the first segment) is a larger share, 4 per SM. ``bench.py --sweep`` times
    the alternatives. ``seg_stages``: the segment pass's pipelining; ``maxnreg``: a register cap."""
    if device.type != "cuda":
        return {"block_d": 2, "num_warps": 1, "stages": 1, "seg_len": 16, **OVERRIDES}
    return {"num_warps": 1, "stages": 1, "target": (4 if L <= 512 else 32) * 132, **OVERRIDES}


@dataclass(frozen=True)
class BackwardPlan:
    """How to launch the backward kernel at one shape."""

    grid: tuple  # (channel blocks, batch, segments)
    num_warps: int
    seg_len: int
    n_seg: int
    seg_consts: dict  # the segment pass (STATE_ONLY, ZERO), launched first when n_seg > 1
    consts: dict  # the main pass
    options: dict  # compile options (maxnreg)


#: Launch plans already worked out, by shapes, switches and launch sizes.
PLANS: dict = {}


def plan(key, device, batch, d_inner, L, N, groups, chunk, flags, rs_ok, launch_sizes_asked) -> BackwardPlan:
    """The launch plan for ``key`` (see :func:`~.common.plan_key`), cached in :data:`PLANS`."""
    found = PLANS.get(key)
    if found is not None:
        return found
    if len(PLANS) > 4096:
        PLANS.clear()
    cfg = {**default_config(batch, d_inner, L, N, device), **launch_sizes_asked}
    block_d, seg_len, n_seg = launch_sizes(cfg, batch, d_inner, d_inner // groups, L, chunk)
    has_d, has_z, has_db, softplus_, has_dh_last, need_dh0 = flags
    consts = dict(
        BLOCK_D=block_d, BLOCK_N=pow2(N), CHUNK=chunk, STAGES=cfg["stages"],
        STATE_ONLY=False, ZERO=False, HAS_SEG=n_seg > 1, HAS_D=has_d, HAS_Z=has_z, HAS_DELTA_BIAS=has_db,
        DELTA_SOFTPLUS=softplus_, HAS_DH_LAST=has_dh_last, NEED_DH0=need_dh0,
        RS=bool(cfg.get("rs", True)) and rs_ok and block_d % 32 == 0 and 2 * pow2(N) >= 32,
        EVEN=L % 4 == 0 and d_inner % block_d == 0 and N == pow2(N),
    )  # fmt: skip
    seg_consts = {**consts, "STATE_ONLY": True, "ZERO": True, "STAGES": cfg.get("seg_stages", cfg["stages"])}
    options = {"maxnreg": cfg["maxnreg"]} if cfg.get("maxnreg") else {}
    found = PLANS[key] = BackwardPlan(
        (cdiv(d_inner, block_d), batch, n_seg), cfg["num_warps"], seg_len, n_seg, seg_consts, consts, options
    )
    return found


def selective_scan_bwd(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    h_chunks: torch.Tensor,
    dy: torch.Tensor,
    dh_last: torch.Tensor | None,
    delta_softplus: bool,
    need_dh0: bool,
    chunk: int = CHUNK,
    *,
    bc_dtypes: tuple = (torch.float32, torch.float32),
    bc_shape: tuple | None = None,
    poison_accumulators: bool = False,
    **launch_sizes_asked,
) -> tuple:
    """Launch the backward kernel on B, C as (batch, groups, L, N) fp32 contiguous (B_t, the N values
    every thread reads at step t, are 64 neighbouring bytes): tensors, or :class:`~.fast_launch.Slot` s of
    the forward's allocation, as h_chunks may be. Returns du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0.

    du, ddelta, dz in the dtype of u, delta, z; dB and dC (batch, groups, N, L) contiguous (or
    ``bc_shape``, the same numbers in that order: (batch, N, L) for one group) in ``bc_dtypes``; dA, dD,
    ddelta_bias, dh0 in fp32; absent inputs give None. The kernel adds into fp32 accumulators (one
    allocation), which start at zero: written by the segment pass when there is one (launched before the
    outputs are allocated), else filled here. ``poison_accumulators``: fill them with NaN first when the
    segment pass is to zero them (a test that it does). ``launch_sizes_asked`` overrides the launch sizes
    (num_warps, stages, target or seg_len, block_d, maxnreg: a register cap per thread).
    """
    batch, d_inner, L = u.shape
    N = A.shape[1]
    if len(B.shape) != 4 or tuple(B.shape[2:]) != (L, N):
        raise ValueError(f"B must be (batch, groups, L, N) = (..., {L}, {N}) here, got {tuple(B.shape)}")
    groups = B.shape[1]
    if chunk != CHUNK:
        raise ValueError(
            f"chunk must be {CHUNK}: the backward restarts from states saved every {CHUNK} steps"
        )
    if h_chunks.shape[1] != cdiv(L, chunk):
        raise ValueError(
            f"h_chunks must hold the state every {chunk} steps: (batch, {cdiv(L, chunk)}, N, d_inner), "
            f"got {tuple(h_chunks.shape)}"
        )
    flags = (D is not None, z is not None, delta_bias is not None, bool(delta_softplus), dh_last is not None,
             bool(need_dh0))  # fmt: skip
    key = plan_key(u, N, groups, chunk, flags, OVERRIDES, launch_sizes_asked)
    p = plan(key, u.device, batch, d_inner, L, N, groups, chunk, flags, u.is_cuda, launch_sizes_asked)
    n_seg = p.n_seg
    dev, f32 = u.device, torch.float32
    nothing = batch * d_inner == 0 or L == 0  # nothing to scan: the state passes straight through
    # The accumulators, in the order the kernel reads them: dB and dC as (L, N) rows, dA, dD, ddelta_bias,
    # the segment pass's μ and ΣΔ, the counts of blocks done. They start at zero: with segments the
    # segment pass writes the zeros (ZERO), else a fill.
    rows = batch * groups * L * N
    o_dA = 2 * rows
    size = o_dA + d_inner * N + 2 * d_inner + batch * d_inner * n_seg * (N + 1) + batch * groups * n_seg
    if n_seg > 1 and not nothing:
        acc = torch.empty((size,), device=dev, dtype=f32)
        if poison_accumulators:
            acc.fill_(float("nan"))
    else:
        acc = torch.zeros((size,), device=dev, dtype=f32)
    inputs = [
        u, delta, A, B, C,
        D if D is not None else A, z if z is not None else u,
        delta_bias if delta_bias is not None else A, h_chunks,
        dy, dh_last if dh_last is not None else A,
    ]  # fmt: skip
    sizes = [d_inner, L, N, d_inner // groups, p.seg_len, 1]
    # what Triton specialises on beyond the plan: the dtypes and the alignment of the caller's tensors (the
    # outputs and accumulators are ours: fresh allocations)
    spec = None if nothing else (key, bc_dtypes, *((t.dtype, t.data_ptr() % 16 == 0) for t in inputs))
    if n_seg > 1 and not nothing:  # launched before the outputs exist (it writes none of them): the
        # host's time before the first launch is time the GPU waits, in a short scan
        args = [*inputs, *[acc] * 7, *sizes]
        launch(selective_scan_bwd_kernel, p.grid, args, p.seg_consts, p.num_warps, (spec, True), **p.options)
    out = torch.zeros if nothing else torch.empty
    du = torch.empty_like(u)
    ddelta = torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    dh0 = torch.empty(batch, d_inner, N, device=dev, dtype=f32) if need_dh0 else None
    shape = (batch, groups, N, L) if bc_shape is None else bc_shape
    dB = out(shape, device=dev, dtype=bc_dtypes[0])
    dC = out(shape, device=dev, dtype=bc_dtypes[1])
    if nothing:
        if dh0 is not None:
            dh0 = dh_last.clone() if dh_last is not None else dh0.zero_()
    else:
        args = [*inputs, du, ddelta, dz if dz is not None else du, dB, dC, dh0 if dh0 is not None else acc, acc,
                *sizes]  # fmt: skip
        LAST[:] = [
            launch(selective_scan_bwd_kernel, p.grid, args, p.consts, p.num_warps, (spec, False), **p.options)
        ]
    # dA, dD, ddelta_bias: views of the accumulators, made after the launches (the host's time before them
    # is time the GPU waits, in a short scan)
    dA = acc.as_strided((d_inner, N), (N, 1), o_dA)
    dD = acc.as_strided((d_inner,), (1,), o_dA + d_inner * N) if D is not None else None
    ddb = acc.as_strided((d_inner,), (1,), o_dA + d_inner * N + d_inner) if delta_bias is not None else None
    return du, ddelta, dA, dB, dC, dD, dz, ddb, dh0
