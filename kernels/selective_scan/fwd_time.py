"""The selective scan forward, parallel along time: the kernel for few sequences × channels.

Same recurrence, inputs and outputs as :mod:`fwd` (Mamba §3.2, Algorithm 2):

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t,        y_t = (C_t · h_t + D u_t) · silu(z_t)

**Why a second kernel.** :mod:`fwd` gives one thread one channel and walks the sequence one step after
another: batch · d_inner threads in all. One sequence of a Mamba-130m layer has 1536 channels, 48 warps for
the H200's 528 warp schedulers; cutting the sequence into segments fills the GPU, at the price of a
summary pass over the whole sequence (the state each segment ends with) before the main pass. Here the
threads of a program split the *time* axis instead, as the paper's parallel scan does (§3.3.2), and as
mamba_ssm's CUDA kernel does: one pass, and as many threads as there are channels × time steps per tile.

**Who does what.** A program owns BLOCK_D channels of one sequence and walks it in tiles of BLOCK_T steps.
In a tile, every thread holds K neighbouring steps (K = 4 in fp32, 8 in 16-bit: one 16-byte load) of each
of the BLOCK_D channels; the 32·num_warps threads cover the tile. The work that depends only on (t, d)
(softplus, Δ·u, D·u, the gate) is done once per tile. Then, state by state:

    a_t = exp(Δ_t A_n), b_t = Δ_t B_{t,n} u_t                    (BLOCK_D, BLOCK_T), elementwise
    (a_cum_t, h_t) = tl.associative_scan((a, b), first_order)   h_t from a zero state, a_cum_t = a_1 ⋯ a_t
    h_t += a_cum_t · carry_n                                     the state that entered the tile
    y_t += C_{t,n} h_t

``first_order`` is notebook 05's operator, (a₁, b₁) then (a₂, b₂) = (a₁a₂, a₂b₁ + b₂); Triton scans each
thread's K steps in registers, then across the threads of a warp (shuffles) and across warps (shared
memory). B_{·,n} and C_{·,n} are loaded once per tile for the BLOCK_D channels. Two states go through one
scan (``first_order_x2``): a scan is a chain of dependent shuffles, and two independent chains in one
instruction stream hide each other's latency.

**The carry.** The state at the tile's last step is the next tile's carry, and it lives in the thread that
holds that step. Every thread needs it, so that thread writes it to a small buffer in global memory
(batch, 2, d_inner, N), read back by all after a barrier. Two halves, used in turn from tile to tile: the
write of tile i+1 cannot race the reads of tile i.

**Cost.** About 19 instructions per (step, channel, state), against the channel kernel's 9: the scan
across threads (shuffles, selects) and the carry. But it is one pass, and every SM has warps to switch
between. With few sequences · channels it is the faster forward, with many the channel kernel is (both
alone: ``python -m minimamba.kernels.selective_scan.profile --shape 1 1536 65536 16 --forward time``, then
``--forward channel``, and the same at ``--shape 8 1536 8192 16``): ``fwd.selective_scan_fwd`` picks this
one when the channel kernel would need segments.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .common import LOG2E, delta_tile

__all__ = ["selective_scan_fwd_time_kernel"]


@triton.jit
def first_order(a1, b1, a2, b2):
    """Two steps of h ← a h + b in one: (a1, b1) then (a2, b2) is (a1 a2, a2 b1 + b2). Associative."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def first_order_x2(a1, b1, c1, d1, a2, b2, c2, d2):
    """:func:`first_order` for two recurrences at once, (a, b) and (c, d): one scan, two states."""
    return a1 * a2, a2 * b1 + b2, c1 * c2, c2 * d1 + d2


@triton.jit
def lasts(x, K: tl.constexpr):
    """x[..., K-1::K] of a (..., T) tensor: the last of every K neighbouring steps along the last axis.
    When a thread holds K neighbouring steps, that is the one it ends with: no data crosses threads."""
    for _ in tl.static_range(K.bit_length() - 1):
        _, x = tl.split(tl.reshape(x, x.shape[:-1] + [x.shape[-1] // 2, 2]))  # the odd ones
    return x


@triton.jit
def state_inputs(p_A, p_Bg, p_Cg, n, o_d, m_d, o_l, m_l, N, L, b_dt, b_du):
    """For state n (masked off: a = 1, b = 0, C = 0, the state changes nothing): a_t =
    exp(Δ_t A_n) and b_t = Δ_t B_{t,n} u_t, (BLOCK_D, BLOCK_T), and C_{t,n} as (1, BLOCK_T): the layout of
    the tiles, so that no data moves between threads."""
    b_A2 = tl.load(p_A + o_d * N + n, mask=m_d, other=0.0) * LOG2E  # exp(x) = exp2(x log2 e)
    b_B = tl.load(p_Bg + n * L + o_l[None, :], mask=m_l[None, :], other=0.0).to(tl.float32)
    b_C = tl.load(p_Cg + n * L + o_l[None, :], mask=m_l[None, :], other=0.0).to(tl.float32)
    return tl.exp2(b_dt * b_A2[:, None]), b_du * b_B, b_C


@triton.jit
def state_outputs(a_cum, h, b_C, n, o_d, m_d, p_read, p_write, p_h_chunks, o_j, t_first, i_b, d_inner, L, N,
                  n_chunks, is_last, BLOCK_T: tl.constexpr, K: tl.constexpr, CHUNK: tl.constexpr,
                  SAVE_CHUNKS: tl.constexpr):  # fmt: skip
    """State n after the scan (h from a zero state): add the carry, hand the tile's last state on as the
    next carry, save the states entering every CHUNK steps; returns C_{t,n} h_t, state n's part of y_t."""
    carry = tl.load(p_read + n, mask=m_d, other=0.0)
    h += a_cum * carry[:, None]  # the true state at every step of the tile
    h_k = lasts(h, K)  # (BLOCK_D, BLOCK_T // K): the states after steps K-1, 2K-1, …
    # the last one is the next carry; the pointer runs along j only so that the store keeps h_k's layout
    # (one element per row is written)
    p_next = p_write[:, None] + n + (o_j[None, :] - (BLOCK_T // K - 1))
    tl.store(p_next, h_k, mask=m_d[:, None] & is_last)
    if SAVE_CHUNKS:  # the state entering every CHUNK-th step, for the backward
        t_next = t_first + o_j * K + K
        o_hc = ((i_b * n_chunks + t_next // CHUNK) * N + n) * d_inner
        m_hc = (t_next % CHUNK == 0) & (t_next < L)
        tl.store(p_h_chunks + o_hc[None, :] + o_d[:, None], h_k, mask=m_d[:, None] & m_hc[None, :])
    return h * b_C


@triton.jit
def selective_scan_fwd_time_kernel(
    # ---- inputs ----
    p_u,  # (batch, d_inner, L) contiguous, fp32/fp16/bf16
    p_delta,  # (batch, d_inner, L) the raw time step, before delta_bias and softplus
    p_A,  # (d_inner, N) fp32
    p_B,  # (batch, groups, N, L) contiguous, any float dtype (converted where loaded)
    p_C,  # (batch, groups, N, L)
    p_D,  # (d_inner,) fp32 (read when HAS_D)
    p_z,  # (batch, d_inner, L) (read when HAS_Z)
    p_delta_bias,  # (d_inner,) fp32 (read when HAS_DELTA_BIAS)
    p_h0,  # (batch, d_inner, N) fp32 (read when HAS_H0)
    # ---- outputs ----
    p_y,  # (batch, d_inner, L) in u's dtype
    p_h_last,  # (batch, d_inner, N) fp32
    p_h_chunks,  # (batch, n_chunks, N, d_inner) fp32: the state entering every CHUNK steps (SAVE_CHUNKS)
    p_carry,  # (batch, 2, d_inner, N) fp32 scratch: the state between tiles, double-buffered
    # ---- sizes ----
    d_inner,
    L,
    N,
    d_per_group,  # channels per B/C group (a block never straddles two groups)
    # ---- compile-time switches ----
    BLOCK_D: tl.constexpr,  # channels per program, all in every thread
    BLOCK_T: tl.constexpr,  # steps per tile: a multiple of K (32 · num_warps · K: K steps per thread)
    K: tl.constexpr,  # neighbouring steps per thread (4 or 8); CHUNK must be a multiple of it
    CHUNK: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_DELTA_BIAS: tl.constexpr,
    DELTA_SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr,
    SAVE_CHUNKS: tl.constexpr,
):
    # ---- 1. which channels of which sequence ----
    i_d = tl.program_id(0)
    i_b = tl.program_id(1).to(tl.int64)  # int64: offsets can pass 2³¹
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,)
    m_d = o_d < d_inner
    o_t = tl.arange(0, BLOCK_T)  # (BLOCK_T,) steps of a tile
    o_j = tl.arange(0, BLOCK_T // K)  # the last step of every K: t = K j + K - 1
    i_g = (i_d * BLOCK_D) // d_per_group
    o_row_d = (i_b * d_inner + o_d) * L  # rows of u, delta, z, y
    p_Bg = p_B + (i_b * (d_inner // d_per_group) + i_g) * N * L  # row n of the group at + n L
    p_Cg = p_C + (i_b * (d_inner // d_per_group) + i_g) * N * L
    o_state = (i_b * d_inner + o_d) * N  # (BLOCK_D,) into h0, h_last: + n
    n_chunks = tl.cdiv(L, CHUNK)
    n_tiles = tl.cdiv(L, BLOCK_T)
    p_carry = p_carry + i_b * 2 * d_inner * N + o_d * N  # (BLOCK_D,) half 0 at + n, half 1 at + d_inner N

    # ---- 2. the state entering step 0: h0 or zero, into the carry (and chunk 0 of the saved states) ----
    for n in range(N):
        if HAS_H0:
            c = tl.load(p_h0 + o_state + n, mask=m_d, other=0.0)
        else:
            c = tl.zeros([BLOCK_D], dtype=tl.float32)
        tl.store(p_carry + n, c, mask=m_d)
        if SAVE_CHUNKS:
            tl.store(p_h_chunks + (i_b * n_chunks * N + n) * d_inner + o_d, c, mask=m_d)
    tl.debug_barrier()
    if HAS_D:
        b_D = tl.load(p_D + o_d, mask=m_d, other=0.0)
    if HAS_DELTA_BIAS:
        b_bias = tl.load(p_delta_bias + o_d, mask=m_d, other=0.0)
    else:
        b_bias = tl.zeros([BLOCK_D], dtype=tl.float32)  # never read
    is_last = (tl.zeros([BLOCK_D, BLOCK_T // K], dtype=tl.int32) + o_j[None, :]) == BLOCK_T // K - 1

    # ---- 3. tile by tile along the sequence ----
    for i in range(0, n_tiles):
        o_l = i * BLOCK_T + o_t
        m_l = o_l < L
        o_dl = o_row_d[:, None] + o_l[None, :]
        m_dl = m_d[:, None] & m_l[None, :]
        # discretize, once per (t, d): Δ (0 past the end: a = 1, b = 0, the state passes), Δ·u
        b_u = tl.load(p_u + o_dl, mask=m_dl, other=0.0).to(tl.float32)
        b_dt = tl.load(p_delta + o_dl, mask=m_dl, other=0.0).to(tl.float32)
        _, b_dt = delta_tile(b_dt, b_bias, m_dl, HAS_DELTA_BIAS, DELTA_SOFTPLUS)
        b_du = b_dt * b_u
        if HAS_D:  # the skip connection first: u is not needed after this (fewer live registers)
            b_y = b_D[:, None] * b_u
        else:
            b_y = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
        p_read = p_carry + (i % 2) * d_inner * N  # this tile's carry
        p_write = p_carry + ((i + 1) % 2) * d_inner * N  # the next tile's

        # ---- 4. two states at a time (one scan of two recurrences: their shuffles and barriers overlap,
        # 15% faster at (1, 1536, 65536, 16) than one state per scan) ----
        for n in range(0, N, 2):
            # N odd: the second state of the last pair is masked off
            m_d2, m_l2 = m_d & (o_d * 0 + n + 1 < N), m_l & (o_l * 0 + n + 1 < N)
            a1, b1, b_C1 = state_inputs(p_A, p_Bg, p_Cg, n, o_d, m_d, o_l, m_l, N, L, b_dt, b_du)
            a2, b2, b_C2 = state_inputs(p_A, p_Bg, p_Cg, n + 1, o_d, m_d2, o_l, m_l2, N, L, b_dt, b_du)
            a1, h1, a2, h2 = tl.associative_scan((a1, b1, a2, b2), axis=1, combine_fn=first_order_x2)
            tail = (p_read, p_write, p_h_chunks, o_j, i * BLOCK_T, i_b, d_inner, L, N, n_chunks, is_last)
            b_y += state_outputs(a1, h1, b_C1, n, o_d, m_d, *tail, BLOCK_T, K, CHUNK, SAVE_CHUNKS)
            b_y += state_outputs(a2, h2, b_C2, n + 1, o_d, m_d2, *tail, BLOCK_T, K, CHUNK, SAVE_CHUNKS)
        tl.debug_barrier()  # the carry written above is read by every thread of the next tile

        # ---- 5. gate and write y ----
        if HAS_Z:
            b_z = tl.load(p_z + o_dl, mask=m_dl, other=0.0).to(tl.float32)
            b_y *= b_z * tl.sigmoid(b_z)  # silu(z)
        tl.store(p_y + o_dl, b_y.to(p_y.dtype.element_ty), mask=m_dl)

    # ---- 6. the state after the last step ----
    p_final = p_carry + (n_tiles % 2) * d_inner * N
    for n in range(N):
        tl.store(p_h_last + o_state + n, tl.load(p_final + n, mask=m_d, other=0.0), mask=m_d)
