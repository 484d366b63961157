"""The data behind notebook 01's widget and figures, against closed forms and the package."""

import math

import numpy as np
import pytest
import torch

from minimamba import ssm
from minimamba.testing import check_close
from minimamba.viz import FIGURES, continuous


def test_impulse_is_a_damped_cosine():
    d = continuous.response_update(-0.5, 2.0, "impulse")
    check_close("impulse", np.exp(-0.5 * d["t"]) * np.cos(2.0 * d["t"]), d["y"], 1e-12, 1e-12)
    assert d["stable"] and sorted(d["eigenvalues"].imag) == [-2.0, 2.0]


def test_step_matches_the_closed_form():
    """h' = λh + 1 from rest: h = (e^{λt} - 1)/λ, y = Re h."""
    re, im = -0.3, 1.5
    d = continuous.response_update(re, im, "step")
    lam = complex(re, im)
    check_close("step", [((np.exp(lam * t) - 1) / lam).real for t in d["t"]], d["y"], 1e-10, 1e-12)
    A = torch.tensor([[re, -im], [im, re]], dtype=torch.float64)
    e0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    check_close(
        "vs step_response", ssm.step_response(A, e0, e0, torch.from_numpy(d["t"])), d["y"], 1e-10, 1e-12
    )


@pytest.mark.parametrize("kind", ["sine", "square"])
def test_held_inputs_match_a_fine_loop(kind):
    """An independent forward-Euler loop on a 20x finer grid, input held between the coarse samples."""
    re, im = -0.4, 1.0
    d = continuous.response_update(re, im, kind, T=6.0, n=301)
    lam, h, dt, ys = complex(re, im), 0j, (d["t"][1] - d["t"][0]) / 20, [0.0]
    for uk in d["u"][:-1]:
        for _ in range(20):
            h += dt * (lam * h + uk)
        ys.append(h.real)
    check_close(kind, ys, d["y"], 0, 2e-3)


def test_the_sliders_change_the_plotted_data():
    a = continuous.response_update(-0.5, 2.0, "sine")
    b = continuous.response_update(0.2, 2.0, "sine")
    assert not b["stable"] and np.abs(b["y"]).max() > 3 * np.abs(a["y"]).max()
    c = continuous.response_update(-0.5, 3.0, "sine")
    assert np.abs(c["y"] - a["y"]).max() > 0.05
    assert np.array_equal(continuous.response_update(-0.5, 2.0, "square")["u"][:3], [1.0, 1.0, 1.0])


def test_integrator_is_allowed():
    d = continuous.response_update(0.0, 0.0, "step")
    check_close("integrator", d["t"], d["y"], 1e-12, 1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="kind must be one of"):
        continuous.response_update(-1.0, 1.0, "ramp")
    with pytest.raises(ValueError, match="re must be finite"):
        continuous.response_update(math.nan, 1.0, "step")
    with pytest.raises(ValueError, match="k must be finite"):
        continuous.mass_spring(k=math.inf)
    with pytest.raises(ValueError, match="m must be positive"):
        continuous.mass_spring(m=0.0)


def test_oscillator_responses():
    d = continuous.oscillator_responses(k=4.0, c=0.0, T=6.0, n=61)
    check_close("undamped impulse", np.sin(2 * d["t"]) / 2, d["impulse"], 1e-12, 1e-12)
    check_close("undamped step", (1 - np.cos(2 * d["t"])) / 4, d["step"], 1e-12, 1e-12)
    check_close("eigenvalues", [0.0, 0.0], d["eigenvalues"].real, 0, 1e-12)


def test_hippo_memory_reconstructs_the_signal():
    d = continuous.hippo_memory(Ns=(4, 32), L=2000, M=200)
    s = d["s"]
    check_close("history", np.sin(12 * s) * np.exp(-s) + 0.5 * np.cos(30 * s**2), d["u"], 0, 1e-14)
    err = {N: np.sqrt(np.mean((r - d["u"]) ** 2)) for N, r in d["rec"].items()}
    assert err[32] < 0.01 < 0.1 < err[4]


def test_figures_are_registered_and_draw():
    for name in ("01_oscillator", "01_hippo_memory", "01_hippo_error_vs_N"):
        assert name in FIGURES
    fig = continuous.plot_response(-0.5, 2.0, "square")
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    assert isinstance(continuous.response_widget().children[0].value, float)


def test_s4d_real_state_is_not_a_legendre_memory():
    """Drop LegS's off-diagonal part (S4D-Real, same eigenvalues, B and clock): read back the same way, the
    final state no longer rebuilds the history; LegS's error falls with N, the diagonal's does not."""
    d = continuous.hippo_error_vs_N(Ns=(4, 32), L=2000)
    legs, diag = d["rms_error"], d["rms_error_s4d_real"]
    assert diag[1] > 100 * legs[1] and diag[1] > 0.5 and legs[1] < 0.01
    # the N = 1 state is the same for both (LegS's A is lower triangular): c_0 = the mean of the history
    one = continuous.hippo_memory(Ns=(1,), L=2000, M=50)["rec"][1]
    check_close("N = 1", one, continuous.s4d_real_memory(Ns=(1,), L=2000, M=50)["rec"][1], 1e-12, 1e-12)


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("re, im", [(-2.5, 6.0), (-1.5, 0.0), (-2.0, 3.0), (0.5, 1.0)])
def test_eigenvalue_legend_covers_no_marker(re, im):
    fig = continuous.plot_response(re, im, "step")
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert not _overlaps(legend, ax.get_window_extent())  # outside the eigenvalue plane altogether


def test_hippo_figure_draws_the_input_on_top():
    fig = continuous.plot_hippo_memory((4, 32))
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    top = lines["input history u(s)"]
    assert top.get_linestyle() == "--" and top.get_color() == "k"
    assert all(top.get_zorder() > ln.get_zorder() for name, ln in lines.items() if ln is not top)
    assert top.get_linewidth() > max(ln.get_linewidth() for ln in lines.values() if ln is not top)
