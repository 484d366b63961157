"""A linear time-invariant (LTI) SSM computed two ways: as a recurrence and as a convolution (Mamba §2).

Once discretized with a fixed step Δ, the SSM h' = Ah + Bu, y = Ch + Du becomes (Mamba Eq. 2)

    h_k = A_bar h_{k-1} + B_bar u_k,        y_k = C h_k + D u_k,        h_{-1} = h0 (zeros by default)

and, unrolling the recurrence from h_{-1} = 0, the same outputs are a causal convolution (Eq. 3a, 3b)

    K = (C B_bar, C A_bar B_bar, C A_bar^2 B_bar, ..., C A_bar^{L-1} B_bar),      y = K * u + D u,
    y_k = sum_{j=0}^{k} K_j u_{k-j} + D u_k.

The recurrence takes L sequential steps of O(N^2) (O(N) for a diagonal A_bar); the convolution needs the
kernel first, then costs O(L^2) summed directly or O(L log L) with the FFT, and every output is computed
independently of the others (parallel). Both only exist because A_bar, B_bar, C do not change with k: the
selective scan of notebook 04 gives that up.

Shapes (N states, L steps, ``...`` any batch dimensions of the input):

    A_bar : (N, N) full matrix, or (N,) the diagonal of a diagonal A_bar (S4D, Mamba)
    B_bar : (N,)      C : (N,)      D : a scalar (Python number or 0-d tensor)
    u, y  : (..., L)  h0 : (N,) or (..., N)      K : (L,)

Tensors may be float32, float64, complex64 or complex128; the computation runs in their promoted dtype
(float64 recommended in notebooks). With complex parameters (S4D-Lin) the output is complex: take ``.real``.

Many channels at once (the LTI ablation of the Mamba block trains this way): :func:`ssm_kernels` makes every
channel's kernel from its own diagonal system, discretized as the selective scan does, and
:func:`channel_convolution` convolves each channel of a batch with its own kernel by FFT.

    delta : (d,)      A, B, C : (d, N)      K : (d, L)      u, y : (..., d, L)
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

__all__ = [
    "channel_convolution",
    "conv_matrix",
    "kernel_effective_length",
    "lti",
    "lti_convolution",
    "lti_recurrent",
    "ssm_kernel",
    "ssm_kernels",
]

_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)
_REAL = (torch.float32, torch.float64)
_MODES = ("recurrent", "direct", "fft")


# --------------------------------------------------------------------------------------------------------
# Input checks: every public function validates before computing.


def _check_tensor(name: str, t, ndims: tuple[int, ...], what: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {what}, got {type(t).__name__}")
    if t.dim() not in ndims:
        raise ValueError(f"{name} must be {what}, got shape {tuple(t.shape)}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{name} must be float32, float64, complex64 or complex128, got {t.dtype}")


def _check_same_device(**tensors: torch.Tensor | None) -> None:
    items = [(k, v) for k, v in tensors.items() if isinstance(v, torch.Tensor)]
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device}, expected the device of {first_name} ({first.device})")


def _check_system(A_bar, B_bar, C) -> int:
    """Validate (A_bar, B_bar, C); return N."""
    _check_tensor("A_bar", A_bar, (1, 2), "of shape (N, N) or (N,) (a diagonal)")
    N = A_bar.shape[0]
    if N < 1:
        raise ValueError(f"A_bar must have at least one state (N >= 1), got shape {tuple(A_bar.shape)}")
    if A_bar.dim() == 2 and A_bar.shape[1] != N:
        raise ValueError(f"A_bar must be square (N, N) or a diagonal (N,), got shape {tuple(A_bar.shape)}")
    _check_tensor("B_bar", B_bar, (1,), f"of shape (N,) = ({N},)")
    if B_bar.shape[0] != N:
        raise ValueError(f"B_bar must have shape (N,) = ({N},), got {tuple(B_bar.shape)}")
    _check_tensor("C", C, (1,), f"of shape (N,) = ({N},)")
    if C.shape[0] != N:
        raise ValueError(f"C must have shape (N,) = ({N},), got {tuple(C.shape)}")
    _check_same_device(A_bar=A_bar, B_bar=B_bar, C=C)
    return N


def _check_u(u) -> int:
    _check_tensor("u", u, tuple(range(1, 16)), "of shape (..., L)")
    L = u.shape[-1]
    if L < 1:
        raise ValueError(f"u must have at least one step (L >= 1), got shape {tuple(u.shape)}")
    return L


def _check_D(D) -> None:
    if isinstance(D, torch.Tensor):
        if D.dim() != 0:
            raise ValueError(f"D must be a scalar (a number or a 0-d tensor), got shape {tuple(D.shape)}")
        if D.dtype not in _DTYPES:
            raise TypeError(f"D must be float32, float64, complex64 or complex128, got {D.dtype}")
    elif isinstance(D, bool) or not isinstance(D, numbers.Number):
        raise TypeError(f"D must be a number or a 0-d tensor, got {type(D).__name__}")


def _check_length(name: str, L) -> None:
    if isinstance(L, bool) or not isinstance(L, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(L).__name__}")
    if L < 1:
        raise ValueError(f"{name} must be >= 1, got {L}")


def _skip(y: torch.Tensor, u: torch.Tensor, D) -> torch.Tensor:
    """y + D u, the skip connection (a no-op for the plain number 0)."""
    if isinstance(D, numbers.Number) and D == 0:
        return y
    return y + D * u


# --------------------------------------------------------------------------------------------------------
# The kernel K_k = C A_bar^k B_bar (Eq. 3a).


def ssm_kernel(A_bar: torch.Tensor, B_bar: torch.Tensor, C: torch.Tensor, L: int) -> torch.Tensor:
    """The SSM convolution kernel K_k = C A_bar^k B_bar for k = 0..L-1 (Mamba Eq. 3a).

    Args:
        A_bar: (N, N), or (N,) for a diagonal A_bar. B_bar, C: (N,). L: the kernel length, >= 1.
    Returns:
        K: (L,) in the promoted dtype of A_bar, B_bar, C.

    Diagonal A_bar: K_k = sum_n C_n B_bar_n A_bar_n^k, a Vandermonde matrix (N, L) of powers times the
    vector C ⊙ B_bar. Full A_bar: the Krylov vectors A_bar^k B_bar by doubling (V ← [V, A_bar^m V],
    A_bar^m ← (A_bar^m)^2), log2(L) matrix products instead of L matrix-vector steps.
    """
    _check_system(A_bar, B_bar, C)
    _check_length("L", L)
    dt = torch.promote_types(torch.promote_types(A_bar.dtype, B_bar.dtype), C.dtype)
    A_bar, B_bar, C = A_bar.to(dt), B_bar.to(dt), C.to(dt)
    if A_bar.dim() == 1:
        k = torch.arange(L, device=A_bar.device, dtype=A_bar.real.dtype)
        # Vandermonde V[n, k] = A_bar_n^k: (N, L); pow of a real base to an integer-valued exponent keeps the
        # sign of a negative A_bar_n (Euler with a large Δ), and 0^0 = 1
        V = torch.pow(A_bar[:, None], k[None, :].to(dt))
        return (C * B_bar) @ V  # (N,) @ (N, L) -> (L,)
    V = B_bar[:, None]  # Krylov block [B, A B, ..., A^{m-1} B]: (N, m)
    P = A_bar  # A_bar^m
    while V.shape[1] < L:
        V = torch.cat([V, P @ V], dim=1)  # (N, 2m)
        P = P @ P
    return C @ V[:, :L]  # (N,) @ (N, L) -> (L,)


# --------------------------------------------------------------------------------------------------------
# Recurrent mode (Eq. 2).


def lti_recurrent(
    A_bar: torch.Tensor,
    B_bar: torch.Tensor,
    C: torch.Tensor,
    u: torch.Tensor,
    D: float | torch.Tensor = 0.0,
    h0: torch.Tensor | None = None,
) -> torch.Tensor:
    """The recurrence h_k = A_bar h_{k-1} + B_bar u_k, y_k = C h_k + D u_k (Mamba Eq. 2), one step at a time.

    Args:
        A_bar: (N, N) or (N,) diagonal. B_bar, C: (N,). u: (..., L). D: scalar.
        h0: the state before the first step, (N,) or (..., N); zeros when None.
    Returns:
        y: (..., L) in the promoted dtype of the inputs.
    """
    N = _check_system(A_bar, B_bar, C)
    _check_u(u)
    _check_D(D)
    _check_same_device(A_bar=A_bar, u=u, h0=h0)
    if h0 is not None:
        _check_tensor("h0", h0, tuple(range(1, 16)), f"of shape (N,) or (..., N) with N = {N}")
        if h0.shape[-1] != N:
            raise ValueError(f"h0 must have shape (N,) or (..., N) with N = {N}, got {tuple(h0.shape)}")
        try:
            torch.broadcast_shapes(h0.shape[:-1], u.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"h0's batch dimensions {tuple(h0.shape[:-1])} do not broadcast with u's {tuple(u.shape[:-1])}"
            ) from None
    dt = u.dtype
    for t in (A_bar, B_bar, C, h0):
        if t is not None:
            dt = torch.promote_types(dt, t.dtype)
    A_bar, B_bar, C, u = A_bar.to(dt), B_bar.to(dt), C.to(dt), u.to(dt)
    batch = u.shape[:-1]
    h = (
        u.new_zeros(*batch, N)
        if h0 is None
        else h0.to(dt).expand(*torch.broadcast_shapes(h0.shape[:-1], batch), N)
    )
    # B_bar u_k for every k at once: (..., L, N)
    Bu = u[..., :, None] * B_bar
    ys = []
    for k in range(u.shape[-1]):
        # A_bar h: (..., N); a diagonal A_bar multiplies elementwise, a full one is a matrix-vector product
        Ah = A_bar * h if A_bar.dim() == 1 else h @ A_bar.T
        h = Ah + Bu[..., k, :]
        ys.append(h @ C)  # (..., N) @ (N,) -> (...)
    y = torch.stack(ys, dim=-1)  # (..., L)
    return _skip(y, u, D)


# --------------------------------------------------------------------------------------------------------
# Convolution mode (Eq. 3b).


def _conv_direct(K: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """sum_{j<=k} K_j u_{k-j} for K (L,) and u (..., L): the Toeplitz matrix times u, O(L^2) multiply-adds.

    The (L, L) matrix is built a block of rows at a time (at most 2^22 entries), so memory stays O(L).
    """
    L = u.shape[-1]
    rows = max(1, (1 << 22) // L)
    idx = torch.arange(L, device=u.device)
    out = []
    for s in range(0, L, rows):
        e = min(L, s + rows)
        lag = idx[s:e, None] - idx[None, :e]  # (rows, e): k - j
        T = torch.where(lag >= 0, K[lag.clamp_min(0)], torch.zeros((), dtype=K.dtype, device=K.device))
        out.append(u[..., :e] @ T.T)  # (..., e) @ (e, rows) -> (..., rows)
    return torch.cat(out, dim=-1)


def _fft_causal(K: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """y[..., k] = sum_{j<=k} K[..., j] u[..., k-j] by FFT; K and u of one dtype, K (..., L) broadcasting
    against u (..., L).

    Both are zero-padded to n >= 2L - 1 so that the FFT's circular convolution does not wrap around (n a power
    of two: a fast FFT size); multiply the spectra, transform back, keep the first L.
    """
    L = u.shape[-1]
    n = 1 << (2 * L - 1).bit_length()
    if u.dtype.is_complex:
        return torch.fft.ifft(torch.fft.fft(u, n=n) * torch.fft.fft(K, n=n), n=n)[..., :L]
    return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(K, n=n), n=n)[..., :L]


def lti_convolution(
    K: torch.Tensor, u: torch.Tensor, D: float | torch.Tensor = 0.0, fft: bool = True
) -> torch.Tensor:
    """The causal convolution y_k = sum_{j=0}^{k} K_j u_{k-j} + D u_k (Mamba Eq. 3b).

    Args:
        K: (L_K,) the kernel; only its first L entries are used, and missing ones count as zeros.
        u: (..., L). D: scalar.
        fft: True for the FFT convolution, O(L log L): zero-pad both to length >= 2L - 1 so that the FFT's
            circular convolution does not wrap around, multiply the spectra, transform back, keep the first L.
            False for the direct sum, O(L^2) multiply-adds.
    Returns:
        y: (..., L) in the promoted dtype of K and u.
    """
    _check_tensor("K", K, (1,), "of shape (L,)")
    if K.shape[0] < 1:
        raise ValueError(f"K must have at least one entry, got shape {tuple(K.shape)}")
    L = _check_u(u)
    _check_D(D)
    _check_same_device(K=K, u=u)
    if not isinstance(fft, bool):
        raise TypeError(f"fft must be a bool, got {type(fft).__name__}")
    dt = torch.promote_types(K.dtype, u.dtype)
    K, u = K.to(dt)[:L], u.to(dt)
    if K.shape[0] < L:
        K = F.pad(K, (0, L - K.shape[0]))
    if fft:
        y = _fft_causal(K, u)
    else:
        y = _conv_direct(K, u)
    return _skip(y, u, D)


# --------------------------------------------------------------------------------------------------------
# Many channels at once: one diagonal system per channel, discretized as the selective scan does.


def _check_real(name: str, t, ndim: int, what: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {what}, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must have shape {what}, got {tuple(t.shape)}")
    if t.dtype not in _REAL:
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")


def ssm_kernels(
    delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, L: int
) -> torch.Tensor:
    """Every channel's convolution kernel (Mamba Eq. 3a) at once, discretized as the selective scan does:

        K[c, k] = sum_n C[c, n] exp(k Δ_c A[c, n]) Δ_c B[c, n],        k = 0..L-1,

    the kernel of channel c's diagonal system with A_bar = exp(Δ A) (ZOH) and B_bar = Δ B (Euler), the pair
    ``minimamba.scan.selective_scan_ref`` uses, here with a Δ constant in time. A_bar^k is computed as
    exp(k Δ A): one exponential per entry, no repeated rounding; with A < 0 and Δ > 0 every entry lies in
    (0, 1] and decays with k (neither sign is checked here).

    Args:
        delta: (d,) the step Δ of each channel (after any softplus). A, B, C: (d, N): the continuous-time
            diagonal A, and B, C. All float32 or float64, on one device. L: the kernel length, >= 1.
    Returns:
        K: (d, L) in the promoted dtype of the inputs. Memory: one (d, N, L) tensor, exp(k Δ A), which the
        backward keeps; nothing that grows with a batch.
    """
    _check_real("delta", delta, 1, "(d,)")
    d = delta.shape[0]
    _check_real("A", A, 2, f"(d, N) with d = {d}")
    if A.shape[0] != d:
        raise ValueError(f"A must have shape (d, N) with d = {d} (delta's length), got {tuple(A.shape)}")
    if A.shape[1] < 1:
        raise ValueError(f"A must have at least one state (N >= 1), got shape {tuple(A.shape)}")
    shape = tuple(A.shape)
    for name, t in (("B", B), ("C", C)):
        _check_real(name, t, 2, f"(d, N) = {shape}")
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape (d, N) = {shape} (A's), got {tuple(t.shape)}")
    _check_length("L", L)
    _check_same_device(delta=delta, A=A, B=B, C=C)
    dt = torch.promote_types(torch.promote_types(delta.dtype, A.dtype), torch.promote_types(B.dtype, C.dtype))
    delta, A, B, C = delta.to(dt), A.to(dt), B.to(dt), C.to(dt)
    k = torch.arange(L, device=A.device, dtype=dt)  # (L,)
    A_bar_k = torch.exp((delta[:, None] * A)[:, :, None] * k)  # exp(k Δ A): (d, N, L)
    CB_bar = C * delta[:, None] * B  # C ⊙ Δ B: (d, N)
    return (CB_bar[:, :, None] * A_bar_k).sum(1)  # (d, N, L) summed over N -> (d, L)


def channel_convolution(K: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Each channel convolved causally with its own kernel by FFT (Mamba Eq. 3b, every channel at once):

        y[..., c, k] = sum_{j=0}^{k} K[c, j] u[..., c, k-j].

    Args:
        K: (d, L_K), one kernel per channel; only its first L taps are used, missing ones count as zeros.
        u: (..., d, L), L >= 1. Both float32 or float64, on one device.
    Returns:
        y: (..., d, L) in the promoted dtype of K and u. O(L log L) per channel: u and K zero-padded to a power
        of two n >= 2L - 1 (no wrap-around); the backward keeps u's spectrum, (..., d, n/2 + 1) complex.
    """
    _check_real("K", K, 2, "(d, L_K)")
    if K.shape[1] < 1:
        raise ValueError(f"K must have at least one tap, got shape {tuple(K.shape)}")
    d = K.shape[0]
    if not isinstance(u, torch.Tensor):
        raise TypeError(f"u must be a torch.Tensor of shape (..., d, L), got {type(u).__name__}")
    if u.dim() < 2 or u.shape[-2] != d or u.shape[-1] < 1:
        raise ValueError(
            f"u must have shape (..., d, L) with d = {d} (K's rows) and L >= 1, got {tuple(u.shape)}"
        )
    if u.dtype not in _REAL:
        raise TypeError(f"u must be float32 or float64, got {u.dtype}")
    _check_same_device(K=K, u=u)
    L = u.shape[-1]
    dt = torch.promote_types(K.dtype, u.dtype)
    K, u = K.to(dt)[:, :L], u.to(dt)
    if K.shape[1] < L:
        K = F.pad(K, (0, L - K.shape[1]))
    return _fft_causal(K, u)


def conv_matrix(x: torch.Tensor, L: int | None = None) -> torch.Tensor:
    """The lower-triangular Toeplitz matrix T with T[k, j] = x_{k-j} (k >= j), 0 above the diagonal.

    ``conv_matrix(K) @ u`` is the causal convolution K * u; since convolution commutes, so is
    ``conv_matrix(u) @ K``, which makes the output linear in the kernel (fit a kernel by least squares).

    Args:
        x: (L_x,). L: the matrix size (default L_x); entries of x beyond L are unused, missing ones are 0.
    Returns:
        T: (L, L) in x's dtype.
    """
    _check_tensor("x", x, (1,), "of shape (L,)")
    if L is None:
        L = x.shape[0]
    _check_length("L", L)
    x = F.pad(x, (0, max(0, L - x.shape[0])))[:L]
    k = torch.arange(L, device=x.device)
    lag = k[:, None] - k[None, :]  # (L, L): k - j
    return torch.where(lag >= 0, x[lag.clamp_min(0)], torch.zeros((), dtype=x.dtype, device=x.device))


def kernel_effective_length(K: torch.Tensor, mass: float = 0.95) -> int:
    """The number of leading taps holding ``mass`` of the kernel's total |K|: min k with sum_{j<k} |K_j| >= mass·sum |K|.

    A memory length in steps: for S4D-Real with ZOH, K_k ≈ Δ f(kΔ), so this scales like 1/Δ.

    Args:
        K: (L,). mass: a fraction in (0, 1].
    """
    _check_tensor("K", K, (1,), "of shape (L,)")
    if isinstance(mass, bool) or not isinstance(mass, numbers.Real):
        raise TypeError(f"mass must be a float in (0, 1], got {type(mass).__name__}")
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    cum = torch.cumsum(K.detach().abs().double(), 0)
    total = cum[-1]
    if total == 0:
        raise ValueError("K must have a nonzero entry, got all zeros")
    return int(torch.searchsorted(cum, mass * total).item()) + 1


# --------------------------------------------------------------------------------------------------------
# Convenience: discretize, then compute in the chosen mode.


def lti(
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    u: torch.Tensor,
    delta: float | torch.Tensor,
    D: float | torch.Tensor = 0.0,
    method: str = "zoh",
    mode: str = "fft",
) -> torch.Tensor:
    """Discretize (A, B) with step ``delta`` and ``method``, then compute y for input u in ``mode``.

    Args:
        A: (N, N) or (N,) diagonal, continuous time. B, C: (N,). u: (..., L). delta: the step Δ > 0.
        D: scalar. method: "euler", "bilinear", "zoh" or "mamba" (see ``minimamba.discretize``).
        mode: "recurrent" (Eq. 2), "direct" (Eq. 3, O(L^2) sum) or "fft" (Eq. 3, O(L log L)).
    Returns:
        y: (..., L).
    """
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, _MODES))}; got {mode!r}")
    from minimamba.discretize import discretize  # noqa: PLC0415  (validates A, B, delta and method)

    A_bar, B_bar = discretize(A, B, delta, method=method)
    if mode == "recurrent":
        return lti_recurrent(A_bar, B_bar, C, u, D)
    L = _check_u(u)
    K = ssm_kernel(A_bar, B_bar, C, L)
    return lti_convolution(K, u, D, fft=mode == "fft")
