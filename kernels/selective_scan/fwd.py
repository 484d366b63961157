"""The fused selective scan, forward: one pass over HBM (Mamba §3.3.2, "kernel fusion").

For every batch b, channel d and state n (Mamba §3.2, Algorithm 2; ZOH for A, Euler for B):

    Δ_t = softplus(delta_t + delta_bias)                          (or delta_t + delta_bias)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t                       the state, (N,) per channel
    y_t = (C_t · h_t + D u_t) · silu(z_t)

The recurrence h_t = a_t h_{t-1} + b_t is a scan with the associative operator

    (a₁, b₁) ∘ (a₂, b₂) = (a₁ a₂,  a₂ b₁ + b₂)       (the earlier pair on the left: order matters)

so a block of BLOCK_L time steps is scanned by ``tl.associative_scan``; blocks are visited in order and
the state h is carried from one block to the next in registers.

What one program does: it owns BLOCK_D channels of one sequence. Per block of BLOCK_L steps it loads
u, delta, z (BLOCK_L × BLOCK_D each) and B, C (BLOCK_L × N, loaded ONCE for all BLOCK_D channels), builds
the (BLOCK_L × BLOCK_D × N) tensors a = exp(ΔA) and b = ΔBu in registers, scans them along time,
contracts with C, adds D·u, gates with silu(z) and writes y. The (batch, d_inner, L, N) tensor never exists in HBM.

Bytes moved (fp32): read u, delta, z (4 bytes × batch·d_inner·L each) and B, C (4 × batch·N·L each, once
per BLOCK_D channels), write y: about 16 bytes per (b, d, t) — the floor. For the backward pass the kernel
also writes the state entering every block (N floats every BLOCK_L steps: 1/BLOCK_L of the state tensor).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["selective_scan_fwd"]

#: Launch sizes that replace the defaults on a GPU (bench.py sets them while it tries configurations).
OVERRIDES: dict = {}
#: The last compiled kernel launched (bench.py reads its registers and spills).
LAST: list = []

# exp(x) = exp2(x · log2 e): exp2 is the GPU's native special function
LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def combine(a1, b1, a2, b2):
    """(a₁, b₁) ∘ (a₂, b₂): first apply step 1 (h ↦ a₁h + b₁), then step 2 (h ↦ a₂h + b₂)."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def softplus(x):
    """log(1 + eˣ) = max(x, 0) + log1p(e^-|x|): no overflow for large x, no lost digits for small."""
    e = tl.exp(-tl.abs(x))
    one_plus_e = 1.0 + e
    # log1p(e) without libdevice: log(1+e)·e/((1+e)−1) is exact to rounding (Goldberg's trick)
    log1p_e = tl.where(one_plus_e == 1.0, e, tl.log(one_plus_e) * e / (one_plus_e - 1.0))
    return tl.maximum(x, 0.0) + log1p_e


@triton.jit
def selective_scan_fwd_kernel(
    # ---- inputs (contiguous) ----
    p_u,  # (batch, d_inner, L) the input sequence, fp32/fp16/bf16
    p_delta,  # (batch, d_inner, L) the raw time step, before delta_bias and softplus
    p_A,  # (d_inner, N) fp32, the diagonal state matrix (negative for a decaying state)
    p_B,  # (batch, groups, N, L) input projection; channel d uses group d // (d_inner // groups)
    p_C,  # (batch, groups, N, L) output projection
    p_D,  # (d_inner,) fp32 skip connection (read when HAS_D)
    p_z,  # (batch, d_inner, L) gate (read when HAS_Z)
    p_delta_bias,  # (d_inner,) fp32 (read when HAS_DELTA_BIAS)
    p_h0,  # (batch, d_inner, N) fp32 initial state (read when HAS_H0)
    # ---- outputs ----
    p_y,  # (batch, d_inner, L) in u's dtype
    p_h_last,  # (batch, d_inner, N) fp32, the state after the last step
    p_h_chunks,  # (batch, d_inner, n_chunks, N) fp32, the state entering each block (when SAVE_CHUNKS)
    # ---- sizes ----
    d_inner,  # channels
    L,  # sequence length
    N,  # states per channel
    d_per_group,  # d_inner // groups: channels that share one B/C group
    n_chunks,  # cdiv(L, BLOCK_L)
    # ---- compile-time switches ----
    BLOCK_D: tl.constexpr,  # channels per program; they share every B/C load
    N_LO: tl.constexpr,  # states kept inside one thread (N rounded up to a power of two = N_LO · N_HI)
    N_HI: tl.constexpr,  # states spread across threads
    BLOCK_L: tl.constexpr,  # time steps per iteration (a power of two)
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_DELTA_BIAS: tl.constexpr,
    DELTA_SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr,
    SAVE_CHUNKS: tl.constexpr,
):
    # The per-step tensors are 4-D: (N_LO, BLOCK_L, BLOCK_D, N_HI) = (state_lo, time, channel, state_hi),
    # state n = n_hi · N_LO + n_lo. Triton spreads threads over the last axes first (N_HI states, then
    # channels), so each thread keeps N_LO states × BLOCK_L time steps in registers: the scan along
    # time is a sequential loop inside the thread, and the sum over states is mostly inside it too.

    # ---- 1. which channels and which sequence this program owns ----
    i_d = tl.program_id(0)  # block of channels (fastest: neighbouring programs share B/C in L2)
    i_b = tl.program_id(1).to(tl.int64)  # sequence in the batch (int64: offsets can pass 2³¹)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,) channel indices
    m_d = o_d < d_inner
    o_d4 = o_d[None, None, :, None]  # (1, 1, BLOCK_D, 1)
    m_d4 = m_d[None, None, :, None]
    o_n = tl.arange(0, N_HI)[None, None, None, :] * N_LO + tl.arange(0, N_LO)[:, None, None, None]
    m_n = o_n < N  # (N_LO, 1, 1, N_HI) state indices
    i_g = (i_d * BLOCK_D) // d_per_group  # the B/C group of every channel of the block
    n_groups = d_inner // d_per_group

    # row starts: one row of L values per (sequence, channel) and per (sequence, group, state)
    o_row_d = (i_b * d_inner + o_d) * L  # (BLOCK_D,) into u, delta, z, y
    o_row_n = ((i_b * n_groups + i_g) * N + o_n) * L  # (N_LO, 1, 1, N_HI) into B, C
    o_state = (i_b * d_inner + o_d4) * N + o_n  # (N_LO, 1, BLOCK_D, N_HI) into h0, h_last
    m_state = m_d4 & m_n

    # ---- 2. per-channel parameters, loaded once ----
    b_A = tl.load(p_A + o_d4 * N + o_n, mask=m_state, other=0.0)  # (N_LO, 1, BLOCK_D, N_HI)
    b_A2 = b_A * LOG2E  # exp(ΔA) = exp2(Δ · A·log2 e)
    if HAS_D:
        b_D = tl.load(p_D + o_d, mask=m_d, other=0.0)
    if HAS_DELTA_BIAS:
        b_bias = tl.load(p_delta_bias + o_d, mask=m_d, other=0.0)
    if HAS_H0:
        b_h = tl.load(p_h0 + o_state, mask=m_state, other=0.0)  # the carried state, fp32
    else:
        b_h = tl.zeros([N_LO, 1, BLOCK_D, N_HI], dtype=tl.float32)
    m_last = (tl.arange(0, BLOCK_L) == BLOCK_L - 1)[None, :, None, None]

    # ---- 3. walk along the sequence, BLOCK_L steps at a time ----
    for i_c in range(n_chunks):
        o_l = i_c * BLOCK_L + tl.arange(0, BLOCK_L)  # (BLOCK_L,) time indices
        m_l = o_l < L
        if SAVE_CHUNKS:  # the state entering this block, for the backward pass to restart from
            o_hc = ((i_b * d_inner + o_d4) * n_chunks + i_c) * N + o_n
            tl.store(p_h_chunks + o_hc, b_h, mask=m_state)

        # load: 3 tiles of (BLOCK_L, BLOCK_D) and 2 of (N_LO, BLOCK_L, 1, N_HI), upcast to fp32
        o_ld = o_l[:, None] + o_row_d[None, :]
        m_ld = m_l[:, None] & m_d[None, :]
        o_ln = o_row_n + o_l[None, :, None, None]
        m_ln = m_n & m_l[None, :, None, None]
        b_u = tl.load(p_u + o_ld, mask=m_ld, other=0.0).to(tl.float32)
        b_delta = tl.load(p_delta + o_ld, mask=m_ld, other=0.0).to(tl.float32)
        b_B = tl.load(p_B + o_ln, mask=m_ln, other=0.0).to(tl.float32)
        b_C = tl.load(p_C + o_ln, mask=m_ln, other=0.0).to(tl.float32)

        # discretize in registers: Δ, then a = exp(ΔA) and b = ΔBu, both (N_LO, BLOCK_L, BLOCK_D, N_HI)
        if HAS_DELTA_BIAS:
            b_delta += b_bias[None, :]
        if DELTA_SOFTPLUS:
            b_delta = softplus(b_delta)
        b_delta = tl.where(m_ld, b_delta, 0.0)  # Δ = 0 past the end: a = 1, b = 0, the state passes
        b_a = tl.exp2(b_delta[None, :, :, None] * b_A2)
        b_b = (b_delta * b_u)[None, :, :, None] * b_B

        # scan along time: (a_cum, b_cum)_t = (a, b)_0 ∘ … ∘ (a, b)_t, then add the carried state
        a_cum, b_cum = tl.associative_scan((b_a, b_b), axis=1, combine_fn=combine)
        b_hs = a_cum * b_h + b_cum  # h_t for every t of the block

        # contract with C over the states (inside each thread, then across threads), skip, gate
        b_y = tl.sum(tl.sum(b_hs * b_C, axis=0), axis=2)  # (BLOCK_L, BLOCK_D)
        if HAS_D:
            b_y += b_D[None, :] * b_u
        if HAS_Z:
            b_z = tl.load(p_z + o_ld, mask=m_ld, other=0.0).to(tl.float32)
            b_y *= b_z * tl.sigmoid(b_z)  # silu(z)
        tl.store(p_y + o_ld, b_y.to(p_y.dtype.element_ty), mask=m_ld)

        # carry: the state after the block's last step (past the end the state just passed through)
        b_h = tl.sum(tl.where(m_last, b_hs, 0.0), axis=1, keep_dims=True)

    tl.store(p_h_last + o_state, b_h, mask=m_state)


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def pick_block_d(batch: int, d_inner: int, d_per_group: int, want: int) -> int:
    """The largest power of two <= ``want`` such that a block of channels never straddles two groups."""
    block_d = want
    if d_per_group != d_inner:  # several groups: the block must divide the group size
        while block_d > 1 and d_per_group % block_d:
            block_d //= 2
    return max(1, min(block_d, _pow2(d_inner)))


def default_config(batch: int, d_inner: int, L: int, N: int, device: torch.device) -> dict:
    """Launch sizes: small blocks under the interpreter (so tiny tests cross block edges), tuned on a GPU."""
    if device.type != "cuda":
        return {"block_d": 2, "block_l": 8, "num_warps": 1, "n_lo": 2}
    # the fastest in fp32 on the H200 (RESULTS.md lists the configurations tried): with many
    # sequences·channels, 8 channels × 8 steps, 4 states per thread, one warp; with few (batch 1), more
    # programs matter more: 4 channels × 64 steps, one state per thread, 2 warps
    if batch * d_inner >= 4 * 1536:
        return {"block_d": 8, "block_l": 8, "num_warps": 1, "n_lo": 4, **OVERRIDES}
    return {"block_d": 4, "block_l": 64, "num_warps": 2, "n_lo": 1, **OVERRIDES}


def selective_scan_fwd(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    h0: torch.Tensor | None,
    delta_softplus: bool,
    save_chunks: bool,
    block_l: int | None = None,
    block_d: int | None = None,
    num_warps: int | None = None,
    n_lo: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the forward kernel on validated, contiguous tensors (B, C with a groups axis).

    Returns y (batch, d_inner, L) in u's dtype, h_last (batch, d_inner, N) fp32, and the states entering
    each block of ``block_l`` steps (batch, d_inner, n_chunks, N) fp32 (empty unless ``save_chunks``).
    """
    batch, d_inner, L = u.shape
    N = A.shape[1]
    groups = B.shape[1]
    cfg = default_config(batch, d_inner, L, N, u.device)
    block_l = block_l or cfg["block_l"]
    block_d = pick_block_d(batch, d_inner, d_inner // groups, block_d or cfg["block_d"])
    num_warps = num_warps or cfg["num_warps"]
    n_lo = min(n_lo or cfg["n_lo"], _pow2(N))  # states per thread
    n_chunks = triton.cdiv(L, block_l)
    y = torch.empty_like(u)
    h_last = torch.empty(batch, d_inner, N, device=u.device, dtype=torch.float32)
    shape = (batch, d_inner, n_chunks, N) if save_chunks else (0,)
    h_chunks = torch.empty(shape, device=u.device, dtype=torch.float32)
    if batch * d_inner == 0:
        return y, h_last, h_chunks
    grid = (triton.cdiv(d_inner, block_d), batch)
    LAST[:] = [selective_scan_fwd_kernel[grid](
        u, delta, A, B, C,
        D if D is not None else A, z if z is not None else u,
        delta_bias if delta_bias is not None else A, h0 if h0 is not None else h_last,
        y, h_last, h_chunks if save_chunks else h_last,
        d_inner, L, N, d_inner // groups, n_chunks,
        BLOCK_D=block_d, N_LO=n_lo, N_HI=_pow2(N) // n_lo, BLOCK_L=block_l,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_DELTA_BIAS=delta_bias is not None,
        DELTA_SOFTPLUS=bool(delta_softplus), HAS_H0=h0 is not None, SAVE_CHUNKS=bool(save_chunks),
        num_warps=num_warps,
    )]  # fmt: skip
    return y, h_last, h_chunks
