"""minimamba.ssm against references written here: an RK4 loop, closed forms, numpy's Legendre module."""

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import legendre as npl

from minimamba import ssm
from minimamba.testing import check_close

f64 = torch.float64


def _oscillator(k=4.0, c=0.5, m=1.0):
    """Mass–spring–damper m x'' = -k x - c x' + u; state h = (x, x'), output y = x."""
    A = torch.tensor([[0.0, 1.0], [-k / m, -c / m]], dtype=f64)
    B = torch.tensor([0.0, 1.0 / m], dtype=f64)
    C = torch.tensor([1.0, 0.0], dtype=f64)
    return A, B, C


def _random_stable(N, seed=0):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(N, N, generator=g, dtype=f64)
    A = M - (torch.linalg.eigvals(M).real.max() + 0.5) * torch.eye(N, dtype=f64)  # shift the spectrum left
    return A, torch.randn(N, generator=g, dtype=f64), torch.randn(N, generator=g, dtype=f64)


def _rk4_impulse(A, B, C, T, steps):
    """y(t) = C h(t) with h' = A h, h(0) = B: an RK4 loop in the dtype of A (complex allowed)."""
    Am = torch.diag(A) if A.dim() == 1 else A
    h, dt, ys = B.to(Am.dtype).clone(), T / steps, []
    for _ in range(steps + 1):
        ys.append(C.to(Am.dtype) @ h)
        k1 = Am @ h
        k2 = Am @ (h + dt / 2 * k1)
        k3 = Am @ (h + dt / 2 * k2)
        k4 = Am @ (h + dt * k3)
        h = h + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return torch.stack(ys)


# ----------------------------------------------------------------------------------------------- matrices


@pytest.mark.parametrize("N", [1, 2, 7, 16])
def test_hippo_legs_matches_definition(N):
    A, B = ssm.hippo_legs(N)
    A_ref = np.zeros((N, N))
    for n in range(N):
        for k in range(N):
            if n > k:
                A_ref[n, k] = -math.sqrt(2 * n + 1) * math.sqrt(2 * k + 1)
            elif n == k:
                A_ref[n, k] = -(n + 1)
    B_ref = np.array([math.sqrt(2 * n + 1) for n in range(N)])
    check_close("hippo A", A_ref, A, rtol=1e-14, atol=0)
    check_close("hippo B", B_ref, B, rtol=1e-14, atol=0)
    assert A.dtype == f64 and A.shape == (N, N) and B.shape == (N,)
    assert (torch.linalg.eigvals(A).real < 0).all()


def test_s4d_matrices():
    N = 5
    check_close("s4d_real", [-(n + 1.0) for n in range(N)], ssm.s4d_real(N), rtol=0, atol=0)
    lin = ssm.s4d_lin(N)
    assert lin.dtype == torch.complex128
    check_close("s4d_lin re", [-0.5] * N, lin.real, rtol=0, atol=0)
    check_close("s4d_lin im", [math.pi * n for n in range(N)], lin.imag, rtol=1e-15, atol=0)
    assert ssm.s4d_real(3, torch.float32).dtype == torch.float32


# ----------------------------------------------------------------------------------------------- responses


@pytest.mark.parametrize("theta", [1e-4, 0.01, 0.02, 0.04, 0.3, 2.0])
@pytest.mark.parametrize("shape", [(), (1,), (3,)])
def test_expm_of_a_rotation(theta, shape):
    """exp([[0, -θ], [θ, 0]]) is the rotation by θ (torch's lone-matrix path is off near θ = 0.04)."""
    X = torch.tensor([[0.0, -theta], [theta, 0.0]], dtype=f64).expand(*shape, 2, 2)
    R = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=f64)
    check_close(f"expm θ={theta}", R.expand(*shape, 2, 2), ssm.expm(X), 0, 1e-15)


@pytest.mark.parametrize("kind", ["full", "diag_real", "diag_complex", "oscillator"])
def test_impulse_response_vs_rk4(kind):
    if kind == "full":
        A, B, C = _random_stable(5)
    elif kind == "oscillator":
        A, B, C = _oscillator()
    elif kind == "diag_real":
        A, B, C = -torch.rand(4, dtype=f64) * 3, torch.randn(4, dtype=f64), torch.randn(4, dtype=f64)
    else:
        A, B, C = ssm.s4d_lin(4), torch.randn(4, dtype=f64), torch.randn(4, dtype=f64)
    T, steps = 3.0, 6000  # RK4's global error ~ T |λ|^5 dt^4 / 120: 1e-11 for S4D-Lin's |λ| up to 3π
    t = torch.linspace(0, T, steps + 1, dtype=f64)
    ref, out = _rk4_impulse(A, B, C, T, steps), ssm.impulse_response(A, B, C, t)
    if out.is_complex():  # check_close compares real tensors: compare (re, im) pairs
        ref, out = torch.view_as_real(ref), torch.view_as_real(out)
    check_close(f"impulse {kind}", ref, out, 1e-9, 1e-10)


def test_full_and_diagonal_agree():
    a = torch.tensor([-0.3, -1.0, -2.5], dtype=f64)
    B, C = torch.randn(3, dtype=f64), torch.randn(3, dtype=f64)
    t = torch.linspace(0, 4, 41, dtype=f64)
    check_close(
        "impulse",
        ssm.impulse_response(torch.diag(a), B, C, t),
        ssm.impulse_response(a, B, C, t),
        1e-12,
        1e-14,
    )
    check_close(
        "step", ssm.step_response(torch.diag(a), B, C, t), ssm.step_response(a, B, C, t), 1e-12, 1e-14
    )


def test_diagonalized_oscillator_gives_the_same_output():
    A, B, C = _oscillator()
    lam, V = torch.linalg.eig(A)  # A = V diag(lam) V^{-1}
    Bd = torch.linalg.solve(V, B.to(V.dtype))
    Cd = C.to(V.dtype) @ V
    t = torch.linspace(0, 5, 51, dtype=f64)
    y = ssm.impulse_response(lam, Bd, Cd, t)
    check_close("diag oscillator", ssm.impulse_response(A, B, C, t), y.real, 1e-12, 1e-13)
    assert y.imag.abs().max() < 1e-12


@pytest.mark.parametrize("kind", ["full", "oscillator", "diag"])
def test_step_response_is_integral_of_impulse(kind):
    if kind == "full":
        A, B, C = _random_stable(4, seed=1)
    elif kind == "oscillator":
        A, B, C = _oscillator()
    else:
        A, B, C = (
            torch.tensor([-1.0, -0.2, 0.0], dtype=f64),
            torch.randn(3, dtype=f64),
            torch.randn(3, dtype=f64),
        )
    t = torch.linspace(0, 3, 6001, dtype=f64)
    g = ssm.impulse_response(A, B, C, t)
    dt = t[1] - t[0]
    pairs = dt / 3 * (g[:-2:2] + 4 * g[1:-1:2] + g[2::2])  # Simpson's rule on [t_2j, t_2j+2]
    integral = torch.cat([torch.zeros(1, dtype=f64), torch.cumsum(pairs, 0)])  # at t[0], t[2], t[4], ...
    check_close(f"step {kind}", integral[::250], ssm.step_response(A, B, C, t)[::500], 1e-9, 1e-11)


def test_step_response_scalar_closed_form():
    a, b = 2.0, 3.0
    t = torch.linspace(0, 2, 11, dtype=f64)
    y = ssm.step_response(
        torch.tensor([-a], dtype=f64), torch.tensor([b], dtype=f64), torch.ones(1, dtype=f64), t
    )
    check_close("step scalar", b / a * (1 - torch.exp(-a * t)), y, 1e-14, 1e-15)


# ----------------------------------------------------------------------------------------------- simulate


def test_simulate_scalar_decay_exact_on_a_coarse_grid():
    a, b, d = 1.5, 2.0, 0.25
    t = torch.linspace(0, 4, 9, dtype=f64)  # coarse: ZOH is exact for held input whatever the step
    u = torch.ones_like(t)
    y, h = ssm.simulate(
        torch.tensor([-a], dtype=f64), torch.tensor([b], dtype=f64), torch.ones(1, dtype=f64), d, u, t
    )
    check_close("decay h", b / a * (1 - torch.exp(-a * t)), h[:, 0], 1e-13, 1e-14)
    check_close("decay y", b / a * (1 - torch.exp(-a * t)) + d * u, y, 1e-13, 1e-14)


def test_simulate_piecewise_constant_input_nonuniform_grid():
    """u = 1 on [0, 1), -2 on [1, 2.5): closed form of h' = -a h + u, with jumps exactly on grid points."""
    a = 0.7
    t = torch.tensor([0.0, 0.3, 1.0, 1.1, 1.9, 2.5], dtype=f64)
    u = torch.tensor([1.0, 1.0, -2.0, -2.0, -2.0, 0.0], dtype=f64)

    def exact(s):
        h1 = (1 - math.exp(-a * min(s, 1.0))) / a
        if s <= 1.0:
            return h1
        return h1 * math.exp(-a * (s - 1)) - 2 * (1 - math.exp(-a * (s - 1))) / a

    _, h = ssm.simulate(
        torch.tensor([-a], dtype=f64), torch.ones(1, dtype=f64), torch.ones(1, dtype=f64), 0.0, u, t
    )
    check_close("piecewise", [exact(s) for s in t.tolist()], h[:, 0], 1e-13, 1e-14)


def test_simulate_mass_spring():
    k = 4.0
    w = math.sqrt(k)
    A, B, C = _oscillator(k=k, c=0.0)
    t = torch.linspace(0, 6, 61, dtype=f64)
    y, h = ssm.simulate(A, B, C, 0.0, torch.zeros_like(t), t, h0=torch.tensor([1.0, 0.0], dtype=f64))
    check_close("free oscillation x", torch.cos(w * t), y, 1e-12, 1e-12)
    check_close("free oscillation v", -w * torch.sin(w * t), h[:, 1], 1e-12, 1e-12)
    y, _ = ssm.simulate(A, B, C, 0.0, torch.ones_like(t), t)
    check_close("forced step", (1 - torch.cos(w * t)) / k, y, 1e-12, 1e-12)


def test_simulate_full_A_on_a_random_nonuniform_grid():
    k = 4.0
    A, B, C = _oscillator(k=k, c=0.0)
    t = torch.cat([torch.zeros(1, dtype=f64), torch.cumsum(torch.rand(80, dtype=f64) * 0.2 + 0.01, 0)])
    y, _ = ssm.simulate(A, B, C, 0.0, torch.ones_like(t), t)
    check_close("forced step, non-uniform grid", (1 - torch.cos(2 * t)) / k, y, 1e-11, 1e-12)


def test_simulate_keeps_float32_and_matches_step_response():
    A, B, C = _oscillator()
    t = torch.linspace(0, 3, 31, dtype=f64)
    y, h = ssm.simulate(A.float(), B.float(), C.float(), 0.0, torch.ones(31), t.float())
    assert y.dtype == torch.float32 and h.shape == (31, 2)
    check_close("float32 vs step response", ssm.step_response(A, B, C, t), y, 1e-4, 1e-5)


def test_simulate_single_sample():
    y, h = ssm.simulate(
        torch.tensor([-1.0]),
        torch.tensor([1.0]),
        torch.tensor([2.0]),
        0.5,
        torch.tensor([3.0]),
        torch.tensor([0.0]),
    )
    check_close("L=1", [1.5], y, 0, 0)
    assert h.shape == (1, 1)


# ----------------------------------------------------------------------------------------------- HiPPO


def _f(s):
    return np.sin(6 * s) * np.exp(-s) + 0.5 * np.cos(11 * s**2)


def test_legs_memory_equals_legendre_projection():
    """The LegS state at t is (1/t) ∫_0^t u(s) sqrt(2n+1) P_n(2s/t - 1) ds: check by Gauss–Legendre quadrature."""
    N, T = 12, 1.5
    t = torch.logspace(-5, math.log10(T), 6000, dtype=f64)  # error is second order in the log-time step
    c = ssm.legs_memory(torch.from_numpy(_f(t.numpy())), t, N)
    assert c.shape == (6000, N)
    x, w = npl.leggauss(100)
    for k in (3000, 5999):
        tk = t[k].item()
        ref = [
            np.sum(w / 2 * _f((x + 1) / 2 * tk) * math.sqrt(2 * n + 1) * npl.legval(x, np.eye(N)[n]))
            for n in range(N)
        ]
        check_close(f"coefficients at t={tk:.3g}", ref, c[k], 0, 1e-4)


def test_legendre_reconstruct_matches_numpy():
    h = torch.randn(2, 9, dtype=f64)
    s = torch.linspace(0, 2.0, 17, dtype=f64)
    x = (2 * s / 2.0 - 1).numpy()
    scale = np.sqrt(2 * np.arange(9) + 1)
    ref = np.stack([npl.legval(x, row * scale) for row in h.numpy()])
    check_close("reconstruct", ref, ssm.legendre_reconstruct(h, 2.0, s), 1e-12, 1e-12)


def test_hippo_reconstruction_error_shrinks_with_N():
    t = torch.logspace(-4, 0, 3000, dtype=f64)
    u = torch.from_numpy(_f(t.numpy()))
    s = torch.linspace(0, 1, 500, dtype=f64)
    errs = []
    for N in (2, 4, 8, 16):
        rec = ssm.legendre_reconstruct(ssm.legs_memory(u, t, N)[-1], 1.0, s)
        errs.append((rec - torch.from_numpy(_f(s.numpy()))).pow(2).mean().sqrt().item())
    print("RMS reconstruction error for N = 2, 4, 8, 16:", errs)
    assert all(e2 < e1 for e1, e2 in zip(errs, errs[1:]))
    assert errs[-1] < 1e-3 * errs[0] and errs[-1] < 1e-3


# ----------------------------------------------------------------------------------------------- bad input


def test_bad_input_names_the_argument():
    A, B, C = _oscillator()
    t = torch.linspace(0, 1, 5, dtype=f64)
    with pytest.raises(ValueError, match="N must be >= 1"):
        ssm.hippo_legs(0)
    with pytest.raises(TypeError, match="N must be an int"):
        ssm.s4d_real(2.0)
    with pytest.raises(TypeError, match="dtype must be complex"):
        ssm.s4d_lin(3, torch.float64)
    with pytest.raises(TypeError, match="A must be a torch.Tensor"):
        ssm.impulse_response(A.numpy(), B, C, t)
    with pytest.raises(ValueError, match=r"A must be square .* got shape \(2, 3\)"):
        ssm.impulse_response(torch.zeros(2, 3, dtype=f64), B, C, t)
    with pytest.raises(ValueError, match=r"B must have shape \(2,\)"):
        ssm.impulse_response(A, torch.zeros(3, dtype=f64), C, t)
    with pytest.raises(TypeError, match="C must be float32"):
        ssm.impulse_response(A, B, torch.zeros(2, dtype=torch.int64), t)
    with pytest.raises(ValueError, match="t must be strictly increasing"):
        ssm.simulate(A, B, C, 0.0, torch.zeros(5, dtype=f64), t.flip(0))
    with pytest.raises(ValueError, match=r"u must have shape \(5,\)"):
        ssm.simulate(A, B, C, 0.0, torch.zeros(4, dtype=f64), t)
    with pytest.raises(ValueError, match="D must be a scalar"):
        ssm.simulate(A, B, C, torch.zeros(2), torch.zeros(5, dtype=f64), t)
    with pytest.raises(ValueError, match="A must be invertible"):
        ssm.step_response(torch.zeros(2, 2, dtype=f64), B, C, t)
    with pytest.raises(ValueError, match="t must start after 0"):
        ssm.legs_memory(torch.zeros(5, dtype=f64), t, 4)
    with pytest.raises(ValueError, match=r"t_eval must lie in \[0, t_end\]"):
        ssm.legendre_reconstruct(torch.zeros(4, dtype=f64), 0.5, t)
    with pytest.raises(ValueError, match="t_end must be a positive"):
        ssm.legendre_reconstruct(torch.zeros(4, dtype=f64), 0.0, t)
