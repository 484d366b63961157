"""minimamba.lti against float64 loops written here: the kernel K_k = C A_bar^k B_bar, the recurrence (Eq. 2)
and the causal convolution (Eq. 3), on random stable systems, full and diagonal, real and complex."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from minimamba.lti import (
    channel_convolution,
    conv_matrix,
    kernel_effective_length,
    lti,
    lti_convolution,
    lti_recurrent,
    ssm_kernel,
    ssm_kernels,
)
from minimamba.testing import check_close as _check_close


def check_close(name, ref, out, rtol=1e-5, atol=1e-8):
    """check_close on real and imaginary parts alike (it compares in float64, which drops an imaginary part)."""
    assert ref.is_complex() == out.is_complex(), (
        f"{name}: complex {out.is_complex()} != reference {ref.is_complex()}"
    )
    if out.is_complex():
        ref, out = torch.view_as_real(ref.resolve_conj()), torch.view_as_real(out.resolve_conj())
    _check_close(name, ref, out, rtol, atol)


TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-9, atol=1e-11)}


def random_system(N: int, kind: str, dtype: torch.dtype, seed: int = 0):
    """A random stable discrete system: ‖A_bar‖₂ = 0.9 (full), |A_bar_n| < 0.95 (diagonal)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "full":
        M = torch.randn(N, N, generator=g, dtype=torch.float64)
        A_bar = 0.9 * M / torch.linalg.matrix_norm(M, ord=2)
    elif kind == "diag":
        A_bar = torch.rand(N, generator=g, dtype=torch.float64) * 1.9 - 0.95
    else:  # complex diagonal
        r = 0.95 * torch.rand(N, generator=g, dtype=torch.float64)
        A_bar = torch.polar(r, 2 * math.pi * torch.rand(N, generator=g, dtype=torch.float64))
    B_bar = torch.randn(N, generator=g, dtype=torch.float64)
    C = torch.randn(N, generator=g, dtype=torch.float64)
    if kind == "complex":
        B_bar, C = (
            B_bar.to(torch.complex128),
            torch.complex(C, torch.randn(N, generator=g, dtype=torch.float64)),
        )
        cdt = torch.complex64 if dtype == torch.float32 else torch.complex128
        return A_bar.to(cdt), B_bar.to(cdt), C.to(cdt)
    return A_bar.to(dtype), B_bar.to(dtype), C.to(dtype)


def as_matrix(A_bar: np.ndarray) -> np.ndarray:
    return np.diag(A_bar) if A_bar.ndim == 1 else A_bar


def kernel_loop(A_bar, B_bar, C, L: int) -> np.ndarray:
    """K_k = C A^k B by repeated multiplication, in float64 / complex128 numpy."""
    A = as_matrix(A_bar.numpy().astype(np.complex128))
    v = B_bar.numpy().astype(np.complex128)
    c = C.numpy().astype(np.complex128)
    K = np.zeros(L, dtype=np.complex128)
    for k in range(L):
        K[k] = c @ v
        v = A @ v
    return K


def recurrence_loop(A_bar, B_bar, C, u, D=0.0, h0=None) -> np.ndarray:
    """h_k = A h_{k-1} + B u_k, y_k = C h_k + D u_k, for u of shape (batch, L), in complex128 numpy."""
    A = as_matrix(A_bar.numpy().astype(np.complex128))
    b, c = B_bar.numpy().astype(np.complex128), C.numpy().astype(np.complex128)
    u = u.numpy().astype(np.complex128)
    batch, L = u.shape
    y = np.zeros((batch, L), dtype=np.complex128)
    for i in range(batch):
        h = np.zeros(len(b), dtype=np.complex128) if h0 is None else h0.numpy().astype(np.complex128)
        for k in range(L):
            h = A @ h + b * u[i, k]
            y[i, k] = c @ h + D * u[i, k]
    return y


def as_ref(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(x)
    return t if dtype.is_complex else t.real.contiguous()


# --------------------------------------------------------------------------------------------------------
# The kernel


@pytest.mark.parametrize("kind", ["full", "diag", "complex"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("L", [1, 7, 300])
@pytest.mark.parametrize("N", [1, 5])
def test_kernel_matches_powers_loop(kind, dtype, L, N):
    A_bar, B_bar, C = random_system(N, kind, dtype)
    K = ssm_kernel(A_bar, B_bar, C, L)
    assert K.shape == (L,) and K.dtype == A_bar.dtype
    check_close("K", as_ref(kernel_loop(A_bar, B_bar, C, L), K.dtype), K, **TOL[dtype])


def test_kernel_long_and_marginal():
    """L = 4097 (odd, past a power of two) and a marginally stable |A_bar| = 1 diagonal: no decay to hide errors."""
    A_bar = torch.tensor([1.0, -1.0, 0.999, 0.5], dtype=torch.float64)
    B_bar, C = torch.tensor([1.0, 2.0, -1.0, 3.0], dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    K = ssm_kernel(A_bar, B_bar, C, 4097)
    check_close("K diag", as_ref(kernel_loop(A_bar, B_bar, C, 4097), K.dtype), K, rtol=1e-9, atol=1e-9)
    # the same system as a full (rotated) matrix: similarity-transform A, B, C by a random orthogonal Q
    Q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    K_full = ssm_kernel(Q @ torch.diag(A_bar) @ Q.T, Q @ B_bar, Q @ C, 4097)
    check_close("K full (rotated)", K, K_full, rtol=1e-8, atol=1e-8)


def test_kernel_zero_power_is_CB():
    A_bar = torch.zeros(3, dtype=torch.float64)  # 0^0 = 1: K_0 = C B, the rest 0
    B_bar, C = (
        torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64),
        torch.tensor([4.0, 5.0, 6.0], dtype=torch.float64),
    )
    K = ssm_kernel(A_bar, B_bar, C, 4)
    check_close("K of A_bar = 0", torch.tensor([32.0, 0, 0, 0], dtype=torch.float64), K)


# --------------------------------------------------------------------------------------------------------
# Recurrence and convolution


@pytest.mark.parametrize("kind", ["full", "diag", "complex"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("L", [1, 7, 64])
def test_recurrent_matches_loop(kind, dtype, L):
    A_bar, B_bar, C = random_system(4, kind, dtype, seed=1)
    u = torch.randn(3, L, dtype=dtype)
    D = 0.7
    h0 = torch.randn(4, dtype=torch.float64).to(A_bar.dtype)
    y = lti_recurrent(A_bar, B_bar, C, u, D=D, h0=h0)
    assert y.shape == (3, L)
    check_close("recurrent", as_ref(recurrence_loop(A_bar, B_bar, C, u, D, h0), y.dtype), y, **TOL[dtype])


@pytest.mark.parametrize("kind", ["full", "diag", "complex"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("L", [1, 7, 4097])
def test_recurrent_equals_convolution(kind, dtype, L):
    """Eq. 2 and Eq. 3 agree: the recurrence, the direct sum and the FFT convolution, batched u (2, 3, L)."""
    N = 1 if L == 1 else 6
    A_bar, B_bar, C = random_system(N, kind, dtype, seed=2)
    u = torch.randn(2, 3, L, dtype=dtype)
    D = -0.3
    y_rec = lti_recurrent(A_bar, B_bar, C, u, D=D)
    K = ssm_kernel(A_bar, B_bar, C, L)
    y_direct = lti_convolution(K, u, D=D, fft=False)
    y_fft = lti_convolution(K, u, D=D, fft=True)
    assert y_rec.shape == y_direct.shape == y_fft.shape == (2, 3, L)
    assert y_rec.dtype == y_direct.dtype == y_fft.dtype == K.dtype
    tol = dict(rtol=1e-4, atol=3e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-10)
    check_close("direct vs recurrent", y_rec, y_direct, **tol)
    check_close("fft vs recurrent", y_rec, y_fft, **tol)


@pytest.mark.parametrize("L", [1, 7, 100])
def test_convolution_matches_sum_loop(L):
    """y_k = sum_{j<=k} K_j u_{k-j} + D u_k written as a double loop; kernels shorter and longer than u."""
    u = torch.randn(2, L, dtype=torch.float64)
    for LK in (1, L, L + 5, max(1, L // 2)):
        K = torch.randn(LK, dtype=torch.float64)
        ref = np.zeros((2, L))
        for b in range(2):
            for k in range(L):
                ref[b, k] = (
                    sum(K[j].item() * u[b, k - j].item() for j in range(min(k + 1, LK))) + 2.0 * u[b, k]
                )
        for fft in (False, True):
            check_close(
                f"conv LK={LK} fft={fft}", torch.from_numpy(ref), lti_convolution(K, u, D=2.0, fft=fft)
            )


@pytest.mark.parametrize("fft", [False, True])
def test_convolution_is_causal(fft):
    """Changing u_t does not change y before t (and does change y from t on)."""
    L, t = 50, 20
    K = ssm_kernel(*random_system(4, "diag", torch.float64, seed=3), L)
    u = torch.randn(L, dtype=torch.float64)
    u2 = u.clone()
    u2[t] += 1.0
    y, y2 = lti_convolution(K, u, fft=fft), lti_convolution(K, u2, fft=fft)
    assert torch.equal(y[:t], y2[:t]) if not fft else torch.allclose(y[:t], y2[:t], rtol=0, atol=1e-12)
    check_close("response to the bump = K", K[: L - t], (y2 - y)[t:], rtol=1e-9, atol=1e-12)


def test_recurrent_is_causal_and_uses_h0():
    A_bar, B_bar, C = random_system(3, "full", torch.float64, seed=4)
    u = torch.randn(30, dtype=torch.float64)
    u2 = u.clone()
    u2[10] = 5.0
    y, y2 = lti_recurrent(A_bar, B_bar, C, u), lti_recurrent(A_bar, B_bar, C, u2)
    assert torch.equal(y[:10], y2[:10]) and not torch.allclose(y[10:], y2[10:])
    # an initial state adds its free response C A^{k+1} h0
    h0 = torch.randn(3, dtype=torch.float64)
    free = torch.stack([C @ torch.linalg.matrix_power(A_bar, k + 1) @ h0 for k in range(30)])
    check_close(
        "h0 free response", y + free, lti_recurrent(A_bar, B_bar, C, u, h0=h0), rtol=1e-10, atol=1e-12
    )


def test_recurrent_h0_batched():
    A_bar, B_bar, C = random_system(2, "diag", torch.float64, seed=5)
    u = torch.randn(3, 9, dtype=torch.float64)
    h0 = torch.randn(3, 2, dtype=torch.float64)
    y = lti_recurrent(A_bar, B_bar, C, u, h0=h0)
    for i in range(3):
        ref = as_ref(recurrence_loop(A_bar, B_bar, C, u[i : i + 1], 0.0, h0[i]), torch.float64)[0]
        check_close(f"row {i}", ref, y[i], rtol=1e-10, atol=1e-12)


def test_D_as_tensor():
    K = torch.randn(5, dtype=torch.float64)
    u = torch.randn(5, dtype=torch.float64)
    check_close("D tensor", lti_convolution(K, u, D=1.5), lti_convolution(K, u, D=torch.tensor(1.5)))


def test_conv_matrix_is_the_convolution():
    K = torch.randn(6, dtype=torch.float64)
    u = torch.randn(6, dtype=torch.float64)
    T = conv_matrix(K)
    ref = np.array([[K[k - j].item() if k >= j else 0.0 for j in range(6)] for k in range(6)])
    check_close("Toeplitz", torch.from_numpy(ref), T)
    check_close("T_K u", lti_convolution(K, u, fft=False), T @ u, rtol=1e-12)
    check_close("T_u K (commutes)", lti_convolution(K, u, fft=False), conv_matrix(u) @ K, rtol=1e-12)
    assert conv_matrix(K, 3).shape == (3, 3) and conv_matrix(K, 8)[7, 0] == 0


@pytest.mark.parametrize("r", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("mass", [0.5, 0.95, 0.999])
def test_effective_length_geometric(r, mass):
    """K_k = r^k: sum_{j<k} r^j = (1 - r^k)/(1 - r), so k* = ceil(log(1 - mass (1 - r^L)) / log r)."""
    L = 400
    K = r ** torch.arange(L, dtype=torch.float64)
    want = math.ceil(math.log(1 - mass * (1 - r**L)) / math.log(r))
    assert kernel_effective_length(K, mass) == want


# --------------------------------------------------------------------------------------------------------
# lti(): discretize, then any mode


@pytest.mark.parametrize("mode", ["recurrent", "direct", "fft"])
def test_lti_zoh_diagonal(mode):
    """ZOH written inline (Mamba Eq. 4): A_bar = exp(ΔA), B_bar = (ΔA)^{-1}(exp(ΔA) - 1) ΔB, elementwise."""
    pytest.importorskip("minimamba.discretize")
    A = -torch.arange(1, 5, dtype=torch.float64)
    B, C = torch.ones(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    delta = 0.1
    A_bar = torch.exp(delta * A)
    B_bar = (A_bar - 1) / A * B
    u = torch.randn(2, 33, dtype=torch.float64)
    ref = as_ref(recurrence_loop(A_bar, B_bar, C, u, 0.5), torch.float64)
    check_close(f"lti zoh {mode}", ref, lti(A, B, C, u, delta, D=0.5, mode=mode), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("method", ["euler", "bilinear", "zoh", "mamba"])
@pytest.mark.parametrize("complex_A", [False, True])
def test_lti_every_method_diagonal(method, complex_A):
    """Each rule written inline for a diagonal A (real S4D-Real or complex S4D-Lin), then the loop."""
    pytest.importorskip("minimamba.discretize")
    n = torch.arange(4, dtype=torch.float64)
    A = torch.complex(-0.5 * torch.ones(4, dtype=torch.float64), math.pi * n) if complex_A else -(n + 1)
    B = torch.ones(4, dtype=A.dtype)
    C = torch.randn(4, dtype=torch.float64).to(A.dtype)
    d = 0.2
    A_bar, B_bar = {
        "euler": (1 + d * A, d * B),
        "bilinear": ((1 + d / 2 * A) / (1 - d / 2 * A), d * B / (1 - d / 2 * A)),
        "zoh": (torch.exp(d * A), (torch.exp(d * A) - 1) / A * B),
        "mamba": (torch.exp(d * A), d * B),
    }[method]
    u = torch.randn(2, 40, dtype=torch.float64)
    ref = as_ref(recurrence_loop(A_bar, B_bar, C, u, 0.1), A.dtype)
    # Euler is unstable for S4D-Lin at this Δ (|1 + ΔA_n| up to 2.1): y grows to ~1e12, so the absolute
    # tolerance scales with the largest output
    atol = 1e-11 * max(1.0, ref.abs().max().item())
    for mode in ("recurrent", "direct", "fft"):
        y = lti(A, B, C, u, d, D=0.1, method=method, mode=mode)
        check_close(f"lti {method} {mode}", ref, y, rtol=1e-9, atol=atol)


def test_lti_full_matrix_bilinear():
    pytest.importorskip("minimamba.discretize")
    A = -torch.eye(3, dtype=torch.float64) + 0.3 * torch.randn(3, 3, dtype=torch.float64)
    B, C = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    delta = 0.05
    I = torch.eye(3, dtype=torch.float64)
    inv = torch.linalg.inv(I - delta / 2 * A)
    A_bar, B_bar = inv @ (I + delta / 2 * A), inv @ (delta * B)
    u = torch.randn(20, dtype=torch.float64)
    ref = as_ref(recurrence_loop(A_bar, B_bar, C, u[None]), torch.float64)[0]
    check_close("lti bilinear", ref, lti(A, B, C, u, delta, method="bilinear"), rtol=1e-9, atol=1e-11)


# --------------------------------------------------------------------------------------------------------
# Many channels at once: ssm_kernels, channel_convolution


def random_channels(d: int, N: int, dtype: torch.dtype, seed: int = 0):
    """Δ over six decades (1e-4 .. 1e2, log-uniform), A < 0, B and C random: (d,), (d, N) x 3."""
    g = torch.Generator().manual_seed(seed)
    delta = torch.exp(
        torch.empty(d, dtype=torch.float64).uniform_(math.log(1e-4), math.log(1e2), generator=g)
    )
    A = -torch.exp(torch.randn(d, N, generator=g, dtype=torch.float64))
    B, C = (
        torch.randn(d, N, generator=g, dtype=torch.float64),
        torch.randn(d, N, generator=g, dtype=torch.float64),
    )
    return tuple(x.to(dtype) for x in (delta, A, B, C))


def channel_kernels_loop(delta, A, B, C, L: int) -> np.ndarray:
    """K[c, k] = C_c A_bar_c^k B_bar_c with A_bar = exp(Δ A), B_bar = Δ B, by repeated multiplication (numpy)."""
    delta, A, B, C = (x.numpy().astype(np.float64) for x in (delta, A, B, C))
    K = np.zeros((len(delta), L))
    for c in range(len(delta)):
        A_bar, v = np.exp(delta[c] * A[c]), delta[c] * B[c]
        for k in range(L):
            K[c, k] = C[c] @ v
            v = A_bar * v
    return K


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("L", [1, 7, 300])
@pytest.mark.parametrize("N", [1, 5])
def test_ssm_kernels_match_powers_loop(dtype, L, N):
    delta, A, B, C = random_channels(6, N, dtype)
    K = ssm_kernels(delta, A, B, C, L)
    assert K.shape == (6, L) and K.dtype == dtype
    check_close("K per channel", torch.from_numpy(channel_kernels_loop(delta, A, B, C, L)), K, **TOL[dtype])


def test_ssm_kernels_row_is_the_kernel_of_the_discretized_channel():
    """Row c is ssm_kernel of channel c discretized as the scan does (A_bar = exp(Δ A), B_bar = Δ B)."""
    from minimamba.discretize import mamba_discretize  # noqa: PLC0415

    delta, A, B, C = random_channels(4, 3, torch.float64, seed=1)
    K = ssm_kernels(delta, A, B, C, 50)
    for c in range(4):
        A_bar, B_bar = mamba_discretize(torch.diag(A[c]), B[c], delta[c].item())
        check_close(f"channel {c}", ssm_kernel(A_bar, B_bar, C[c], 50), K[c], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("L", [1, 7, 100])
def test_channel_convolution_matches_sum_loop(L):
    """y[b, c, k] = sum_{j<=k} K[c, j] u[b, c, k-j] as a loop; kernels shorter and longer than u."""
    u = torch.randn(2, 3, L, dtype=torch.float64)
    for LK in (1, L, L + 5, max(1, L // 2)):
        K = torch.randn(3, LK, dtype=torch.float64)
        ref = np.zeros((2, 3, L))
        for b in range(2):
            for c in range(3):
                for k in range(L):
                    ref[b, c, k] = sum(K[c, j].item() * u[b, c, k - j].item() for j in range(min(k + 1, LK)))
        y = channel_convolution(K, u)
        assert y.shape == u.shape and y.dtype == torch.float64
        check_close(f"channel conv LK={LK}", torch.from_numpy(ref), y, rtol=1e-9, atol=1e-12)


def test_channel_convolution_equals_lti_convolution_per_channel():
    """fp32 input stays fp32; one batch dimension more or less broadcasts; each channel is lti_convolution."""
    K, u = torch.randn(4, 33), torch.randn(2, 5, 4, 33)
    y = channel_convolution(K, u)
    assert y.dtype == torch.float32 and y.shape == u.shape
    for c in range(4):
        check_close(f"channel {c}", lti_convolution(K[c], u[..., c, :]), y[..., c, :], rtol=1e-5, atol=1e-5)
    check_close("no batch dims", y[0, 0], channel_convolution(K, u[0, 0]), rtol=0, atol=1e-6)


def test_channel_gradcheck():
    """ssm_kernels then channel_convolution, differentiated in Δ, A, B, C and u: against finite differences."""
    delta, A, B, C = random_channels(3, 2, torch.float64, seed=2)
    delta = delta.clamp(0.01, 1.0)  # finite differences of exp(k Δ A) want a moderate Δ
    u = torch.randn(2, 3, 9, dtype=torch.float64)
    inputs = tuple(x.clone().requires_grad_() for x in (delta, A, B, C, u))
    fn = lambda d, a, b, c, x: channel_convolution(ssm_kernels(d, a, b, c, x.shape[-1]), x)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------------------
# Bad input


def _ok():
    return torch.full((3,), 0.5), torch.ones(3), torch.ones(3), torch.ones(2, 8)


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda A, B, C, u: ssm_kernel(A.numpy(), B, C, 4), TypeError, "A_bar must be a torch.Tensor"),
        (lambda A, B, C, u: ssm_kernel(torch.ones(3, 2), B, C, 4), ValueError, "A_bar must be square"),
        (lambda A, B, C, u: ssm_kernel(torch.ones(2, 2, 2), B, C, 4), ValueError, "A_bar must be of shape"),
        (lambda A, B, C, u: ssm_kernel(A.long(), B, C, 4), TypeError, "A_bar must be float32"),
        (
            lambda A, B, C, u: ssm_kernel(A, torch.ones(4), C, 4),
            ValueError,
            "B_bar must have shape (N,) = (3,)",
        ),
        (
            lambda A, B, C, u: ssm_kernel(A, B, torch.ones(3, 1), 4),
            ValueError,
            "C must be of shape (N,) = (3,)",
        ),
        (lambda A, B, C, u: ssm_kernel(A, B, C, 0), ValueError, "L must be >= 1, got 0"),
        (lambda A, B, C, u: ssm_kernel(A, B, C, 4.0), TypeError, "L must be an int, got float"),
        (lambda A, B, C, u: ssm_kernel(torch.ones(0), B[:0], C[:0], 4), ValueError, "at least one state"),
        (lambda A, B, C, u: lti_recurrent(A, B, C, u[..., :0]), ValueError, "u must have at least one step"),
        (lambda A, B, C, u: lti_recurrent(A, B, C, [1.0]), TypeError, "u must be a torch.Tensor"),
        (lambda A, B, C, u: lti_recurrent(A, B, C, u, D="x"), TypeError, "D must be a number"),
        (lambda A, B, C, u: lti_recurrent(A, B, C, u, D=torch.ones(2)), ValueError, "D must be a scalar"),
        (lambda A, B, C, u: lti_recurrent(A, B, C, u, h0=torch.ones(4)), ValueError, "h0 must have shape"),
        (lambda A, B, C, u: lti_recurrent(A, B, C, u, h0=torch.ones(5, 3)), ValueError, "do not broadcast"),
        (lambda A, B, C, u: lti_convolution(torch.ones(2, 2), u), ValueError, "K must be of shape (L,)"),
        (lambda A, B, C, u: lti_convolution(torch.ones(0), u), ValueError, "K must have at least one entry"),
        (lambda A, B, C, u: lti_convolution(B, u, fft="yes"), TypeError, "fft must be a bool"),
        (lambda A, B, C, u: lti_convolution(B, u.int()), TypeError, "u must be float32"),
        (lambda A, B, C, u: lti(A, B, C, u, 0.1, mode="scan"), ValueError, "mode must be one of"),
        (lambda A, B, C, u: kernel_effective_length(B, mass=0.0), ValueError, "mass must be in (0, 1]"),
        (lambda A, B, C, u: kernel_effective_length(B * 0), ValueError, "K must have a nonzero entry"),
        (lambda A, B, C, u: conv_matrix(B, L=0), ValueError, "L must be >= 1"),
        (lambda A, B, C, u: ssm_kernels(B.numpy(), -u, u, u, 4), TypeError, "delta must be a torch.Tensor"),
        (lambda A, B, C, u: ssm_kernels(u, -u, u, u, 4), ValueError, "delta must have shape (d,)"),
        (lambda A, B, C, u: ssm_kernels(B.double().half(), -u, u, u, 4), TypeError, "delta must be float32"),
        (lambda A, B, C, u: ssm_kernels(B[:2], -u[:, :0], u, u, 4), ValueError, "at least one state"),
        (lambda A, B, C, u: ssm_kernels(B, -u, u, u, 4), ValueError, "A must have shape (d, N) with d = 3"),
        (
            lambda A, B, C, u: ssm_kernels(B[:2], -u, u[:, :3], u, 4),
            ValueError,
            "B must have shape (d, N) = (2, 8)",
        ),
        (lambda A, B, C, u: ssm_kernels(B[:2], -u, u, u.int(), 4), TypeError, "C must be float32"),
        (lambda A, B, C, u: ssm_kernels(B[:2], -u, u, u, 0), ValueError, "L must be >= 1, got 0"),
        (lambda A, B, C, u: channel_convolution(B, u), ValueError, "K must have shape (d, L_K)"),
        (lambda A, B, C, u: channel_convolution(u[:, :0], u), ValueError, "K must have at least one tap"),
        (
            lambda A, B, C, u: channel_convolution(u, u[0]),
            ValueError,
            "u must have shape (..., d, L) with d = 2",
        ),
        (lambda A, B, C, u: channel_convolution(u, u.numpy()), TypeError, "u must be a torch.Tensor"),
        (lambda A, B, C, u: channel_convolution(u, u.bfloat16()), TypeError, "u must be float32 or float64"),
        (lambda A, B, C, u: channel_convolution(u, u[:, :0]), ValueError, "and L >= 1"),
    ],
)
def test_bad_input(call, exc, words):
    with pytest.raises(exc) as info:
        call(*_ok())
    assert words in str(info.value), str(info.value)


# --------------------------------------------------------------------------------------------------------
# Gradients


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_gradcheck_all_modes(kind):
    """Every mode is differentiable in A_bar, B_bar, C, u and D: autograd against float64 finite differences."""
    A_bar, B_bar, C = random_system(3, kind, torch.float64, seed=6)
    u = torch.randn(2, 9, dtype=torch.float64)
    D = torch.tensor(0.4, dtype=torch.float64)
    inputs = tuple(x.clone().requires_grad_() for x in (A_bar, B_bar, C, u, D))

    def rec(A, B, C, u, D):
        return lti_recurrent(A, B, C, u, D=D)

    def conv(fft):
        return lambda A, B, C, u, D: lti_convolution(ssm_kernel(A, B, C, u.shape[-1]), u, D=D, fft=fft)

    for name, fn in (("recurrent", rec), ("direct", conv(False)), ("fft", conv(True))):
        assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7), name


def test_gradients_agree_across_modes():
    """The recurrence and the FFT convolution give the same gradients (L = 257, float64)."""
    A_bar, B_bar, C = random_system(5, "diag", torch.float64, seed=7)
    u = torch.randn(3, 257, dtype=torch.float64)
    dy = torch.randn(3, 257, dtype=torch.float64)
    grads = {}
    for mode in ("recurrent", "fft"):
        xs = [x.clone().requires_grad_() for x in (A_bar, B_bar, C, u)]
        if mode == "recurrent":
            y = lti_recurrent(*xs)
        else:
            y = lti_convolution(ssm_kernel(*xs[:3], 257), xs[3])
        grads[mode] = torch.autograd.grad(y, xs, grad_outputs=dy)
    for name, g_rec, g_fft in zip(("dA_bar", "dB_bar", "dC", "du"), grads["recurrent"], grads["fft"]):
        check_close(name, g_rec, g_fft, rtol=1e-8, atol=1e-10)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["full", "diag", "complex"])
def test_cuda_matches_cpu(kind):
    """Every function on CUDA tensors (the blocked Toeplitz sum, the FFT, the doubling) against the CPU."""
    A_bar, B_bar, C = random_system(6, kind, torch.float64, seed=8)
    u = torch.randn(4, 3000, dtype=torch.float64)
    K_cpu = ssm_kernel(A_bar, B_bar, C, 3000)
    y_cpu = lti_recurrent(A_bar, B_bar, C, u, D=0.3)
    dev = [x.cuda() for x in (A_bar, B_bar, C, u)]
    K = ssm_kernel(*dev[:3], 3000)
    assert K.is_cuda
    check_close("K cuda", K_cpu, K.cpu(), rtol=1e-10, atol=1e-12)
    check_close("recurrent cuda", y_cpu, lti_recurrent(*dev, D=0.3).cpu(), rtol=1e-9, atol=1e-11)
    for fft in (False, True):
        check_close(
            f"conv fft={fft} cuda",
            y_cpu,
            lti_convolution(K, dev[3], D=0.3, fft=fft).cpu(),
            rtol=1e-9,
            atol=1e-11,
        )
    check_close("conv_matrix cuda", conv_matrix(K_cpu[:50]), conv_matrix(K[:50]).cpu())


@pytest.mark.gpu
def test_channels_cuda_matches_cpu():
    """ssm_kernels and channel_convolution (cuFFT) on CUDA tensors against the CPU, float64 and float32."""
    for dtype, tol in (
        (torch.float64, dict(rtol=1e-10, atol=1e-12)),
        (torch.float32, dict(rtol=1e-4, atol=1e-5)),
    ):
        delta, A, B, C = random_channels(8, 4, dtype, seed=9)
        u = torch.randn(3, 8, 1000, dtype=dtype)
        K_cpu = ssm_kernels(delta, A, B, C, 1000)
        K = ssm_kernels(*(x.cuda() for x in (delta, A, B, C)), 1000)
        check_close(f"kernels cuda {dtype}", K_cpu, K.cpu(), **tol)
        check_close(
            f"conv cuda {dtype}", channel_convolution(K_cpu, u), channel_convolution(K, u.cuda()).cpu(), **tol
        )
