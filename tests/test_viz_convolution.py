"""The data behind notebook 03's figures and widget, against closed forms written here (S4D-Real with ZOH:
A_n = -(n+1), B = 1, A_bar_n = exp(ΔA_n), B_bar_n = (exp(ΔA_n) - 1)/A_n)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from minimamba.viz import FIGURES
from minimamba.viz import convolution as vc


def s4d_zoh_kernel(N: int, delta: float, L: int, C: np.ndarray) -> np.ndarray:
    """K_k = sum_n C_n (exp(Δa_n) - 1)/a_n exp(Δa_n k), a_n = -(n+1), as a float64 double loop."""
    K = np.zeros(L)
    for k in range(L):
        for n in range(N):
            a = -(n + 1.0)
            K[k] += C[n] * (math.exp(delta * a) - 1) / a * math.exp(delta * a * k)
    return K


def effective_length(K: np.ndarray, mass: float = 0.95) -> int:
    total, acc = np.abs(K).sum(), 0.0
    for k, x in enumerate(np.abs(K)):
        acc += x
        if acc >= mass * total * (1 - 1e-12):
            return k + 1
    return len(K)


@pytest.mark.parametrize("delta, N, L", [(0.1, 16, 64), (0.013, 1, 7), (1.7, 5, 1)])
def test_kernel_update_is_the_zoh_kernel(delta, N, L):
    d = vc.kernel_update(delta, N, L)
    ref = s4d_zoh_kernel(N, delta, L, np.ones(N))
    np.testing.assert_allclose(d["K"], ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d["t"], np.arange(L) * delta)
    np.testing.assert_allclose(d["K_over_delta"], ref / delta, rtol=1e-12)
    h = sum(np.exp(-(n + 1) * d["t_fine"]) for n in range(N))
    np.testing.assert_allclose(d["impulse"], h, rtol=1e-12)
    assert d["t_fine"][0] == 0 and d["t_fine"][-1] == pytest.approx(L * delta)
    assert d["effective_length"] == effective_length(ref)


def test_kernel_is_the_integral_of_the_impulse_response():
    """ZOH: K_k = ∫_{kΔ}^{(k+1)Δ} h(s) ds, and K_k / Δ → h(kΔ) as Δ → 0 (error O(Δ) relative)."""
    for delta in (0.1, 0.01, 0.001):
        d = vc.kernel_update(delta, 4, 50)
        t = d["t"]
        integral = sum((np.exp(-(n + 1) * (t + delta)) - np.exp(-(n + 1) * t)) / -(n + 1) for n in range(4))
        np.testing.assert_allclose(d["K"], integral, rtol=1e-10)
        h = sum(np.exp(-(n + 1) * t) for n in range(4))
        assert np.max(np.abs(d["K_over_delta"] / h - 1)) < 4 * delta  # 1 - Δ|a|/2 + …, |a| <= 4


def test_random_C_is_seeded():
    _, _, C1 = vc.s4d_system(8, "random", seed=3)
    _, _, C2 = vc.s4d_system(8, "random", seed=3)
    _, _, C3 = vc.s4d_system(8, "random", seed=4)
    assert torch.equal(C1, C2) and not torch.equal(C1, C3)
    d = vc.kernel_update(0.1, 8, 20, C="random")
    np.testing.assert_allclose(
        d["K"], s4d_zoh_kernel(8, 0.1, 20, vc.s4d_system(8, "random")[2].numpy()), rtol=1e-12
    )


def test_kernel_family():
    d = vc.kernel_family(Ns=(1, 3), delta=0.05, L=30)
    assert d["basis"].shape == (8, 30)
    for n in range(8):
        a = -(n + 1.0)
        ref = (math.exp(0.05 * a) - 1) / a * np.exp(0.05 * a * np.arange(30))
        np.testing.assert_allclose(d["basis"][n], ref, rtol=1e-12)
    for N, K in d["K"].items():
        ref = s4d_zoh_kernel(N, 0.05, 30, vc.s4d_system(N, "random", seed=N)[2].numpy())
        np.testing.assert_allclose(K, ref / np.abs(ref).max(), rtol=1e-12)
        assert np.abs(K).max() == pytest.approx(1.0)


def test_delta_stretch_length_scales_like_one_over_delta():
    d = vc.delta_stretch((0.005, 0.01, 0.02, 0.05, 0.1), N=16, L=2048)
    for delta, K in d["K"].items():
        np.testing.assert_allclose(K, s4d_zoh_kernel(16, delta, 2048, np.ones(16)), rtol=1e-10, atol=1e-15)
        assert d["length"][delta] == effective_length(K)
    time_lengths = [length * delta for delta, length in d["length"].items()]
    # the length in time, steps · Δ, is the same for every Δ within 5%
    assert max(time_lengths) / min(time_lengths) < 1.05, time_lengths


def test_time_modes_structure():
    """No timing assertions: only that every mode ran (or was skipped past its limit)."""
    t = vc.time_modes([1, 7, 40], N=2, batch=1, repeat=1, max_direct=7, max_recurrent=7)
    assert t["L"] == [1, 7, 40]
    for mode in ("recurrent", "direct"):
        assert all(x > 0 for x in t[mode][:2]) and math.isnan(t[mode][2])
    assert all(x > 0 for x in t["fft"])


def test_time_modes_restores_threads():
    before = torch.get_num_threads()
    vc.time_modes([4], N=1, batch=1, repeat=1)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("selective", [False, True])
def test_copying_examples_layout(selective):
    L, M = 20, 3
    d = vc.copying_examples(50, L, M, selective=selective, seed=7)
    u, y, pos = d["u"], d["y"], d["positions"]
    assert u.shape == y.shape == (50, L) and pos.shape == (50, M)
    for i in range(50):
        p = pos[i].tolist()
        assert p == sorted(p) and len(set(p)) == M and max(p) < L - M
        if not selective:
            assert p == list(range(M))
        nonzero = [k for k in range(L) if u[i, k] != 0]
        assert nonzero == p
        assert torch.equal(y[i, L - M :], u[i, p]) and not y[i, : L - M].any()
    if selective:
        assert len({tuple(p) for p in pos.tolist()}) > 1


def test_copying_fit_fixed_kernel():
    """Plain copying is one shift (K = e_{L-M}, exact); selective copying leaves most of the target unexplained."""
    L, M = 24, 3
    plain = vc.copying_fit(n_train=60, n_test=20, L=L, M=M, selective=False)
    assert plain["rel_error"] < 1e-10
    assert plain["K"][L - M].item() == pytest.approx(1.0)
    sel = vc.copying_fit(n_train=300, n_test=50, L=L, M=M, selective=True)
    assert sel["rel_error"] > 0.5
    # the fitted kernel is the least-squares optimum: its error does not drop when K moves a little
    train = vc.copying_examples(300, L, M, True, seed=1)
    rows = np.concatenate(
        [
            np.array([[u[k - j] if k >= j else 0 for j in range(L)] for k in range(L - M, L)])
            for u in train["u"].numpy()
        ]
    )
    b = train["y"][:, L - M :].numpy().reshape(-1)
    K_ref = np.linalg.lstsq(rows, b, rcond=None)[0]
    np.testing.assert_allclose(rows @ sel["K"].numpy(), rows @ K_ref, atol=1e-8)


@pytest.mark.parametrize("name", ["03_s4d_kernel_family", "03_delta_stretch", "03_fixed_kernel_copying"])
def test_registered_figures_have_labelled_axes(name):
    fig = FIGURES[name]()
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    plt.close(fig)


def test_cost_and_kernel_plots():
    assert "03_cost_vs_L" in FIGURES
    t = vc.time_modes([4, 16], N=2, batch=1, repeat=1)
    for fig in (vc.plot_cost(t), vc.plot_kernel(0.2, 3, 10)):
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel()
        plt.close(fig)


def test_kernel_widget_builds():
    w = vc.kernel_widget()
    names = {c.description for c in w.children[:-1]}
    assert names == {"Δ", "N", "C"}
    w.children[1].value = 3  # N slider: re-runs the update
    plt.close("all")


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: vc.kernel_update(delta=0.0), ValueError, "delta must be positive"),
        (lambda: vc.kernel_update(delta="x"), TypeError, "delta must be a positive float"),
        (lambda: vc.kernel_update(N=0), ValueError, "N must be >= 1, got 0"),
        (lambda: vc.kernel_update(L=2.0), TypeError, "L must be an int"),
        (lambda: vc.s4d_system(4, C="zeros"), ValueError, "C must be 'ones' or 'random'"),
        (lambda: vc.kernel_family(Ns=(0,)), ValueError, "N in Ns must be >= 1"),
        (lambda: vc.delta_stretch((0.1, -1.0)), ValueError, "delta must be positive"),
        (lambda: vc.time_modes([0]), ValueError, "L in Ls must be >= 1"),
        (lambda: vc.copying_examples(5, L=5, M=3), ValueError, "L must be >= 6"),
    ],
)
def test_bad_input(call, exc, words):
    with pytest.raises(exc, match=None) as info:
        call()
    assert words in str(info.value), str(info.value)
