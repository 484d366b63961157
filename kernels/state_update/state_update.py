"""One decoding step of the selective SSM, fused: read the state once, update it in place, emit y.

In generation (Mamba §3.4, the recurrent mode; §4.5) each layer sees one new token per sequence and keeps
a fixed-size state h (batch, d_inner, N). For every batch b, channel d and state n (ZOH for A, Euler for B,
as :func:`minimamba.scan.selective_scan_ref` and :meth:`minimamba.block.MambaMixer.step`):

    Δ   = softplus(dt + dt_bias)                 (or dt + dt_bias without ``dt_softplus``)
    h_n ← exp(Δ A_n) · h_n + Δ B_n x             the state, updated in place
    y   = Σ_n C_n h_n + D x
    y   ← y · silu(z)                             silu(z) = z · sigmoid(z)

softplus is PyTorch's ``F.softplus`` with its default threshold: Δ = dt + dt_bias above 20 (where
log(1 + eˣ) and x agree in fp32 anyway), so that the kernel does exactly what ``MambaMixer.step`` does.

**Who does what.** One program owns one sequence b and BLOCK_D neighbouring channels, with all their N
states (padded to BLOCK_N, a power of 2, by masks) in registers: a (BLOCK_D, BLOCK_N) tile. Everything
that depends only on (b, d) — Δ, the skip D·x, the gate — is computed once per channel, not once per
state; the sum over the states is a reduction inside the tile. Δ, exp(ΔA), the state and the reduction are
fp32 whatever the input dtype; y is written in x's dtype.

**Bytes moved** (fp32 state, N = 16): the state is read and written once, 2 · 4 · N = 128 bytes per
channel, against a few bytes of x, dt, z, D, dt_bias and y, and B, C (N values per sequence, shared by
every channel). A step is bound by the state's traffic. Unfused, as in ``MambaMixer.step``, PyTorch also
writes and reads back the (batch, d_inner, N) intermediates exp(ΔA), ΔBx and h·C, one kernel launch per
operation. (Not timed here yet.)

Every tensor is read through its strides: x and z are usually halves of the in_proj output and B, C
slices of the x_proj output, and the state may be a view into a larger cache; nothing is copied.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from minimamba import env

from ..selective_scan.common import softplus

__all__ = [
    "check_state_update_args",
    "kernel_runs_here",
    "selective_state_update",
    "selective_state_update_ref",
]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_STATE_DTYPES = (torch.float32, torch.float64)

#: ``F.softplus``'s default threshold: above it softplus(x) is taken to be x.
SOFTPLUS_THRESHOLD = tl.constexpr(20.0)


@triton.jit
def selective_state_update_kernel(
    # ---- the state, read and written in place ----
    p_h,  # (batch, d_inner, N) fp32 ssm_state
    # ---- inputs (any float dtype unless said, read through their strides) ----
    p_x,  # (batch, d_inner) the token's input to the SSM (after the conv and SiLU)
    p_dt,  # (batch, d_inner) the raw time step, before dt_bias and softplus
    p_A,  # (d_inner, N) the diagonal state matrix (negative for a decaying state)
    p_B,  # (batch, N) input projection, shared by every channel
    p_C,  # (batch, N) output projection, shared by every channel
    p_D,  # (d_inner,) skip connection (read when HAS_D)
    p_z,  # (batch, d_inner) gate (read when HAS_Z)
    p_dt_bias,  # (d_inner,) added to dt before softplus (read when HAS_DT_BIAS)
    # ---- output ----
    p_y,  # (batch, d_inner) contiguous, in x's dtype
    # ---- sizes ----
    d_inner,  # channels
    N,  # states per channel
    # ---- strides, in elements ----
    s_h_b, s_h_d, s_h_n,  # ssm_state
    s_x_b, s_x_d,  # x
    s_dt_b, s_dt_d,  # dt
    s_A_d, s_A_n,  # A
    s_B_b, s_B_n,  # B
    s_C_b, s_C_n,  # C
    s_D_d,  # D
    s_z_b, s_z_d,  # z
    s_bias_d,  # dt_bias
    # ---- compile-time switches ----
    BLOCK_D: tl.constexpr,  # channels per program
    BLOCK_N: tl.constexpr,  # N rounded up to a power of two
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_DT_BIAS: tl.constexpr,
    DT_SOFTPLUS: tl.constexpr,
):  # fmt: skip
    # ---- 1. which channels of which sequence this program owns ----
    i_d = tl.program_id(0)  # block of channels
    i_b = tl.program_id(1).to(tl.int64)  # sequence in the batch (int64: offsets into a large cache)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,) channel indices
    m_d = o_d < d_inner  # the last block runs past the end
    o_n = tl.arange(0, BLOCK_N)  # (BLOCK_N,) state indices
    m_n = o_n < N  # N padded to a power of two
    m_dn = m_d[:, None] & m_n[None, :]  # (BLOCK_D, BLOCK_N)

    # ---- 2. per-channel values, fp32 ----
    b_x = tl.load(p_x + i_b * s_x_b + o_d * s_x_d, mask=m_d, other=0.0).to(tl.float32)  # (BLOCK_D,)
    b_dt = tl.load(p_dt + i_b * s_dt_b + o_d * s_dt_d, mask=m_d, other=0.0).to(tl.float32)
    if HAS_DT_BIAS:
        b_dt += tl.load(p_dt_bias + o_d * s_bias_d, mask=m_d, other=0.0).to(tl.float32)
    if DT_SOFTPLUS:  # F.softplus(dt): log(1 + e^dt), or dt itself above the threshold
        b_dt = tl.where(b_dt > SOFTPLUS_THRESHOLD, b_dt, softplus(b_dt))
    # b_dt is now Δ, (BLOCK_D,)

    # ---- 3. per-state values: A for each (channel, state), B and C shared by the channels ----
    # Masked lanes load A = 0, B = 0, C = 0: exp(Δ·0) = 1 and Δ·0·x = 0 keep a padded state at 0, and C = 0
    # drops it from the sum.
    b_A = tl.load(p_A + o_d[:, None] * s_A_d + o_n[None, :] * s_A_n, mask=m_dn, other=0.0).to(tl.float32)
    b_B = tl.load(p_B + i_b * s_B_b + o_n * s_B_n, mask=m_n, other=0.0).to(tl.float32)  # (BLOCK_N,)
    b_C = tl.load(p_C + i_b * s_C_b + o_n * s_C_n, mask=m_n, other=0.0).to(tl.float32)

    # ---- 4. the state: read, one step of the recurrence, write back in place ----
    p_h_tile = p_h + i_b * s_h_b + o_d[:, None] * s_h_d + o_n[None, :] * s_h_n  # (BLOCK_D, BLOCK_N)
    b_h = tl.load(p_h_tile, mask=m_dn, other=0.0)  # fp32
    b_A_bar = tl.exp(b_dt[:, None] * b_A)  # exp(ΔA), ZOH
    b_Bx = b_dt[:, None] * b_B[None, :] * b_x[:, None]  # Δ B x, Euler
    b_h = b_A_bar * b_h + b_Bx
    tl.store(p_h_tile, b_h, mask=m_dn)

    # ---- 5. the output: contract with C, skip, gate ----
    b_y = tl.sum(b_h * b_C[None, :], axis=1)  # (BLOCK_D,) Σ_n C_n h_n
    if HAS_D:
        b_y += tl.load(p_D + o_d * s_D_d, mask=m_d, other=0.0).to(tl.float32) * b_x
    if HAS_Z:
        b_z = tl.load(p_z + i_b * s_z_b + o_d * s_z_d, mask=m_d, other=0.0).to(tl.float32)
        b_y *= b_z * tl.sigmoid(b_z)  # y · silu(z)
    tl.store(p_y + i_b * d_inner + o_d, b_y.to(p_y.dtype.element_ty), mask=m_d)


# --------------------------------------------------------------------------------------------------------
# Host side: validate, pick the block size, launch (or run the reference where the kernel cannot run).


def _check(name: str, t, shape: tuple, meaning: str, device: torch.device | None) -> None:
    """t is a floating-point tensor of exactly ``shape`` (``meaning`` names its axes) on ``device``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {meaning} = {shape}, got {tuple(t.shape)}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device}, expected the device of ssm_state ({device})")


def check_state_update_args(
    ssm_state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=True
) -> tuple[int, int, int]:
    """Validate the arguments of :func:`selective_state_update`; return ``(batch, d_inner, N)``.

    Raises ``TypeError`` (not a tensor, wrong dtype, dt_softplus not a bool) or ``ValueError`` (shape,
    device) naming the argument, what was expected and what was given, before anything is computed.
    """
    if not isinstance(ssm_state, torch.Tensor):
        raise TypeError(f"ssm_state must be a torch.Tensor, got {type(ssm_state).__name__}")
    if ssm_state.dim() != 3:
        raise ValueError(
            f"ssm_state must have shape (batch, d_inner, N), got shape {tuple(ssm_state.shape)} "
            f"({ssm_state.dim()} dimensions)"
        )
    if ssm_state.dtype not in _STATE_DTYPES:
        raise TypeError(
            f"ssm_state must be float32 (float64 for a float64 model): the state is updated in place and "
            f"never kept in a 16-bit type; got {ssm_state.dtype}"
        )
    batch, d_inner, N = ssm_state.shape
    if N < 1:
        raise ValueError(
            f"ssm_state must have at least one state (N >= 1), got shape {tuple(ssm_state.shape)}"
        )
    dev = ssm_state.device
    _check("x", x, (batch, d_inner), "(batch, d_inner)", dev)
    _check("dt", dt, (batch, d_inner), "(batch, d_inner)", dev)
    _check("A", A, (d_inner, N), "(d_inner, N)", dev)
    _check("B", B, (batch, N), "(batch, N)", dev)
    _check("C", C, (batch, N), "(batch, N)", dev)
    for name, t in (("D", D), ("dt_bias", dt_bias)):
        if t is not None:
            _check(name, t, (d_inner,), "(d_inner,)", dev)
    if z is not None:
        _check("z", z, (batch, d_inner), "(batch, d_inner)", dev)
    if not isinstance(dt_softplus, bool):
        raise TypeError(f"dt_softplus must be a bool, got {type(dt_softplus).__name__}")
    return batch, d_inner, N


def selective_state_update_ref(
    ssm_state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = True,
) -> torch.Tensor:
    """The PyTorch reference of :func:`selective_state_update`, operation for operation as
    ``MambaMixer.step``: computed in ssm_state's dtype (fp32, or fp64), ssm_state updated in place,
    y (batch, d_inner) returned in x's dtype."""
    check_state_update_args(ssm_state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    ct = ssm_state.dtype
    delta = dt.to(ct)  # (batch, d_inner)
    if dt_bias is not None:
        delta = delta + dt_bias.to(ct)
    if dt_softplus:
        delta = F.softplus(delta)  # threshold 20, as in MambaMixer.step
    xf = x.to(ct)
    A_bar = torch.exp(delta[..., None] * A.to(ct))  # (batch, d_inner, N)  ZOH
    B_bar_x = delta[..., None] * B.to(ct)[:, None, :] * xf[..., None]  # (batch, d_inner, N)  Euler
    h = A_bar * ssm_state + B_bar_x  # (batch, d_inner, N)
    ssm_state.copy_(h)
    y = (h * C.to(ct)[:, None, :]).sum(-1)  # (batch, d_inner)
    if D is not None:
        y = y + D.to(ct) * xf
    if z is not None:
        y = y * F.silu(z.to(ct))  # gate
    return y.to(x.dtype)


@functools.cache
def _triton_status() -> env.TritonStatus:
    """Decided once per process (a decoding loop calls the wrapper once per token and layer)."""
    return env.triton_status()


def kernel_runs_here(ssm_state: torch.Tensor) -> bool:
    """The kernel keeps the state in fp32 and runs on a GPU, or on CPU tensors in Triton's interpreter."""
    if ssm_state.dtype != torch.float32:
        return False
    status = _triton_status()
    if not status.usable:
        return False
    return status.interpreted or ssm_state.is_cuda


def launch_config(d_inner: int, N: int, interpreted: bool) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_N, num_warps). On a GPU a program holds about 512 (channel, state) pairs, 4 per thread
    of 4 warps (32 channels at N <= 16, down to 4 at N = 128; mamba_ssm sizes its blocks so too). Not tuned
    by timing here. In the interpreter, blocks of 2 channels: d_inner = 3 or 5 then runs several programs
    with a half-empty last one, and every program costs little."""
    BLOCK_N = triton.next_power_of_2(N)
    if interpreted:
        return 2, BLOCK_N, 1
    BLOCK_D = max(4, min(32, 512 // BLOCK_N))
    return BLOCK_D, BLOCK_N, 4 if BLOCK_N <= 128 else 8


def selective_state_update(
    ssm_state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = True,
) -> torch.Tensor:
    """One token through the SSM of a Mamba layer; ``ssm_state`` is updated in place.

    Args:
        ssm_state: (batch, d_inner, N) float32 (float64 too, by the reference), h before this token.
        x, dt, z: (batch, d_inner). dt is before dt_bias and softplus.
        A: (d_inner, N). B, C: (batch, N), shared by every channel. D, dt_bias: (d_inner,).
        dt_softplus: Δ = softplus(dt + dt_bias) (PyTorch's threshold of 20), else Δ = dt + dt_bias.
    Returns:
        y: (batch, d_inner) in x's dtype, gated by silu(z) when z is given.

    The Triton kernel runs on a GPU (on CPU tensors in Triton's interpreter, without one); a float64 state,
    or CPU tensors where Triton cannot run, take :func:`selective_state_update_ref`.
    """
    batch, d_inner, N = check_state_update_args(ssm_state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    if not kernel_runs_here(ssm_state):
        return selective_state_update_ref(ssm_state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    y = torch.empty(batch, d_inner, dtype=x.dtype, device=x.device)
    if batch == 0 or d_inner == 0:
        return y
    BLOCK_D, BLOCK_N, num_warps = launch_config(d_inner, N, _triton_status().interpreted)
    # Unused optional pointers point at x with stride 0: the kernel never reads them (HAS_* is False).
    D_, z_, bias_ = (x if t is None else t for t in (D, z, dt_bias))
    grid = (triton.cdiv(d_inner, BLOCK_D), batch)
    selective_state_update_kernel[grid](
        ssm_state, x, dt, A, B, C, D_, z_, bias_, y,
        d_inner, N,
        *ssm_state.stride(), *x.stride(), *dt.stride(), *A.stride(), *B.stride(), *C.stride(),
        0 if D is None else D.stride(0), *(z.stride() if z is not None else (0, 0)),
        0 if dt_bias is None else dt_bias.stride(0),
        BLOCK_D=BLOCK_D, BLOCK_N=BLOCK_N, HAS_D=D is not None, HAS_Z=z is not None,
        HAS_DT_BIAS=dt_bias is not None, DT_SOFTPLUS=dt_softplus, num_warps=num_warps,
    )  # fmt: skip
    return y
