"""minimamba.lti against float64 loops written here: the kernel K_k = C A_bar^k B_bar, the recurrence (Eq. 2)
and the causal convolution (Eq. 3), on random stable systems, full and diagonal, real and complex."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from minimamba.lti import (
    conv_matrix,
    kernel_effective_length,
    lti,
    lti_convolution,
    lti_recurrent,
    ssm_kernel,
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
