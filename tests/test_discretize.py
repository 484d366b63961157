"""minimamba.discretize against the exact continuous solution (augmented matrix exponential) and closed forms."""

import math

import numpy as np
import pytest
import torch

from minimamba import discretize as dz
from minimamba.ssm import s4d_lin
from minimamba.testing import check_close

f64 = torch.float64


def _oscillator():
    A = torch.tensor([[0.0, 1.0], [-4.0, -0.5]], dtype=f64)
    return A, torch.tensor([0.0, 1.0], dtype=f64), torch.tensor([1.0, 0.0], dtype=f64)


def _random_stable(N, seed=0):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(N, N, generator=g, dtype=f64)
    return M - (torch.linalg.eigvals(M).real.max() + 0.3) * torch.eye(N, dtype=f64), torch.randn(
        N, generator=g, dtype=f64
    )


def _exact_held(A, B, u, delta):
    """Exact samples h(kΔ) of h' = A h + B u(t) with u = u[k] on [kΔ, (k+1)Δ), h(0) = 0.

    Over one step, (h, u)' = M (h, u) with M = [[A, B], [0, 0]], so (h, u)((k+1)Δ) = expm(ΔM) (h, u)(kΔ).
    """
    Am = torch.diag(A) if A.dim() == 1 else A
    N = Am.shape[0]
    M = torch.zeros(N + 1, N + 1, dtype=Am.dtype)
    M[:N, :N], M[:N, N] = Am, B.to(Am.dtype)
    E = torch.linalg.matrix_exp(delta * M)
    z, hs = torch.zeros(N + 1, dtype=Am.dtype), []
    for uk in u.tolist():
        z[N] = uk
        z = E @ z
        hs.append(z[:N].clone())
    return torch.stack(hs)  # (L, N): h((k+1)Δ)


def _recurrence(A_bar, B_bar, u):
    """h_{k+1} = A_bar h_k + B_bar u_k, h_0 = 0; returns h_1 .. h_L."""
    h, hs = torch.zeros_like(B_bar), []
    for uk in u.tolist():
        h = (A_bar * h if A_bar.dim() == 1 else A_bar @ h) + B_bar * uk
        hs.append(h)
    return torch.stack(hs)


@pytest.mark.parametrize("kind", ["full", "oscillator", "diag_real", "diag_complex", "N1"])
def test_zoh_exact_for_piecewise_constant_input(kind):
    if kind == "full":
        A, B = _random_stable(4)
    elif kind == "oscillator":
        A, B, _ = _oscillator()
    elif kind == "diag_real":
        A, B = -torch.rand(5, dtype=f64) * 4, torch.randn(5, dtype=f64)
    elif kind == "diag_complex":
        A, B = s4d_lin(5), torch.randn(5, dtype=f64)
    else:
        A, B = torch.tensor([-0.8], dtype=f64), torch.tensor([1.3], dtype=f64)
    u = torch.randn(37, dtype=f64)
    delta = 0.37
    A_bar, B_bar = dz.zoh(A, B, delta)
    assert A_bar.shape == A.shape and B_bar.shape == B.shape
    ref, out = _exact_held(A, B, u, delta), _recurrence(A_bar, B_bar, u)
    if out.is_complex():  # check_close compares real tensors: compare (re, im) pairs
        ref, out = torch.view_as_real(ref), torch.view_as_real(out)
    check_close(f"zoh {kind}", ref, out, 1e-11, 1e-12)


def _step_error(method, delta, T=2.0):
    """|y(T) - y_T| for the damped oscillator driven by a unit step, discretized with step delta."""
    A, B, C = _oscillator()
    exact = _exact_held(A, B, torch.ones(1, dtype=f64), T)[-1]  # one "step" of length T: u = 1 held
    A_bar, B_bar = dz.discretize(A, B, delta, method=method)
    h = _recurrence(A_bar, B_bar, torch.ones(round(T / delta), dtype=f64))[-1]
    return abs((C @ (h - exact)).item())


@pytest.mark.parametrize("method,order", [("euler", 1), ("bilinear", 2), ("mamba", 1)])
def test_convergence_order(method, order):
    deltas = [2.0 / n for n in (20, 40, 80, 160, 320)]
    errs = [_step_error(method, d) for d in deltas]
    slope = np.polyfit(np.log(deltas), np.log(errs), 1)[0]
    print(f"{method}: errors {errs}, measured order {slope:.3f}")
    assert abs(slope - order) < 0.2


def test_zoh_exact_at_every_step_size():
    errs = [_step_error("zoh", 2.0 / n) for n in (1, 4, 20, 160, 320)]  # 320: |ΔA|_1 = 0.028, see ssm.expm
    print("zoh errors:", errs)
    assert max(errs) < 1e-12


def test_mamba_uses_zoh_for_A_and_euler_for_B():
    A, B = -torch.arange(1.0, 9.0, dtype=f64), torch.randn(8, dtype=f64)
    for delta in (1e-3, 0.1, 1.0):
        A_zoh, B_zoh = dz.zoh(A, B, delta)
        A_m, B_m = dz.mamba_discretize(A, B, delta)
        check_close("A_bar zoh == mamba", A_zoh, A_m, 0, 0)
        check_close("B_bar mamba == ΔB", delta * B, B_m, 0, 0)
        check_close("B_bar zoh", (torch.exp(delta * A) - 1) / A * B, B_zoh, 1e-12, 0)
    A_full, B_full = _random_stable(3)
    check_close(
        "full A_bar", dz.zoh(A_full, B_full, 0.2)[0], dz.mamba_discretize(A_full, B_full, 0.2)[0], 0, 0
    )


def test_mamba_B_bar_relative_difference_is_half_delta_a():
    """(B_zoh - ΔB) / B_zoh = 1 - Δa / (exp(Δa) - 1) = -Δa/2 + O(Δ²) for a scalar a < 0."""
    a, B = torch.tensor([-3.0], dtype=f64), torch.ones(1, dtype=f64)
    for delta in (1e-4, 1e-3, 1e-2):
        rel = ((dz.zoh(a, B, delta)[1] - dz.mamba_discretize(a, B, delta)[1]) / dz.zoh(a, B, delta)[1]).item()
        first_order = -delta * a.item() / 2  # the ΔB rule overshoots: Δ > (1 - e^{-Δ|a|}) / |a|
        assert rel < 0
        assert abs(abs(rel) - first_order) < (delta * 3.0) ** 2  # the Δ² term is (Δa)²/12


@pytest.mark.parametrize("method", ["euler", "bilinear", "zoh", "mamba"])
@pytest.mark.parametrize("complex_a", [False, True])
def test_full_and_diagonal_agree(method, complex_a):
    a = s4d_lin(4) if complex_a else torch.tensor([-0.2, -1.0, -3.0, -7.5], dtype=f64)
    B = torch.randn(4, dtype=f64)
    Ad, Bd = dz.discretize(a, B, 0.13, method)
    Af, Bf = dz.discretize(torch.diag(a), B, 0.13, method)
    if complex_a:  # check_close compares real tensors: compare (re, im) pairs
        Ad, Bd, Af, Bf = (torch.view_as_real(x) for x in (torch.diag(Ad), Bd, Af, Bf))
    else:
        Ad = torch.diag(Ad)
    check_close(f"{method} A_bar", Ad, Af, 1e-12, 1e-14)
    check_close(f"{method} B_bar", Bd, Bf, 1e-12, 1e-14)


def test_stability_against_delta():
    lam = torch.tensor([-0.01, -1.0, -30.0], dtype=f64)
    lam_c = s4d_lin(6)
    B = torch.ones(3, dtype=f64)
    for delta in np.logspace(-3, 3, 25).tolist():
        for method in ("bilinear", "zoh", "mamba"):
            assert (dz.discretize(lam, B, delta, method)[0].abs() < 1).all(), (method, delta)
            assert (dz.discretize(lam_c, torch.ones(6, dtype=f64), delta, method)[0].abs() < 1).all(), (
                method,
                delta,
            )
        A_full, B_full = _random_stable(4, seed=3)
        for method in ("bilinear", "zoh"):
            assert (torch.linalg.eigvals(dz.discretize(A_full, B_full, delta, method)[0]).abs() < 1).all()
        eul = dz.euler(lam, B, delta)[0].abs()
        check_close("euler |A_bar|", (1 + delta * lam).abs(), eul, 1e-15, 0, verbose=False)
        assert ((eul > 1) == (delta * lam.abs() > 2)).all(), delta


def test_dtypes_and_delta_tensor():
    A, B = -torch.arange(1.0, 4.0), torch.ones(3)
    A_bar, B_bar = dz.zoh(A, B, torch.tensor(0.1))
    assert A_bar.dtype == torch.float32 and B_bar.dtype == torch.float32
    assert dz.zoh(A, B, np.float32(0.1))[0].dtype == torch.float32  # numpy scalars are numbers too
    A_bar, B_bar = dz.zoh(s4d_lin(3), torch.ones(3, dtype=f64), 0.1)
    assert A_bar.dtype == torch.complex128 and B_bar.dtype == torch.complex128
    check_close("zoh float32", dz.zoh(A.double(), B.double(), 0.1)[1], dz.zoh(A, B, 0.1)[1], 1e-6, 0)


def test_gradients_flow_to_A_B_and_delta():
    """d B_bar / d delta for ZOH is exp(Δa) B (the derivative of (exp(Δa) - 1)/a): check it and gradcheck."""
    a = torch.tensor([-0.5, -2.0], dtype=f64, requires_grad=True)
    b = torch.tensor([1.0, 3.0], dtype=f64, requires_grad=True)
    delta = torch.tensor(0.3, dtype=f64, requires_grad=True)
    (g,) = torch.autograd.grad(dz.zoh(a, b, delta)[1].sum(), delta)
    check_close("dB_bar/dΔ", (torch.exp(0.3 * a) * b).sum(), g, 1e-12, 0)
    for method in ("euler", "bilinear", "zoh", "mamba"):
        assert torch.autograd.gradcheck(lambda a, b, d, m=method: dz.discretize(a, b, d, m), (a, b, delta))
    A_full = _random_stable(3)[0].requires_grad_()
    assert torch.autograd.gradcheck(lambda A: dz.zoh(A, torch.ones(3, dtype=f64), 0.2), (A_full,))


def test_zoh_zero_eigenvalue_is_an_integrator():
    A_bar, B_bar = dz.zoh(torch.tensor([0.0, -1.0], dtype=f64), torch.ones(2, dtype=f64), 0.5)
    check_close("A_bar", [1.0, math.exp(-0.5)], A_bar, 1e-15, 0)
    check_close("B_bar", [0.5, 1 - math.exp(-0.5)], B_bar, 1e-15, 0)


def test_bad_input_names_the_argument():
    A, B, _ = _oscillator()
    for bad in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="delta must be positive and finite"):
            dz.zoh(A, B, bad)
    with pytest.raises(TypeError, match="delta must be a positive number"):
        dz.euler(A, B, "0.1")
    with pytest.raises(TypeError, match="delta must be a positive number"):
        dz.euler(A, B, True)
    with pytest.raises(ValueError, match=r"delta must be .* got shape \(2,\)"):
        dz.bilinear(A, B, torch.ones(2))
    with pytest.raises(TypeError, match="delta must be a real floating-point tensor"):
        dz.bilinear(A, B, torch.tensor(1))
    with pytest.raises(ValueError, match="method must be one of"):
        dz.discretize(A, B, 0.1, method="rk4")
    with pytest.raises(ValueError, match=r"A must be \(N, N\) or a diagonal"):
        dz.zoh(torch.zeros(2, 2, 2, dtype=f64), B, 0.1)
    with pytest.raises(ValueError, match=r"B must have shape \(2,\)"):
        dz.zoh(A, torch.ones(3, dtype=f64), 0.1)
    with pytest.raises(TypeError, match="A must be float32"):
        dz.zoh(torch.zeros(2, 2, dtype=torch.int32), B, 0.1)
    with pytest.raises(ValueError, match="A must be invertible"):
        dz.zoh(torch.zeros(2, 2, dtype=f64), B, 0.1)
