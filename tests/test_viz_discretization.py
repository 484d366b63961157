"""The data behind notebook 02's widget and figures, against loops and closed forms written here."""

import math

import numpy as np
import pytest
import torch

from minimamba.discretize import discretize
from minimamba.testing import check_close
from minimamba.viz import FIGURES, discretization

f64 = torch.float64


def _loop(A_bar, B_bar, C, u):
    """y_0 = 0, h_{k+1} = A_bar h_k + B_bar u_k, y_k = C h_k: a float64 loop."""
    h, ys = torch.zeros_like(B_bar), [0.0]
    for uk in u[:-1]:
        h = (A_bar * h if A_bar.dim() == 1 else A_bar @ h) + B_bar * float(uk)
        ys.append((C @ h).item())
    return np.array(ys)


@pytest.mark.parametrize("method", ["euler", "bilinear", "zoh", "mamba"])
@pytest.mark.parametrize("system_name", ["decay", "oscillator"])
def test_discrete_points_follow_the_recurrence(method, system_name):
    d = discretization.trajectory_update(0.3, method, system_name, "sine", T=6.0)
    A, B, C = discretization.system(system_name)
    A_bar, B_bar = discretize(A, B, 0.3, method)
    check_close("t_k", np.arange(21) * 0.3, d["t_k"], 1e-12, 1e-12)
    check_close(f"{method} {system_name}", _loop(A_bar, B_bar, C, np.sin(d["t_k"])), d["y_k"], 1e-12, 1e-12)


def test_continuous_step_closed_form_and_zoh_exact():
    d = discretization.trajectory_update(0.5, "zoh", "decay", "step")
    ref = 0.25 * (1 - np.exp(-0.5 * d["t"])) / 0.5 + 2.0 * (1 - np.exp(-4.0 * d["t"])) / 4.0
    check_close("continuous decay", ref, d["y"], 1e-12, 1e-12)
    assert d["error"] < 1e-12 and d["stable"]


def test_delta_changes_the_trajectory_and_euler_blows_up():
    a = discretization.trajectory_update(0.25, "euler", "decay", "step")
    b = discretization.trajectory_update(0.3, "euler", "decay", "step")
    assert not np.allclose(a["y_k"][:5], b["y_k"][:5])
    big = discretization.trajectory_update(0.6, "euler", "decay", "step")  # Δ|λ| = 2.4 > 2
    assert not big["stable"] and math.isclose(big["abar_max"], 1.4) and big["error"] > 10
    for m in ("bilinear", "zoh", "mamba"):
        assert discretization.trajectory_update(2.0, m, "decay", "step")["stable"]


def test_measured_orders():
    d = discretization.error_vs_delta()
    assert abs(d["slope"]["euler"] - 1) < 0.2
    assert abs(d["slope"]["bilinear"] - 2) < 0.2
    assert abs(d["slope"]["mamba"] - 1) < 0.2
    assert d["error"]["zoh"].max() < 1e-12


def test_stability_curves_closed_form():
    x = np.array([0.5, 1.9, 2.1, 5.0])
    d = discretization.stability_curves(x)
    check_close("euler", np.abs(1 - x), d["euler"], 1e-14, 0)
    check_close("bilinear", np.abs((1 - x / 2) / (1 + x / 2)), d["bilinear"], 1e-14, 0)
    check_close("zoh", np.exp(-x), d["zoh"], 1e-14, 0)


def test_delta_timescale():
    d = discretization.delta_timescale()
    u = d["u"]
    # Δ = 10: A_bar = e^-10, the state is (almost) the current input; Δ = 0.01: it barely moves
    check_close("large Δ follows u", u, d["h"][10.0], 0, 1e-3)
    assert np.abs(d["h"][0.01]).max() < 0.3 * np.abs(u).max()
    h = 0.0
    for uk in u:  # the recurrence written out for Δ = 1
        h = math.exp(-1) * h + uk
    check_close("Δ = 1 last state", h / (1 / (1 - math.exp(-1))), d["h"][1.0][-1], 1e-12, 0)


def test_mamba_vs_zoh_first_order():
    d = discretization.mamba_vs_zoh(np.array([1e-3, 1e-2, 1.0]))
    exact = np.abs(d["x"] - (1 - np.exp(-d["x"]))) / (1 - np.exp(-d["x"]))
    check_close("relative difference", exact, d["rel_diff"], 1e-9, 0)
    assert abs(d["rel_diff"][0] - 5e-4) < 1e-6


def test_bad_input_and_figures():
    with pytest.raises(ValueError, match="method must be one of"):
        discretization.trajectory_update(0.1, "rk4")
    with pytest.raises(ValueError, match="system must be one of"):
        discretization.trajectory_update(0.1, "zoh", "pendulum")
    with pytest.raises(ValueError, match="delta must be positive"):
        discretization.trajectory_update(0.0)
    for name in ("02_error_vs_delta", "02_stability", "02_mamba_vs_zoh"):
        assert name in FIGURES
    w = discretization.trajectory_widget()
    assert w.children[0].description == "Δ"
    fig = discretization.plot_trajectory(0.6, "euler")
    assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()
