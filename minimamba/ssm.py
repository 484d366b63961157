"""Continuous-time state space models (Mamba §2, Eq. 1a/1b) and the matrices Mamba starts from.

    h'(t) = A h(t) + B u(t)          (Eq. 1a; the paper names the input x(t), we follow mamba_ssm and say u)
    y(t)  = C h(t) + D u(t)          (Eq. 1b has no D; the skip term D u is mamba_ssm's)

One input, one output, N states. Shapes, everywhere in this module:

    A : (N, N) a full matrix, or (N,) the diagonal of a diagonal matrix (real or complex)
    B : (N,)       C : (N,)       D : a Python number or 0-d tensor
    t : (L,) times; u : (L,) input samples at those times

Everything computes in the dtype of its inputs (float64 recommended in notebooks; complex when A is).

- Matrices: ``hippo_legs`` (HiPPO-LegS, Gu et al. 2020), ``s4d_real`` (Mamba §3.6), ``s4d_lin`` (Gu et al.
  2022, "On the Parameterization and Initialization of Diagonal State Space Models").
- Responses by the matrix exponential: ``impulse_response`` (C exp(tA) B), ``step_response``.
- ``simulate``: the state and output for sampled input, exact when the input is held constant between
  samples (zero-order hold, the ZOH of ``minimamba.discretize``).
- HiPPO-LegS memory: ``legs_memory`` runs the LegS ODE over an input, ``legendre_reconstruct`` turns the
  state back into an approximation of the whole input history.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = [
    "check_ssm",
    "expm",
    "hippo_legs",
    "impulse_response",
    "legendre_reconstruct",
    "legs_memory",
    "s4d_lin",
    "s4d_real",
    "simulate",
    "step_response",
]

_REAL = (torch.float32, torch.float64)
_COMPLEX = (torch.complex64, torch.complex128)


def _check_n(N) -> None:
    if isinstance(N, bool) or not isinstance(N, int):
        raise TypeError(f"N must be an int, got {type(N).__name__}")
    if N < 1:
        raise ValueError(f"N must be >= 1, got {N}")


def _check_vec(name: str, v, n: int | None, allow_complex: bool = True) -> None:
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    ok = _REAL + _COMPLEX if allow_complex else _REAL
    if v.dtype not in ok:
        kinds = "float32, float64, complex64 or complex128" if allow_complex else "float32 or float64"
        raise TypeError(f"{name} must be {kinds}, got {v.dtype}")
    if v.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(v.shape)}")
    if n is not None and v.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match A, got {tuple(v.shape)}")


def check_ssm(A, B, C=None) -> int:
    """Validate ``A`` ((N, N) or diagonal (N,)), ``B`` (N,) and optionally ``C`` (N,); return N.

    Raises ``TypeError`` (not a tensor, not float32/64 or complex64/128) or ``ValueError`` (shape) naming
    the argument, what was expected and what was given.
    """
    if not isinstance(A, torch.Tensor):
        raise TypeError(f"A must be a torch.Tensor, got {type(A).__name__}")
    if A.dtype not in _REAL + _COMPLEX:
        raise TypeError(f"A must be float32, float64, complex64 or complex128, got {A.dtype}")
    if A.dim() == 2:
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be square (N, N) or a diagonal (N,), got shape {tuple(A.shape)}")
    elif A.dim() != 1:
        raise ValueError(f"A must be (N, N) or a diagonal (N,), got shape {tuple(A.shape)}")
    N = A.shape[0]
    if N < 1:
        raise ValueError(f"A must have at least one state (N >= 1), got shape {tuple(A.shape)}")
    _check_vec("B", B, N)
    if C is not None:
        _check_vec("C", C, N)
    if A.device != B.device or (C is not None and C.device != A.device):
        raise ValueError("A, B and C must be on one device")
    return N


def _check_times(name: str, t, increasing: bool = True) -> None:
    _check_vec(name, t, None, allow_complex=False)
    if t.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one time, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite")
    if increasing and t.shape[0] > 1 and not (t[1:] > t[:-1]).all():
        raise ValueError(f"{name} must be strictly increasing")


def _dtype(*ts: torch.Tensor) -> torch.dtype:
    dt = ts[0].dtype
    for x in ts[1:]:
        dt = torch.promote_types(dt, x.dtype)
    return dt


def _real_of(dtype: torch.dtype) -> torch.dtype:
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def expm(X: torch.Tensor) -> torch.Tensor:
    """The matrix exponential of X (..., N, N), accurate to rounding in float64.

    ``torch.linalg.matrix_exp`` picks a Taylor degree from the norm; for a single matrix with 1-norm between
    about 0.01 and 0.05 its degree-8 path loses digits (errors up to ~1e-11 in float64, ~1e-5 in float32;
    pytorch/pytorch#196592, a wrong coefficient). A batch of two or more always takes the degree-18 path,
    so a lone matrix is sent as a batch of two.
    """
    if X.shape[:-2].numel() == 1:
        lone = X.reshape(1, *X.shape[-2:]).expand(2, *X.shape[-2:])  # (2, N, N): two copies of X
        return torch.linalg.matrix_exp(lone)[0].reshape(X.shape)
    return torch.linalg.matrix_exp(X)


# ----------------------------------------------------------------------------------------------- matrices


def hippo_legs(N: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LegS (Gu et al. 2020, Theorem 2): ``A (N, N)`` lower triangular, ``B (N,)``.

    A_nk = -sqrt(2n+1) sqrt(2k+1) for n > k,  -(n+1) for n = k,  0 for n < k;   B_n = sqrt(2n+1).

    With these, c'(t) = (1/t) (A c(t) + B u(t)) keeps c(t) equal to the coefficients of the input's whole
    history u(s), s in [0, t], in the scaled Legendre basis (see ``legs_memory``, ``legendre_reconstruct``).
    The eigenvalues are the diagonal, -1, -2, ..., -N: every mode decays.
    """
    _check_n(N)
    q = torch.sqrt(2 * torch.arange(N, dtype=torch.float64) + 1)  # (N,) sqrt(2n+1)
    A = -torch.tril(q[:, None] * q[None, :], diagonal=-1) - torch.diag(torch.arange(1, N + 1).double())
    return A.to(dtype), q.to(dtype)


def s4d_real(N: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """S4D-Real (Mamba §3.6): the diagonal ``A_n = -(n+1)``, n = 0..N-1, as a (N,) vector.

    mamba_ssm stores it as ``A_log = log(arange(1, N+1))`` and uses ``A = -exp(A_log)``.
    """
    _check_n(N)
    return -torch.arange(1, N + 1, dtype=dtype)


def s4d_lin(N: int, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """S4D-Lin (Gu et al. 2022): the complex diagonal ``A_n = -1/2 + i pi n`` as a (N,) vector."""
    _check_n(N)
    if dtype not in _COMPLEX:
        raise TypeError(f"dtype must be complex64 or complex128, got {dtype}")
    n = torch.arange(N, dtype=torch.float64)
    return torch.complex(torch.full_like(n, -0.5), math.pi * n).to(dtype)


# ----------------------------------------------------------------------------------------------- responses


def impulse_response(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The impulse response ``y(t) = C exp(tA) B`` at the times ``t`` (L,), returned as (L,).

    Diagonal A: sum_n C_n exp(t a_n) B_n. Full A: one matrix exponential per time.
    Complex when any of A, B, C is complex (take ``.real`` for a system that is real in disguise).
    """
    check_ssm(A, B, C)
    _check_times("t", t, increasing=False)
    dtype = _dtype(A, B, C, t)
    A, B, C, t = (x.to(dtype) for x in (A, B, C, t))
    if A.dim() == 1:
        return torch.exp(t[:, None] * A[None, :]) @ (C * B)  # (L, N) @ (N,) -> (L,)
    eAt = expm(t[:, None, None] * A)  # (L, N, N)
    return eAt @ B @ C  # (L, N) @ (N,) -> (L,)


def step_response(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The response to a unit step from rest, ``y(t) = C A^{-1} (exp(tA) - I) B``, (L,).

    It is the integral of the impulse response from 0 to t. A must be invertible (a diagonal A may hold
    zeros: that state integrates the input, and its term is C_n B_n t).
    """
    check_ssm(A, B, C)
    _check_times("t", t, increasing=False)
    dtype = _dtype(A, B, C, t)
    A, B, C, t = (x.to(dtype) for x in (A, B, C, t))
    if A.dim() == 1:
        ta = t[:, None] * A[None, :]  # (L, N)
        safe = torch.where(A == 0, torch.ones_like(A), A)
        phi = torch.where(A == 0, t[:, None].expand_as(ta).to(dtype), torch.expm1(ta) / safe)  # (L, N)
        return phi @ (C * B)
    eye = torch.eye(A.shape[0], dtype=dtype, device=A.device)
    M = expm(t[:, None, None] * A) - eye  # (L, N, N)
    try:
        CAinv = torch.linalg.solve(A.T, C)  # (N,): the row C A^{-1}
    except RuntimeError as e:  # torch.linalg.LinAlgError
        raise ValueError("A must be invertible for step_response (it is singular)") from e
    return (M @ B) @ CAinv  # A^{-1} commutes with exp(tA) - I


def _zoh_steps(A: torch.Tensor, B: torch.Tensor, dts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``minimamba.discretize.zoh`` for M step sizes at once: dts (M,) -> A_bar (M, N) or (M, N, N), B_bar (M, N)."""
    if A.dim() == 1:
        dA = dts[:, None] * A  # (M, N)
        safe = torch.where(A == 0, torch.ones_like(A), A)
        phi = torch.where(A == 0, dts[:, None].to(A.dtype).expand_as(dA), torch.expm1(dA) / safe)  # (M, N)
        return torch.exp(dA), phi * B
    A_bar = expm(dts[:, None, None] * A)  # (M, N, N)
    rhs = (A_bar - torch.eye(A.shape[0], dtype=A.dtype, device=A.device)) @ B  # (M, N)
    try:
        return A_bar, torch.linalg.solve(A, rhs.T).T  # A^{-1} applied to every row: (M, N)
    except RuntimeError as e:  # torch.linalg.LinAlgError
        raise ValueError("A must be invertible to simulate a full (N, N) system (it is singular)") from e


def simulate(
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D,
    u: torch.Tensor,
    t: torch.Tensor,
    h0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulate h' = A h + B u, y = C h + D u on the grid ``t`` (L,); return ``y (L,)`` and ``h (L, N)``.

    The input is held constant between samples: u(s) = u[k] for s in [t[k], t[k+1]). For such input the
    result is exact (up to rounding) whatever the step, because each step is the zero-order-hold update
    h[k+1] = exp(dt_k A) h[k] + (dt_k A)^{-1} (exp(dt_k A) - I) dt_k B u[k] of ``minimamba.discretize.zoh``.
    For a smooth input it is accurate to first order in the step. h[0] = h0 (zeros by default) is the
    state at t[0], and y[k] = C h[k] + D u[k]. The grid may be non-uniform.
    """
    from minimamba.discretize import zoh  # noqa: PLC0415  (discretize imports this module)

    N = check_ssm(A, B, C)
    _check_times("t", t)
    _check_vec("u", u, t.shape[0], allow_complex=False)
    if isinstance(D, torch.Tensor):
        if D.dim() != 0:
            raise ValueError(f"D must be a scalar (a number or a 0-d tensor), got shape {tuple(D.shape)}")
    elif isinstance(D, bool) or not isinstance(D, numbers.Real):
        raise TypeError(f"D must be a number or a 0-d tensor, got {type(D).__name__}")
    dtype = _dtype(A, B, C, u, t)
    if h0 is not None:
        _check_vec("h0", h0, N)
        dtype = torch.promote_types(dtype, h0.dtype)
    dts = (t[1:] - t[:-1]).to(_real_of(dtype))  # (L-1,) step sizes
    A, B, C, u = (x.to(dtype) for x in (A, B, C, u))
    L = t.shape[0]
    h = torch.zeros(L, N, dtype=dtype, device=A.device)
    if h0 is not None:
        h[0] = h0.to(dtype)
    if L > 1 and torch.allclose(dts, dts[0].expand_as(dts), rtol=1e-10, atol=0):
        A_bar, B_bar = zoh(A, B, dts[0])  # a uniform grid: discretize once
        A_bars = B_bars = None
    elif L > 1:
        A_bars, B_bars = _zoh_steps(A, B, dts)  # every step size at once: (L-1, N[, N]), (L-1, N)
    for k in range(L - 1):
        if A_bars is not None:
            A_bar, B_bar = A_bars[k], B_bars[k]
        Ah = A_bar * h[k] if A.dim() == 1 else A_bar @ h[k]
        h[k + 1] = Ah + B_bar * u[k]
    y = h @ C + torch.as_tensor(D, dtype=dtype, device=A.device) * u  # (L, N) @ (N,) -> (L,)
    return y, h


# ----------------------------------------------------------------------------------------------- HiPPO


def legs_memory(u: torch.Tensor, t: torch.Tensor, N: int) -> torch.Tensor:
    """Run HiPPO-LegS over input samples ``u`` (L,) at times ``t`` (L,), 0 < t[0] < t[1] < ...; (L, N).

    Row k holds c(t[k]): the coefficients of the input history u(s), s in [0, t[k]], in the orthonormal
    basis g_n(s) = sqrt(2n+1) P_n(2s/t[k] - 1) under the uniform measure ds/t[k]:
    c_n(t) = (1/t) * integral_0^t u(s) g_n(s) ds (``legendre_reconstruct`` inverts this).

    The LegS ODE c' = (1/t)(A c + B u) is time-varying, but in log-time tau = ln t it reads
    dc/dtau = A c + B u(e^tau): an ordinary LTI SSM, which ``simulate`` integrates exactly for input held
    constant between samples. We hold the mean of the two neighbouring samples, (u[k] + u[k+1]) / 2, over
    [t[k], t[k+1]), which makes the error second order in the log-time step. Before t[0] the input is taken
    to be the constant u[0], so c(t[0]) = u[0] e_0. Use a grid uniform in log-time (``torch.logspace``).
    """
    _check_n(N)
    _check_times("t", t)
    _check_vec("u", u, t.shape[0], allow_complex=False)
    if t[0] <= 0:
        raise ValueError(f"t must start after 0 (log-time needs t > 0), got t[0] = {t[0].item():g}")
    dtype = _dtype(u, t)
    A, B = hippo_legs(N, dtype)
    h0 = torch.zeros(N, dtype=dtype)
    h0[0] = u[0]
    C = torch.zeros(N, dtype=dtype)
    u = u.to(dtype)
    u_held = torch.cat([(u[:-1] + u[1:]) / 2, u[-1:]])  # (L,) the value held on [t[k], t[k+1])
    A, B, C, h0 = (x.to(u.device) for x in (A, B, C, h0))
    _, c = simulate(A, B, C, 0.0, u_held, torch.log(t.to(dtype)), h0)
    return c


def legendre_reconstruct(h: torch.Tensor, t_end, t_eval: torch.Tensor) -> torch.Tensor:
    """Rebuild the input history from a HiPPO-LegS state: sum_n h_n sqrt(2n+1) P_n(2 s / t_end - 1).

    h: (..., N) LegS coefficients at time ``t_end`` > 0; t_eval: (M,) times s in [0, t_end].
    Returns (..., M). P_n by the three-term recurrence (n+1) P_{n+1}(x) = (2n+1) x P_n(x) - n P_{n-1}(x).
    """
    if not isinstance(h, torch.Tensor):
        raise TypeError(f"h must be a torch.Tensor, got {type(h).__name__}")
    if h.dtype not in _REAL or h.dim() < 1 or h.shape[-1] < 1:
        raise ValueError(
            f"h must be a real float tensor of shape (..., N), N >= 1, got {h.dtype} {tuple(h.shape)}"
        )
    t_end = float(t_end)
    if not (t_end > 0 and math.isfinite(t_end)):
        raise ValueError(f"t_end must be a positive finite time, got {t_end}")
    _check_times("t_eval", t_eval, increasing=False)
    if (t_eval < 0).any() or (t_eval > t_end * (1 + 1e-12)).any():
        raise ValueError(
            f"t_eval must lie in [0, t_end] = [0, {t_end:g}], got values in "
            f"[{t_eval.min().item():g}, {t_eval.max().item():g}]"
        )
    N = h.shape[-1]
    x = 2 * t_eval.to(h.dtype) / t_end - 1  # (M,) in [-1, 1]
    P_prev, P = torch.ones_like(x), x
    basis = [P_prev]  # P_n(x) for n = 0..N-1, each (M,)
    for n in range(1, N):
        basis.append(P)
        P_prev, P = P, ((2 * n + 1) * x * P - n * P_prev) / (n + 1)
    G = torch.stack(basis) * torch.sqrt(2 * torch.arange(N, dtype=h.dtype) + 1)[:, None]  # (N, M)
    return h @ G  # (..., N) @ (N, M) -> (..., M)
