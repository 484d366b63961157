"""The fused selective scan, forward: one pass over HBM (Mamba §3.3.2, "kernel fusion").

For every batch b, channel d and state n (Mamba §3.2, Algorithm 2; ZOH for A, Euler for B):

    Δ_t = softplus(delta_t + delta_bias)                          (or delta_t + delta_bias)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t                       the state, (N,) per channel
    y_t = (C_t · h_t + D u_t) · silu(z_t)

**Who does what.** One GPU thread owns one channel and keeps all N states of that channel in its
registers; a program (one warp by default) owns BLOCK_D = 32 · num_warps neighbouring channels of one
sequence. The thread walks along the sequence T = 4 steps at a time, and inside those 4 steps the scan is
the recurrence itself — no data crosses threads, and the work that depends only on (t, d) (softplus,
Δ·u, the gate) is done once, not once per state. The sum over states C_t · h_t is inside the thread too.

**Loads.** Each iteration needs a (BLOCK_D, 4) tile of u, delta, z and a (N, 4) tile of B and of C: the
B/C tile is loaded once for all BLOCK_D channels of the program, and every thread reads all of it.
``tl.range(..., num_stages=STAGES)`` lets Triton prefetch the tiles of the next iterations into shared
memory (``cp.async``) while the current one computes, and read B, C from there as a broadcast.

**Parallelism along L.** A program walks its channels' whole sequence one step after another; with few
sequences · channels (batch 1) there are too few programs to fill the GPU. The sequence is then cut into
segments: a first pass (``STATE_ONLY``) gives every segment the state it ends with if it started from zero
(segment 0 starts from h0), and the sum of its Δ (exp(A · ΣΔ) is the product of its decays); the main pass starts each segment from
the true state, combined from the summaries of the segments before it:

    h_in[s] = exp(A · ΣΔ[s-1]) ⊙ h_in[s-1] + h_end[s-1]

On a GPU, :func:`selective_scan_fwd` runs the kernel of ``fwd_time.py`` instead whenever segments would be
needed: its threads split the time axis (a scan across threads), so one pass fills the GPU.

Bytes moved (fp32): read u, delta, z (4 bytes × batch·d_inner·L each) and B, C (4 × batch·N·L each, once
per BLOCK_D channels), write y: about 16 bytes per (b, d, t). For the backward pass the kernel also writes
the state entering every CHUNK steps (N floats every CHUNK steps: 1/CHUNK of the state tensor, 4·N/CHUNK =
8 more bytes per (b, d, t) at N = 16).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .launch import Slot
from .launch import launch as launch_kernel_direct
from .layout import launch_layouts

__all__ = ["selective_scan_fwd"]

#: Launch sizes that replace the defaults on a GPU (bench.py sets them while it tries configurations).
OVERRIDES: dict = {}
#: The last compiled kernel launched (bench.py reads its registers and spills).
LAST: list = []

#: Time steps per iteration, inside one thread (the kernels split tiles of 4 steps with ``split4``).
T = 4
#: The forward saves the state entering every CHUNK steps for the backward, which walks a chunk as two
#: tiles of 4 steps: it must be 8.
CHUNK = 8

# exp(x) = exp2(x · log2 e): exp2 is the GPU's native special function
LOG2E = tl.constexpr(1.4426950408889634)


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
def _bc_rows(p_in, p_out, t_lo, t_hi, N, L, BLOCK_N: tl.constexpr):
    """Steps [t_lo, t_hi) of one sequence and group of B (or C), from (N, L) in its dtype to (L, N) fp32."""
    o_n = tl.arange(0, BLOCK_N)
    for t in range(t_lo, t_hi, 32):
        o_t = t + tl.arange(0, 32)
        m = (o_n[:, None] < N) & (o_t[None, :] < t_hi)
        v = tl.load(p_in + o_n[:, None] * L + o_t[None, :], mask=m, other=0.0).to(tl.float32)
        tl.store(p_out + o_t[None, :] * N + o_n[:, None], v, mask=m)


@triton.jit(do_not_specialize=["s_n"])
def selective_scan_fwd_kernel(
    # ---- inputs (contiguous) ----
    p_u,  # (batch, d_inner, L) the input sequence, fp32/fp16/bf16
    p_delta,  # (batch, d_inner, L) the raw time step, before delta_bias and softplus
    p_A,  # (d_inner, N) fp32, the diagonal state matrix (negative for a decaying state)
    p_B,  # (batch, groups, N, L) input projection, any float dtype; channel d uses group d // (d_inner // groups)
    p_C,  # (batch, groups, N, L) output projection
    p_D,  # (d_inner,) fp32 skip connection (read when HAS_D)
    p_z,  # (batch, d_inner, L) gate (read when HAS_Z)
    p_delta_bias,  # (d_inner,) fp32 (read when HAS_DELTA_BIAS)
    p_h0,  # (batch, d_inner, N) fp32 initial state (read when HAS_H0)
    # ---- outputs ----
    p_y,  # (batch, d_inner, L) in u's dtype
    p_h_last,  # (batch, d_inner, N) fp32, the state after the last step
    p_h_chunks,  # (batch, n_chunks, N, d_inner) fp32: the state entering every CHUNK steps (SAVE_CHUNKS)
    p_seg_h,  # (batch, d_inner, n_seg, N) fp32: per segment, its end state from a zero start (segment 0: h0)
    p_seg_dsum,  # (batch, d_inner, n_seg) fp32: per segment, the sum of its Δ
    p_bc_t,  # (2, batch, groups, L, N) fp32: B, C as the backward reads them (WRITE_BC)
    # ---- sizes ----
    d_inner,  # channels
    L,  # sequence length
    N,  # states per channel
    d_per_group,  # d_inner // groups: channels that share one B/C group
    seg_len,  # steps per segment (a multiple of CHUNK); one segment when seg_len >= L
    s_n,  # the stride of the state axis of A, h0, h_last, h_chunks: always 1 (see below)
    # ---- compile-time switches ----
    BLOCK_D: tl.constexpr,  # channels per program, one per thread (32 · num_warps)
    BLOCK_N: tl.constexpr,  # N rounded up to a power of two, all in one thread
    CHUNK: tl.constexpr,  # steps between saved states
    STAGES: tl.constexpr,  # tiles in flight (software pipelining of the loads)
    STATE_ONLY: tl.constexpr,  # the segment pass: only the state, ΣΔ and the end state per segment
    HAS_SEG: tl.constexpr,  # several segments: start from the combined summaries of the earlier ones
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_DELTA_BIAS: tl.constexpr,
    DELTA_SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr,
    SAVE_CHUNKS: tl.constexpr,
    WRITE_BC: tl.constexpr = False,  # the first block of channels of a group also writes p_bc_t
):
    # ---- 1. which channels, which sequence and which segment this program owns ----
    i_d = tl.program_id(0)  # block of channels (fastest: neighbouring programs share B/C in L2)
    i_b = tl.program_id(1).to(tl.int64)  # sequence in the batch (int64: offsets can pass 2³¹)
    i_s = tl.program_id(2)  # segment of the sequence
    n_seg = tl.num_programs(2)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,) channel indices, one per thread
    m_d = o_d < d_inner
    o_n = tl.arange(0, BLOCK_N)  # (BLOCK_N,) state indices, all inside each thread
    m_n = o_n < N
    o_t = tl.arange(0, 4)  # the 4 steps of a tile
    i_g = (i_d * BLOCK_D) // d_per_group  # the B/C group of every channel of the block
    n_groups = d_inner // d_per_group
    o_row_d = (i_b * d_inner + o_d) * L  # (BLOCK_D,) row starts in u, delta, z, y
    o_row_n = ((i_b * n_groups + i_g) * N + o_n) * L  # (BLOCK_N,) B, C at step 0 (one row per state)
    # (channel, state) offsets. s_n (= 1) hides from the compiler that the states are contiguous in
    # memory: otherwise it would spread the states of a channel over 4 threads to vectorise this load,
    # and every step would then move data between threads.
    o_n = o_n * s_n
    o_bd = i_b * d_inner + o_d[:, None]  # (BLOCK_D, 1) row of (sequence, channel)
    o_state = o_bd * N + o_n[None, :]  # into h0, h_last
    m_state = m_d[:, None] & m_n[None, :]
    i_s_2d = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.int32) + i_s  # the segment, as a mask operand

    # ---- 2. per-channel parameters, loaded once ----
    # exp(ΔA) = exp2(Δ · A·log2 e): exp2 is the GPU's native special function
    b_A2 = tl.load(p_A + o_d[:, None] * N + o_n[None, :], mask=m_state, other=0.0) * LOG2E
    if HAS_D:
        b_D = tl.load(p_D + o_d, mask=m_d, other=0.0)
    if HAS_DELTA_BIAS:
        b_bias = tl.load(p_delta_bias + o_d, mask=m_d, other=0.0)

    # ---- 3. the state entering this segment ----
    if HAS_H0:  # segment 0 starts from h0; the others from the segments before them
        b_h = tl.load(p_h0 + o_state, mask=m_state & (i_s_2d == 0), other=0.0)  # fp32
    else:
        b_h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    if HAS_SEG and not STATE_ONLY:  # combine the summaries of the segments before this one
        for j in range(0, i_s):
            b_dsum = tl.load(p_seg_dsum + (i_b * d_inner + o_d) * n_seg + j, mask=m_d, other=0.0)
            b_hend = tl.load(p_seg_h + (o_bd * n_seg + j) * N + o_n[None, :], mask=m_state, other=0.0)
            b_h = tl.exp2(b_dsum[:, None] * b_A2) * b_h + b_hend
    b_dsum_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    if SAVE_CHUNKS:  # (batch, chunk, state, channel): the threads of a warp write neighbouring floats
        p_hc = p_h_chunks + (i_b * tl.cdiv(L, CHUNK) * N + o_n[None, :]) * d_inner + o_d[:, None] * s_n

    # ---- 4. walk along the segment, 4 steps per iteration ----
    t_start = i_s * seg_len
    t_end = tl.minimum(t_start + seg_len, L)
    for i in tl.range(t_start // 4, tl.cdiv(t_end, 4), num_stages=STAGES):
        o_l = i * 4 + o_t  # (4,) time indices
        m_l = o_l < t_end
        if SAVE_CHUNKS:  # the state entering every CHUNK steps, for the backward pass to restart from
            if (i % (CHUNK // 4)) == 0:
                tl.store(p_hc + (i // (CHUNK // 4)) * (N * d_inner), b_h, mask=m_state)

        # load: tiles of (BLOCK_D, 4) for u, delta and of (BLOCK_N, 4) for B (C below), upcast to fp32
        o_dl = o_row_d[:, None] + o_l[None, :]
        m_dl = m_d[:, None] & m_l[None, :]
        o_nl = o_row_n[:, None] + o_l[None, :]
        m_nl = m_n[:, None] & m_l[None, :]
        b_u = tl.load(p_u + o_dl, mask=m_dl, other=0.0).to(tl.float32)
        b_dt = tl.load(p_delta + o_dl, mask=m_dl, other=0.0).to(tl.float32)
        b_B = tl.load(p_B + o_nl, mask=m_nl, other=0.0).to(tl.float32)

        # discretize, once per (t, d): Δ (0 past the end: a = 1, b = 0, the state passes), Δ·u
        if HAS_DELTA_BIAS:
            b_dt += b_bias[:, None]
        if DELTA_SOFTPLUS:
            b_dt = softplus(b_dt)
        b_dt = tl.where(m_dl, b_dt, 0.0)
        b_du = b_dt * b_u
        dt0, dt1, dt2, dt3 = split4(b_dt)  # (BLOCK_D,) each
        du0, du1, du2, du3 = split4(b_du)
        B0, B1, B2, B3 = split4(b_B)  # (BLOCK_N,) each, the same in every thread
        if STATE_ONLY:
            b_dsum_acc += dt0 + dt1 + dt2 + dt3
            b_h = tl.exp2(dt0[:, None] * b_A2) * b_h + du0[:, None] * B0[None, :]
            b_h = tl.exp2(dt1[:, None] * b_A2) * b_h + du1[:, None] * B1[None, :]
            b_h = tl.exp2(dt2[:, None] * b_A2) * b_h + du2[:, None] * B2[None, :]
            b_h = tl.exp2(dt3[:, None] * b_A2) * b_h + du3[:, None] * B3[None, :]
        else:
            b_C = tl.load(p_C + o_nl, mask=m_nl, other=0.0).to(tl.float32)
            C0, C1, C2, C3 = split4(b_C)
            # the scan, step by step in registers: h ← exp(ΔA) h + Δu B, then y_t = C_t · h (a sum
            # over the states, inside the thread)
            b_h = tl.exp2(dt0[:, None] * b_A2) * b_h + du0[:, None] * B0[None, :]
            y0 = tl.sum(b_h * C0[None, :], axis=1)
            b_h = tl.exp2(dt1[:, None] * b_A2) * b_h + du1[:, None] * B1[None, :]
            y1 = tl.sum(b_h * C1[None, :], axis=1)
            b_h = tl.exp2(dt2[:, None] * b_A2) * b_h + du2[:, None] * B2[None, :]
            y2 = tl.sum(b_h * C2[None, :], axis=1)
            b_h = tl.exp2(dt3[:, None] * b_A2) * b_h + du3[:, None] * B3[None, :]
            y3 = tl.sum(b_h * C3[None, :], axis=1)
            b_y = join4(y0, y1, y2, y3)  # (BLOCK_D, 4)

            # skip and gate, once per (t, d)
            if HAS_D:
                b_y += b_D[:, None] * b_u
            if HAS_Z:
                b_z = tl.load(p_z + o_dl, mask=m_dl, other=0.0).to(tl.float32)
                b_y *= b_z * tl.sigmoid(b_z)  # silu(z)
            tl.store(p_y + o_dl, b_y.to(p_y.dtype.element_ty), mask=m_dl)

    # ---- 5. what this segment hands on ----
    if STATE_ONLY:
        tl.store(p_seg_dsum + (i_b * d_inner + o_d) * n_seg + i_s, b_dsum_acc, mask=m_d)
        tl.store(p_seg_h + (o_bd * n_seg + i_s) * N + o_n[None, :], b_h, mask=m_state)
    elif i_s == n_seg - 1:
        tl.store(p_h_last + o_state, b_h, mask=m_state)
    if WRITE_BC and not STATE_ONLY:  # B and C of this segment as (L, N) fp32 rows, for the backward, by the
        # group's first block of channels, after its scan (stores of the tiles inside the pipelined loop were
        # not tried again once the launch-key bug was found; RESULTS.md, sixth session)
        if (i_d * BLOCK_D) % d_per_group == 0:
            o_bg = i_b * n_groups + i_g
            n_bc = tl.num_programs(1).to(tl.int64) * n_groups * L * N
            _bc_rows(p_B + o_bg * N * L, p_bc_t + o_bg * L * N, t_start, t_end, N, L, BLOCK_N)
            _bc_rows(p_C + o_bg * N * L, p_bc_t + n_bc + o_bg * L * N, t_start, t_end, N, L, BLOCK_N)


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for the launch code: ``triton.cdiv`` is a ConstexprFunction whose call costs ~15 µs of
    host time, paid several times per scan call."""
    return -(-a // b)


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def pick_block_d(batch: int, d_inner: int, d_per_group: int, want: int) -> int:
    """The largest power of two <= ``want`` such that a block of channels never straddles two groups."""
    block_d = want
    if d_per_group != d_inner:  # several groups: the block must divide the group size
        while block_d > 1 and d_per_group % block_d:
            block_d //= 2
    return max(1, min(block_d, _pow2(d_inner)))


def pick_seg_len(programs: int, L: int, target: int) -> int:
    """Steps per segment: enough segments that batch · channel blocks · segments reaches ``target``
    programs (one segment when there are that many already), each a multiple of CHUNK steps."""
    n_seg = max(1, min(-(-target // max(programs, 1)), L // (4 * CHUNK)))
    seg = -(-L // n_seg)
    return max(CHUNK, -(-seg // CHUNK) * CHUNK)


def default_config(
    batch: int, d_inner: int, L: int, N: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> dict:
    """Launch sizes: small blocks and segments under the interpreter (so tiny tests cross every edge);
    on a GPU one warp of 32 channels per program, 3 tiles in flight (4 for 16-bit inputs, whose tiles
    are half the bytes), and segments along L when batch · d_inner / 32 programs would not give every SM
    of the H200 (132) two warps. The fastest in the sweeps of RESULTS.md: the segment pass costs about
    3/5 of a forward, and more warps do not pay for it (the L1/shared-memory pipe, which serves every
    thread's copy of the B/C tile, is 3/4 busy at 8 warps per SM).

    ``time``: whether to use the kernel parallel along time (:mod:`fwd_time`) instead; None (on a GPU)
    picks it exactly when the channel kernel would need segments. ``time_*``: its launch sizes (channels
    per program, steps per tile, warps, and a register cap: with 168 registers 12 warps share an SM, where
    the compiler alone takes up to 255 and fits 8; the sweeps of RESULTS.md).

    ``native_bc_max_len``: up to this L the channel kernel reads 16-bit B and C as they are: 13% more
    kernel time at L = 512 (0.109 against 0.096 ms), less than the host time of a copy's launch, which
    decides a call that short; beyond it the copy pays (0.410 against 0.338 ms at L = 2048; RESULTS.md,
    fourth session). ``native_bc_autograd``: also for autograd, where the kernel then writes the
    backward's fp32 (L, N) copies of B and C itself (``WRITE_BC``) and layout.py is not launched at all;
    saving the states too, reading 16-bit B and C as given costs GPU time (0.158 against 0.121 ms,
    fifth session), the launch it saves costs host time (RESULTS.md, sixth session)."""
    if device.type != "cuda":  # the interpreter: both kernels are tested, each asked for by name
        return {"block_d": 2, "num_warps": 1, "stages": 1, "seg_len": 16, "time": False,
                "time_block_d": 2, "time_block_t": 16, "time_warps": 1, "time_maxnreg": None,
                "native_bc_max_len": 16, "native_bc_autograd": True, **OVERRIDES}  # fmt: skip
    half = dtype in (torch.float16, torch.bfloat16)
    return {"num_warps": 1, "stages": 4 if half else 3, "target": 2 * 132, "time": None,
            "time_block_d": 2 if half else 4, "time_block_t": 512, "time_warps": 2 if half else 4,
            "time_maxnreg": 168, "native_bc_max_len": 512, "native_bc_autograd": True, **OVERRIDES}  # fmt: skip


def launch_sizes(cfg: dict, batch: int, d_inner: int, d_per_group: int, L: int, chunk: int):
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


#: Launch plans already worked out, by shapes, switches and launch sizes (the host time of a call matters at
#: short L: the kernel itself takes about 0.1 ms at (8, 1536, 512, 16)).
_PLANS: dict = {}


def _plan(key, device, dtype, batch, d_inner, L, N, groups, chunk, flags, launch):
    """The launch plan, cached: ("channel", grid, num_warps, n_seg, constexprs of the segment pass, of the
    main pass, seg_len) or ("time", grid, num_warps, constexprs, compile options)."""
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) > 4096:  # a long run of ever new shapes: start again rather than grow
            _PLANS.clear()
        cfg = {**default_config(batch, d_inner, L, N, device, dtype), **launch}
        block_d, seg_len, n_seg = launch_sizes(cfg, batch, d_inner, d_inner // groups, L, chunk)
        has_d, has_z, has_db, softplus_, has_h0, save = flags
        switches = dict(HAS_D=has_d, HAS_Z=has_z, HAS_DELTA_BIAS=has_db, DELTA_SOFTPLUS=softplus_,
                        HAS_H0=has_h0, SAVE_CHUNKS=save)  # fmt: skip
        use_time = cfg.get("time")
        if use_time is None:
            use_time = n_seg > 1
        if use_time:
            k = 8 if dtype in (torch.float16, torch.bfloat16) else 4  # steps per thread: 16 bytes of u
            block_d = pick_block_d(batch, d_inner, d_inner // groups, cfg["time_block_d"])
            block_t = max(k, int(cfg["time_block_t"]))
            assert block_t % k == 0 and chunk % k == 0, "a tile holds whole K-step pieces, a chunk too"
            consts = dict(BLOCK_D=block_d, BLOCK_T=block_t, K=k, CHUNK=chunk, **switches)
            options = {"maxnreg": cfg["time_maxnreg"]} if cfg.get("time_maxnreg") else {}
            plan = ("time", (cdiv(d_inner, block_d), batch, 1), cfg["time_warps"], consts, options)
        else:
            consts = dict(
                BLOCK_D=block_d, BLOCK_N=_pow2(N), CHUNK=chunk, STAGES=cfg["stages"],
                STATE_ONLY=False, HAS_SEG=n_seg > 1, WRITE_BC=False, **switches,
            )  # fmt: skip
            seg_consts = {**consts, "STATE_ONLY": True, "SAVE_CHUNKS": False}
            grid = (cdiv(d_inner, block_d), batch, n_seg)
            native = L <= cfg["native_bc_max_len"]
            plan = ("channel", grid, cfg["num_warps"], n_seg, seg_consts, consts, seg_len, native,
                    native and cfg["native_bc_autograd"], {**consts, "WRITE_BC": True})  # fmt: skip
        _PLANS[key] = plan
    return plan


def _contiguous(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """t contiguous (and in ``dtype``), in one copy at most (``.to(dtype, memory_format=...)`` alone returns
    a non-contiguous tensor of that dtype unchanged)."""
    if dtype is None or t.dtype == dtype:
        return t.contiguous()
    return t.to(dtype, memory_format=torch.contiguous_format)


def scratch(device, parts: list, packed: bool):
    """Buffers for a launch: ``parts`` is a list of (shape, returned) in fp32, None for a part not needed.
    Every part in one allocation, handed to the kernels as :class:`~.launch.Slot` s (``packed``, or not
    returned to the caller); a part returned unpacked is a tensor of its own (the outputs of a custom op
    must not share memory). Each part starts on a 128-byte boundary. Returns (the allocation, the parts)."""
    offsets, total = [], 0
    for part in parts:
        offsets.append(total)
        if part is not None and (packed or not part[1]):
            total += -(-math.prod(part[0]) // 32) * 32
    work = torch.empty((total,), device=device, dtype=torch.float32) if total or packed else None
    address = 0 if work is None else work.data_ptr()
    out = []
    for part, offset in zip(parts, offsets):
        if part is None:
            out.append(None)
        elif packed or not part[1]:
            out.append(Slot(work, address, offset, part[0]))
        else:
            out.append(torch.empty(part[0], device=device, dtype=torch.float32))
    return work, out


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
    chunk: int = CHUNK,
    *,
    bc_last: bool = False,
    packed: bool = False,
    **launch,
) -> tuple:
    """Launch the forward on validated tensors (u, delta, z contiguous); B, C (batch, N, L) or (batch,
    groups, N, L) in any float dtype and layout: the channel kernel reads them as fp32 (every thread reads
    the whole B/C tile: converting it there would cost 25% more instructions per step), the time kernel as
    they come (one thread converts each element it loads), both contiguous.

    Returns y (batch, d_inner, L) in u's dtype, h_last (batch, d_inner, N) fp32, and the states entering
    every ``chunk`` steps (batch, cdiv(L, chunk), N, d_inner) fp32 (empty unless ``save_chunks``): channels
    last, so that the 32 threads of a warp write (and the backward reads) 32 neighbouring floats.
    ``launch`` overrides the launch sizes (see :func:`default_config`; ``time`` picks the kernel).

    ``bc_last``: also return B and C as the backward reads them, (batch, groups, L, N) fp32, made in the
    launch that makes the channel kernel's fp32 copies (:mod:`layout`): (y, h_last, h_chunks, Bt, Ct).

    ``packed``: return (y, work, slots) instead: every fp32 output in the one allocation ``work``, and
    ``slots`` = (h_last, h_chunks, Bt and Ct) as :class:`~.launch.Slot` s (None where not made; Bt and Ct
    one after the other). No tensor view is made: the eager autograd path saves ``work`` and hands the
    slots to the backward (each view costs host time, which decides the time of a short scan).
    """
    batch, d_inner, L = u.shape
    N = A.shape[1]
    groups = B.shape[1] if B.dim() == 4 else 1
    assert B.dim() in (3, 4) and B.shape[-2:] == (N, L), "B and C are (batch, [groups,] N, L) here"
    flags = (D is not None, z is not None, delta_bias is not None, bool(delta_softplus), h0 is not None,
             bool(save_chunks))  # fmt: skip
    key = plan_key(u, N, groups, chunk, flags, OVERRIDES, launch)
    plan = _plan(key, u.device, u.dtype, batch, d_inner, L, N, groups, chunk, flags, launch)
    nothing = batch * d_inner == 0 or L == 0  # nothing to scan: the state passes straight through
    time_kernel = plan[0] == "time"
    f32 = torch.float32
    if time_kernel or nothing:  # the time kernel reads B and C in their own dtype
        convert = False
    else:  # fp32 copies, unless they are fp32 already, or 16-bit and read as they are (see default_config)
        convert = not (
            B.dtype == C.dtype and B.is_contiguous() and C.is_contiguous() and (
                B.dtype == f32 or plan[8 if bc_last else 7]
            )
        )  # fmt: skip
    # B, C for the backward: written by the channel kernel when it reads them as given and L is short (the
    # group's first block of channels copies them after its scan: a tail that a long L makes longer than
    # a launch of layout.py, 0.3 ms at (8, 1536, 8192, 16) fp32; RESULTS.md, sixth session)
    write_bc = bc_last and not (time_kernel or nothing or convert) and plan[7]
    n_seg = 1 if time_kernel else plan[3]
    bc_rows, bc_t = (2, batch, groups, N, L), (2, batch, groups, L, N)
    work, (h_last, h_chunks, last, rows, carry, seg_h, seg_dsum) = scratch(u.device, [
        ((batch, d_inner, N), True),
        ((batch, cdiv(L, chunk), N, d_inner), True) if save_chunks else None,
        (bc_t, True) if bc_last else None,
        (bc_rows, False) if convert else None,
        ((batch, 2, d_inner, N), False) if time_kernel and not nothing else None,
        ((batch, d_inner, n_seg, N), False) if n_seg > 1 and not nothing else None,
        ((batch, d_inner, n_seg), False) if n_seg > 1 and not nothing else None,
    ], packed)  # fmt: skip
    y = torch.empty_like(u)
    if rows is not None or (last is not None and not write_bc):
        launch_layouts(B, C, rows, None if write_bc else last)
    if nothing:
        if batch * d_inner:
            hl = h_last.view() if isinstance(h_last, Slot) else h_last
            hl.copy_(h0) if h0 is not None else hl.zero_()
    elif time_kernel or rows is None:
        B, C = B.contiguous(), C.contiguous()
    else:
        B, C = rows.at(0, bc_rows[1:]), rows.at(batch * groups * N * L, bc_rows[1:])
    if not nothing:
        args = [
            u, delta, A, B, C,
            D if D is not None else A, z if z is not None else u,
            delta_bias if delta_bias is not None else A, h0 if h0 is not None else h_last,
            y, h_last, h_chunks if save_chunks else h_last,
        ]  # fmt: skip
        # what Triton specialises on beyond the plan: the dtypes and the 16-byte alignment of the caller's
        # tensors
        spec = (key, *((t.dtype, t.data_ptr() % 16 == 0) for t in args[:9]))
        if time_kernel:
            _, grid, num_warps, consts, options = plan
            args += [carry, d_inner, L, N, d_inner // groups]
            kernel = selective_scan_fwd_time_kernel
            LAST[:] = [launch_kernel_direct(kernel, grid, args, consts, num_warps, spec, **options)]
        else:
            _, grid, num_warps, n_seg, seg_consts, consts, seg_len, _, _, consts_bc = plan
            args += [seg_h if n_seg > 1 else h_last, seg_dsum if n_seg > 1 else h_last,
                     last if write_bc else h_last, d_inner, L, N, d_inner // groups, seg_len, 1]  # fmt: skip
            kernel = selective_scan_fwd_kernel
            if n_seg > 1:
                launch_kernel_direct(kernel, grid, args, seg_consts, num_warps, (spec, True))
            # the direct launcher's cache key names the variant: segment pass, main pass, main pass writing B, C
            main = (consts_bc, (spec, "write_bc")) if write_bc else (consts, (spec, False))
            LAST[:] = [launch_kernel_direct(kernel, grid, args, main[0], num_warps, main[1])]
    if packed:
        return y, work, (h_last, h_chunks, last)
    if h_chunks is None:
        h_chunks = torch.empty((0,), device=u.device, dtype=f32)
    if not bc_last:
        return y, h_last, h_chunks
    Bt, Ct = last.unbind(0)
    return y, h_last, h_chunks, Bt, Ct


# the kernel parallel along time reuses softplus and LOG2E from this module: imported last
from .fwd_time import selective_scan_fwd_time_kernel  # noqa: E402
