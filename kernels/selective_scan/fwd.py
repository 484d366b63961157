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

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .common import CHUNK, LOG2E, cdiv, delta_tile, join4, launch_sizes, pick_block_d, plan_key, pow2, split4
from .fast_launch import Slot, as_tensor, launch, scratch
from .fwd_time import selective_scan_fwd_time_kernel
from .layout import launch_layouts

__all__ = [
    "ChannelPlan",
    "PackedForward",
    "TimePlan",
    "default_config",
    "plan",
    "selective_scan_fwd",
    "selective_scan_fwd_kernel",
    "selective_scan_fwd_packed",
]

#: Launch sizes that replace the defaults on a GPU (bench.py sets them while it tries configurations).
OVERRIDES: dict = {}
#: The last compiled kernel launched (bench.py and profile.py read its registers and spills).
LAST: list = []


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
    else:
        b_bias = tl.zeros([BLOCK_D], dtype=tl.float32)  # never read

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
        _, b_dt = delta_tile(b_dt, b_bias, m_dl, HAS_DELTA_BIAS, DELTA_SOFTPLUS)
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
        # group's first block of channels, after its scan
        if (i_d * BLOCK_D) % d_per_group == 0:
            o_bg = i_b * n_groups + i_g
            n_bc = tl.num_programs(1).to(tl.int64) * n_groups * L * N
            _bc_rows(p_B + o_bg * N * L, p_bc_t + o_bg * L * N, t_start, t_end, N, L, BLOCK_N)
            _bc_rows(p_C + o_bg * N * L, p_bc_t + n_bc + o_bg * L * N, t_start, t_end, N, L, BLOCK_N)


def default_config(
    batch: int, d_inner: int, L: int, N: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> dict:
    """Launch sizes: small blocks and segments under the interpreter (so tiny tests cross every edge);
    on a GPU one warp of 32 channels per program, 3 tiles in flight (4 for 16-bit inputs, whose tiles
    are half the bytes), and segments along L when batch · d_inner / 32 programs would not give every SM
    of the H200 (132) two warps. The segment pass costs about 3/5 of a forward, and more warps do not pay
    for it (the L1/shared-memory pipe, which serves every thread's copy of the B/C tile, is 3/4 busy at 8
    warps per SM): ``bench.py --sweep`` times the alternatives.

    ``time``: whether to use the kernel parallel along time (:mod:`fwd_time`) instead; None (on a GPU)
    picks it exactly when the channel kernel would need segments. ``time_*``: its launch sizes (channels
    per program, steps per tile, warps, and a register cap: with 168 registers 12 warps share an SM, where
    the compiler alone takes up to 255 and fits 8).

    ``native_bc_max_len``: up to this L the channel kernel reads 16-bit B and C as they are (13% more
    kernel time at L = 512, less than the host time of a copy's launch, which decides a call that short);
    beyond it an fp32 copy pays. ``native_bc_autograd``: also for autograd, where the kernel then writes
    the backward's fp32 (L, N) copies of B and C itself (``WRITE_BC``) and layout.py is not launched."""
    if device.type != "cuda":  # the interpreter: both kernels are tested, each asked for by name
        return {"block_d": 2, "num_warps": 1, "stages": 1, "seg_len": 16, "time": False,
                "time_block_d": 2, "time_block_t": 16, "time_warps": 1, "time_maxnreg": None,
                "native_bc_max_len": 16, "native_bc_autograd": True, **OVERRIDES}  # fmt: skip
    half = dtype in (torch.float16, torch.bfloat16)
    return {"num_warps": 1, "stages": 4 if half else 3, "target": 2 * 132, "time": None,
            "time_block_d": 2 if half else 4, "time_block_t": 512, "time_warps": 2 if half else 4,
            "time_maxnreg": 168, "native_bc_max_len": 512, "native_bc_autograd": True, **OVERRIDES}  # fmt: skip


@dataclass(frozen=True)
class ChannelPlan:
    """How to launch the channel kernel (one thread per channel) at one shape."""

    grid: tuple  # (channel blocks, batch, segments)
    num_warps: int
    n_seg: int
    seg_len: int
    seg_consts: dict  # the segment pass (STATE_ONLY), launched first when n_seg > 1
    consts: dict  # the main pass
    consts_write_bc: dict  # the main pass that also writes B, C for the backward (WRITE_BC)
    native_bc: bool  # 16-bit B and C read as given (L <= native_bc_max_len), without autograd
    native_bc_autograd: bool  # ... and for autograd, the kernel writing the backward's copies


@dataclass(frozen=True)
class TimePlan:
    """How to launch the kernel parallel along time (fwd_time.py) at one shape."""

    grid: tuple  # (channel blocks, batch, 1)
    num_warps: int
    consts: dict
    options: dict  # compile options (maxnreg)


#: Launch plans already worked out, by shapes, switches and launch sizes (the host time of a call matters at
#: short L: the kernel itself takes about 0.1 ms at (8, 1536, 512, 16)).
PLANS: dict = {}


def plan(
    key, device, dtype, batch, d_inner, L, N, groups, chunk, flags, launch_sizes_asked
) -> ChannelPlan | TimePlan:
    """The launch plan for ``key`` (see :func:`~.common.plan_key`), cached in :data:`PLANS`."""
    found = PLANS.get(key)
    if found is not None:
        return found
    if len(PLANS) > 4096:  # a long run of ever new shapes: start again rather than grow
        PLANS.clear()
    cfg = {**default_config(batch, d_inner, L, N, device, dtype), **launch_sizes_asked}
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
        found = TimePlan((cdiv(d_inner, block_d), batch, 1), cfg["time_warps"], consts, options)
    else:
        consts = dict(
            BLOCK_D=block_d, BLOCK_N=pow2(N), CHUNK=chunk, STAGES=cfg["stages"],
            STATE_ONLY=False, HAS_SEG=n_seg > 1, WRITE_BC=False, **switches,
        )  # fmt: skip
        native = L <= cfg["native_bc_max_len"]
        found = ChannelPlan(
            grid=(cdiv(d_inner, block_d), batch, n_seg),
            num_warps=cfg["num_warps"],
            n_seg=n_seg,
            seg_len=seg_len,
            seg_consts={**consts, "STATE_ONLY": True, "SAVE_CHUNKS": False},
            consts=consts,
            consts_write_bc={**consts, "WRITE_BC": True},
            native_bc=native,
            native_bc_autograd=native and cfg["native_bc_autograd"],
        )
    PLANS[key] = found
    return found


@dataclass(slots=True)
class PackedForward:
    """What :func:`selective_scan_fwd_packed` returns: y, and the fp32 outputs as pieces of one allocation
    (``work``): :class:`~.fast_launch.Slot` s with the fast launch switched on, tensor views otherwise
    (:func:`~.fast_launch.as_tensor` makes either a tensor)."""

    y: torch.Tensor  # (batch, d_inner, L) in u's dtype
    work: torch.Tensor  # the one fp32 allocation
    h_last: Slot | torch.Tensor  # (batch, d_inner, N)
    h_chunks: Slot | torch.Tensor | None  # (batch, cdiv(L, chunk), N, d_inner), with save_chunks
    # (2, batch, groups, L, N): B then C as the backward reads them (with bc_last)
    bc_t: Slot | torch.Tensor | None


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
    **launch_sizes_asked,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the forward on validated tensors (u, delta, z contiguous); B, C (batch, N, L) or (batch,
    groups, N, L) in any float dtype and layout: the channel kernel reads them as fp32 (every thread reads
    the whole B/C tile: converting it there would cost 25% more instructions per step), the time kernel as
    they come (one thread converts each element it loads), both contiguous.

    Returns y (batch, d_inner, L) in u's dtype, h_last (batch, d_inner, N) fp32, and the states entering
    every ``chunk`` steps (batch, cdiv(L, chunk), N, d_inner) fp32 (empty unless ``save_chunks``): channels
    last, so that the 32 threads of a warp write (and the backward reads) 32 neighbouring floats. Each a
    tensor of its own. ``launch_sizes_asked`` overrides the launch sizes (see :func:`default_config`;
    ``time`` picks the kernel).
    """
    out = _forward(u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, save_chunks, chunk, False, False,
                   launch_sizes_asked)  # fmt: skip
    h_chunks = out.h_chunks
    if h_chunks is None:
        h_chunks = torch.empty((0,), device=u.device, dtype=torch.float32)
    return out.y, out.h_last, h_chunks


def selective_scan_fwd_packed(
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
    **launch_sizes_asked,
) -> PackedForward:
    """The forward as :func:`selective_scan_fwd` computes it, for the eager autograd path: every fp32 output
    in one allocation, handed back as pieces of it (no tensor view made with the fast launch on: each
    costs host time, which decides the time of a short scan). ``bc_last``: also B and C as the backward
    reads them, (2, batch, groups, L, N) fp32, written by the channel kernel itself when it reads them as
    given, else by the launch of :mod:`layout` that makes the channel kernel's fp32 copies."""
    return _forward(u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, save_chunks, chunk, bc_last, True,
                    launch_sizes_asked)  # fmt: skip


def _forward(u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, save_chunks, chunk, bc_last, packed,
             launch_sizes_asked) -> PackedForward:  # fmt: skip
    batch, d_inner, L = u.shape
    N = A.shape[1]
    groups = B.shape[1] if B.dim() == 4 else 1
    if B.dim() not in (3, 4) or B.shape[-2:] != (N, L):
        raise ValueError(f"B must be (batch, [groups,] N, L) = (..., {N}, {L}) here, got {tuple(B.shape)}")
    flags = (D is not None, z is not None, delta_bias is not None, bool(delta_softplus), h0 is not None,
             bool(save_chunks))  # fmt: skip
    key = plan_key(u, N, groups, chunk, flags, OVERRIDES, launch_sizes_asked)
    p = plan(key, u.device, u.dtype, batch, d_inner, L, N, groups, chunk, flags, launch_sizes_asked)
    nothing = batch * d_inner == 0 or L == 0  # nothing to scan: the state passes straight through
    time_kernel = isinstance(p, TimePlan)
    f32 = torch.float32
    if time_kernel or nothing:  # the time kernel reads B and C in their own dtype
        convert = False
    else:  # fp32 copies, unless they are fp32 already, or 16-bit and read as they are (see default_config)
        convert = not (
            B.dtype == C.dtype and B.is_contiguous() and C.is_contiguous() and (
                B.dtype == f32 or (p.native_bc_autograd if bc_last else p.native_bc)
            )
        )  # fmt: skip
    # B, C for the backward: written by the channel kernel when it reads them as given and L is short (the
    # group's first block of channels copies them after its scan: a tail that a long L makes longer than
    # a launch of layout.py)
    write_bc = bc_last and not (time_kernel or nothing or convert) and p.native_bc
    n_seg = 1 if time_kernel else p.n_seg
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
            hl = as_tensor(h_last)
            hl.copy_(h0) if h0 is not None else hl.zero_()
    elif time_kernel or rows is None:
        B, C = B.contiguous(), C.contiguous()
    elif isinstance(rows, Slot):
        B, C = rows.at(0, bc_rows[1:]), rows.at(batch * groups * N * L, bc_rows[1:])
    else:
        B, C = rows.unbind(0)
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
            args += [carry, d_inner, L, N, d_inner // groups]
            kernel = selective_scan_fwd_time_kernel
            LAST[:] = [launch(kernel, p.grid, args, p.consts, p.num_warps, spec, **p.options)]
        else:
            args += [seg_h if n_seg > 1 else h_last, seg_dsum if n_seg > 1 else h_last,
                     last if write_bc else h_last, d_inner, L, N, d_inner // groups, p.seg_len, 1]  # fmt: skip
            kernel = selective_scan_fwd_kernel
            if n_seg > 1:
                launch(kernel, p.grid, args, p.seg_consts, p.num_warps, (spec, True))
            # the direct launcher's cache key names the variant: segment pass, main pass, main pass writing B, C
            if write_bc:
                LAST[:] = [launch(kernel, p.grid, args, p.consts_write_bc, p.num_warps, (spec, "write_bc"))]
            else:
                LAST[:] = [launch(kernel, p.grid, args, p.consts, p.num_warps, (spec, False))]
    return PackedForward(y, work, h_last, h_chunks, last)
