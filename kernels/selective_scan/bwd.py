"""The fused selective scan, backward: recompute the states, scan the adjoint backwards, reduce.

Forward (per batch b, channel d, state n; see fwd.py):  a_t = exp(Δ_t A),  x_t = Δ_t B_t u_t,
h_t = a_t h_{t-1} + x_t,  y'_t = C_t·h_t + D u_t,  y_t = y'_t · silu(z_t).

Given dy, with g_t = dy_t · silu(z_t) the gradient of y'_t, the adjoint λ_t = ∂loss/∂h_t obeys a scan
that runs backwards in time (the transpose of the forward recurrence):

    λ_t = a_{t+1} λ_{t+1} + g_t C_t,         λ_{L-1} = g_{L-1} C_{L-1} + dh_last

and every gradient is a product of λ with something the forward had (Mamba §3.3.2, "recomputation": the
states h are not stored; each block of BLOCK_L steps recomputes them from the state saved at its start):

    dC_t = Σ_d g_t h_t          dB_t = Σ_d λ_t Δ_t u_t          dD = Σ_t g_t u_t
    du_t = Δ_t Σ_n λ_t B_t + D g_t
    dΔ_t = u_t Σ_n λ_t B_t + Σ_n λ_t (a_t h_{t-1}) A       (a_t h_{t-1} = h_t − x_t: no shift needed)
    dA   = Σ_t λ_t (a_t h_{t-1}) Δ_t                        dh0 = a_0 λ_0
    dz_t = dy_t · y'_t · silu'(z_t),   ddelta = dΔ · sigmoid(delta + delta_bias) with softplus

The backward scan: ``tl.associative_scan(reverse=True)`` has returned wrong results on GPUs (triton#4362,
#8412), so the kernel flips the block along time (``tl.flip``), scans forwards, and flips λ back. Blocks
are visited from the last to the first, carrying λ between them.

Reductions over channels (dB, dC: per (b, n, t); dA, dD, ddelta_bias: per channel) use fp32 atomics: each
program adds the sum over its BLOCK_D channels (and its sequence) once.

Tiles are (time, channel, state) = (BLOCK_L, BLOCK_D, BLOCK_N), time slowest, as in the forward: each
thread keeps a block of time steps of one (channel, state) pair in registers, so both scans run inside
the thread (README.md, "Layout").
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .fwd import LOG2E, _pow2, combine, pick_block_d, softplus

__all__ = ["selective_scan_bwd"]

#: Launch sizes that replace the defaults on a GPU (bench.py sets them while it tries configurations).
OVERRIDES: dict = {}
#: The last compiled kernel launched (bench.py reads its registers and spills).
LAST: list = []


@triton.jit
def selective_scan_bwd_kernel(
    # ---- what the forward had (contiguous) ----
    p_u,  # (batch, d_inner, L)
    p_delta,  # (batch, d_inner, L) raw time step
    p_A,  # (d_inner, N) fp32
    p_B,  # (batch, groups, N, L)
    p_C,  # (batch, groups, N, L)
    p_D,  # (d_inner,) fp32 (HAS_D)
    p_z,  # (batch, d_inner, L) (HAS_Z)
    p_delta_bias,  # (d_inner,) fp32 (HAS_DELTA_BIAS)
    p_h_chunks,  # (batch, d_inner, n_chunks, N) fp32: the state entering each block, saved by the forward
    # ---- incoming gradients ----
    p_dy,  # (batch, d_inner, L)
    p_dh_last,  # (batch, d_inner, N) fp32 (HAS_DH_LAST)
    # ---- gradients out ----
    p_du,  # (batch, d_inner, L) in u's dtype
    p_ddelta,  # (batch, d_inner, L) in delta's dtype
    p_dz,  # (batch, d_inner, L) in z's dtype (HAS_Z)
    p_dA,  # (d_inner, N) fp32, zeroed: atomics add into it
    p_dB,  # (batch, groups, N, L) fp32, zeroed
    p_dC,  # (batch, groups, N, L) fp32, zeroed
    p_dD,  # (d_inner,) fp32, zeroed (HAS_D)
    p_ddelta_bias,  # (d_inner,) fp32, zeroed (HAS_DELTA_BIAS)
    p_dh0,  # (batch, d_inner, N) fp32 (NEED_DH0)
    # ---- sizes ----
    d_inner,
    L,
    N,
    d_per_group,
    n_chunks,
    # ---- compile-time switches ----
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_L: tl.constexpr,  # must equal the forward's block length (the saved states sit at its edges)
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_DELTA_BIAS: tl.constexpr,
    DELTA_SOFTPLUS: tl.constexpr,
    HAS_DH_LAST: tl.constexpr,
    NEED_DH0: tl.constexpr,
):
    # ---- 1. ownership and offsets, as in the forward ----
    i_d = tl.program_id(0)
    i_b = tl.program_id(1).to(tl.int64)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)
    m_d = o_d < d_inner
    o_n = tl.arange(0, BLOCK_N)
    m_n = o_n < N
    i_g = (i_d * BLOCK_D) // d_per_group
    n_groups = d_inner // d_per_group
    o_row_d = (i_b * d_inner + o_d) * L
    o_row_n = ((i_b * n_groups + i_g) * N + o_n) * L
    o_state = (i_b * d_inner + o_d[:, None]) * N + o_n[None, :]
    m_state = m_d[:, None] & m_n[None, :]

    b_A = tl.load(p_A + o_d[:, None] * N + o_n[None, :], mask=m_state, other=0.0)
    b_A2 = b_A * LOG2E
    if HAS_D:
        b_D = tl.load(p_D + o_d, mask=m_d, other=0.0)
    if HAS_DELTA_BIAS:
        b_bias = tl.load(p_delta_bias + o_d, mask=m_d, other=0.0)
    if HAS_DH_LAST:
        b_lam = tl.load(p_dh_last + o_state, mask=m_state, other=0.0)  # λ entering from the future
    else:
        b_lam = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    b_dA = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)  # per-program partial sums
    b_dD = tl.zeros([BLOCK_D], dtype=tl.float32)
    b_ddb = tl.zeros([BLOCK_D], dtype=tl.float32)
    m_last = tl.arange(0, BLOCK_L) == BLOCK_L - 1

    # ---- 2. blocks from the last to the first; tiles are (time, channel, state) as in the forward ----
    for i in range(n_chunks):
        i_c = n_chunks - 1 - i
        o_l = i_c * BLOCK_L + tl.arange(0, BLOCK_L)
        m_l = o_l < L
        m_ld = m_l[:, None] & m_d[None, :]
        m_ln = m_l[:, None] & m_n[None, :]
        o_ld = o_l[:, None] + o_row_d[None, :]
        o_ln = o_l[:, None] + o_row_n[None, :]
        b_u = tl.load(p_u + o_ld, mask=m_ld, other=0.0).to(tl.float32)
        b_dt = tl.load(p_delta + o_ld, mask=m_ld, other=0.0).to(tl.float32)
        b_B = tl.load(p_B + o_ln, mask=m_ln, other=0.0).to(tl.float32)
        b_C = tl.load(p_C + o_ln, mask=m_ln, other=0.0).to(tl.float32)
        b_dy = tl.load(p_dy + o_ld, mask=m_ld, other=0.0).to(tl.float32)
        # Δ at t and at t+1 (a_{t+1} drives the adjoint); Δ = 0 past the end, so a = 1 there
        m_ld1 = (o_l[:, None] + 1 < L) & m_d[None, :]
        b_dt1 = tl.load(p_delta + o_ld + 1, mask=m_ld1, other=0.0).to(tl.float32)
        if HAS_DELTA_BIAS:
            b_dt += b_bias[None, :]
            b_dt1 += b_bias[None, :]
        if DELTA_SOFTPLUS:
            b_delta = softplus(b_dt)
            b_delta1 = softplus(b_dt1)
        else:
            b_delta = b_dt
            b_delta1 = b_dt1
        b_delta = tl.where(m_ld, b_delta, 0.0)
        b_delta1 = tl.where(m_ld1, b_delta1, 0.0)

        # recompute the states of this block from the saved state at its start (as the forward did)
        o_hc = ((i_b * d_inner + o_d[:, None]) * n_chunks + i_c) * N + o_n[None, :]
        b_h0 = tl.load(p_h_chunks + o_hc, mask=m_state, other=0.0)
        b_a = tl.exp2(b_delta[:, :, None] * b_A2[None, :, :])  # (BLOCK_L, BLOCK_D, BLOCK_N)
        b_x = (b_delta * b_u)[:, :, None] * b_B[:, None, :]
        a_cum, x_cum = tl.associative_scan((b_a, b_x), axis=0, combine_fn=combine)
        b_h = a_cum * b_h0[None, :, :] + x_cum  # h_t

        # g = ∂loss/∂y' (the gradient before the gate)
        if HAS_Z:
            b_z = tl.load(p_z + o_ld, mask=m_ld, other=0.0).to(tl.float32)
            b_sig = tl.sigmoid(b_z)
            b_g = b_dy * b_z * b_sig
        else:
            b_g = b_dy

        # the adjoint, scanned backwards: flip time, scan forwards, flip back.
        # Flipped pair at row j (time t = end − j): (a_{t+1}, g_t C_t); λ_t = a_{t+1} λ_{t+1} + g_t C_t
        b_an = tl.exp2(tl.flip(b_delta1, 0)[:, :, None] * b_A2[None, :, :])
        b_gc = tl.flip(b_g, 0)[:, :, None] * tl.flip(b_C, 0)[:, None, :]
        a_rev, c_rev = tl.associative_scan((b_an, b_gc), axis=0, combine_fn=combine)
        b_lam_rev = a_rev * b_lam[None, :, :] + c_rev
        b_lam = tl.sum(tl.where(m_last[:, None, None], b_lam_rev, 0.0), axis=0)  # λ at the block's start
        b_lamt = tl.flip(b_lam_rev, 0)  # λ_t in time order

        # ---- gradients of this block ----
        b_du_ = b_delta * b_u  # Δu
        b_lamB = tl.sum(b_lamt * b_B[:, None, :], axis=2)  # Σ_n λ B: (BLOCK_L, BLOCK_D)
        b_ah = b_lamt * (b_h - b_x)  # λ ⊙ a_t h_{t-1}
        b_ddelta = b_u * b_lamB + tl.sum(b_ah * b_A[None, :, :], axis=2)
        b_dA += tl.sum(b_ah * b_delta[:, :, None], axis=0)
        b_du = b_delta * b_lamB
        if HAS_D:
            b_du += b_D[None, :] * b_g
            b_dD += tl.sum(b_g * b_u, axis=0)
        if HAS_Z:  # y' recomputed: C·h + D u
            b_yp = tl.sum(b_h * b_C[:, None, :], axis=2)
            if HAS_D:
                b_yp += b_D[None, :] * b_u
            b_dz = b_dy * b_yp * b_sig * (1.0 + b_z * (1.0 - b_sig))
            tl.store(p_dz + o_ld, b_dz.to(p_dz.dtype.element_ty), mask=m_ld)
        if DELTA_SOFTPLUS:
            b_ddelta *= tl.sigmoid(b_dt)
        b_ddelta = tl.where(m_ld, b_ddelta, 0.0)
        if HAS_DELTA_BIAS:
            b_ddb += tl.sum(b_ddelta, axis=0)
        tl.store(p_du + o_ld, b_du.to(p_du.dtype.element_ty), mask=m_ld)
        tl.store(p_ddelta + o_ld, b_ddelta.to(p_ddelta.dtype.element_ty), mask=m_ld)
        # dB, dC: summed over this program's channels, then added to the sums of the other programs
        b_dB = tl.sum(b_lamt * b_du_[:, :, None], axis=1)  # (BLOCK_L, BLOCK_N)
        b_dC = tl.sum(b_h * b_g[:, :, None], axis=1)
        tl.atomic_add(p_dB + o_ln, b_dB, mask=m_ln, sem="relaxed")
        tl.atomic_add(p_dC + o_ln, b_dC, mask=m_ln, sem="relaxed")

    # ---- 3. the per-channel sums and the initial state's gradient ----
    tl.atomic_add(p_dA + o_d[:, None] * N + o_n[None, :], b_dA, mask=m_state, sem="relaxed")
    if HAS_D:
        tl.atomic_add(p_dD + o_d, b_dD, mask=m_d, sem="relaxed")
    if HAS_DELTA_BIAS:
        tl.atomic_add(p_ddelta_bias + o_d, b_ddb, mask=m_d, sem="relaxed")
    if NEED_DH0:  # dh0 = a_0 λ_0
        b_dt0 = tl.load(p_delta + o_row_d, mask=m_d, other=0.0).to(tl.float32)
        if HAS_DELTA_BIAS:
            b_dt0 += b_bias
        if DELTA_SOFTPLUS:
            b_dt0 = softplus(b_dt0)
        tl.store(p_dh0 + o_state, tl.exp2(b_dt0[:, None] * b_A2) * b_lam, mask=m_state)


def default_config(batch: int, d_inner: int, L: int, N: int, device: torch.device) -> dict:
    """Launch sizes of the backward (the forward that saves states for it uses the same block_l)."""
    if device.type != "cuda":
        return {"block_d": 2, "block_l": 8, "num_warps": 1}
    # the fastest in fp32 on the H200 (RESULTS.md): one warp per program over 2 channels; 16 steps per
    # block with many sequences·channels, 32 with few
    if batch * d_inner >= 4 * 1536:
        return {"block_d": 2, "block_l": 16, "num_warps": 1, **OVERRIDES}
    return {"block_d": 2, "block_l": 32, "num_warps": 1, **OVERRIDES}


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
    block_l: int,
    block_d: int | None = None,
    num_warps: int | None = None,
):
    """Launch the backward kernel. Returns du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0.

    du, ddelta, dz in the dtype of u, delta, z; dA, dB, dC, dD, ddelta_bias, dh0 in fp32 (the caller
    casts); absent inputs give None.
    """
    batch, d_inner, L = u.shape
    N = A.shape[1]
    groups = B.shape[1]
    n_chunks = h_chunks.shape[2]
    assert n_chunks == triton.cdiv(L, block_l), "block_l must be the one the forward saved states with"
    cfg = default_config(batch, d_inner, L, N, u.device)
    block_d = pick_block_d(batch, d_inner, d_inner // groups, block_d or cfg["block_d"])
    num_warps = num_warps or cfg["num_warps"]
    dev, f32 = u.device, torch.float32
    du = torch.empty_like(u)
    ddelta = torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    dA = torch.zeros(d_inner, N, device=dev, dtype=f32)
    dB = torch.zeros(B.shape, device=dev, dtype=f32)
    dC = torch.zeros(C.shape, device=dev, dtype=f32)
    dD = torch.zeros(d_inner, device=dev, dtype=f32) if D is not None else None
    ddb = torch.zeros(d_inner, device=dev, dtype=f32) if delta_bias is not None else None
    dh0 = torch.empty(batch, d_inner, N, device=dev, dtype=f32) if need_dh0 else None
    if batch * d_inner == 0 or L == 0:  # nothing to scan: the state passes straight through
        if dh0 is not None:
            dh0 = dh_last.clone() if dh_last is not None else dh0.zero_()
        return du, ddelta, dA, dB, dC, dD, dz, ddb, dh0
    grid = (triton.cdiv(d_inner, block_d), batch)
    LAST[:] = [selective_scan_bwd_kernel[grid](
        u, delta, A, B, C,
        D if D is not None else A, z if z is not None else u,
        delta_bias if delta_bias is not None else A, h_chunks,
        dy, dh_last if dh_last is not None else A,
        du, ddelta, dz if dz is not None else du,
        dA, dB, dC, dD if dD is not None else dA, ddb if ddb is not None else dA,
        dh0 if dh0 is not None else dA,
        d_inner, L, N, d_inner // groups, n_chunks,
        BLOCK_D=block_d, BLOCK_N=_pow2(N), BLOCK_L=block_l,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_DELTA_BIAS=delta_bias is not None,
        DELTA_SOFTPLUS=bool(delta_softplus), HAS_DH_LAST=dh_last is not None, NEED_DH0=bool(need_dh0),
        num_warps=num_warps,
    )]  # fmt: skip
    return du, ddelta, dA, dB, dC, dD, dz, ddb, dh0
