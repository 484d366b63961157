"""Figures and the widget of notebook 02 (discretization): discrete against continuous trajectories, error
against Δ, stability against Δ|λ|, Δ as a time scale, and Mamba's ΔB against ZOH's B_bar.

Every plot is drawn from a pure function that returns the plotted data (``trajectory_update``,
``error_vs_delta``, ``stability_curves``, ``delta_timescale``, ``mamba_vs_zoh``), so that pytest can check
what the reader sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from minimamba.discretize import METHODS, discretize, mamba_discretize, zoh
from minimamba.lti import lti_recurrent
from minimamba.ssm import simulate, step_response
from minimamba.viz import figure, show, with_static

__all__ = [
    "INPUTS",
    "SYSTEMS",
    "delta_timescale",
    "error_vs_delta",
    "mamba_vs_zoh",
    "plot_delta_timescale",
    "plot_error_vs_delta",
    "plot_mamba_vs_zoh",
    "plot_stability",
    "plot_trajectory",
    "stability_curves",
    "system",
    "trajectory_update",
    "trajectory_widget",
]

_F64 = torch.float64
SYSTEMS = ("decay", "oscillator")
INPUTS = ("step", "sine")
_LABELS = {"euler": "Euler", "bilinear": "bilinear", "zoh": "ZOH", "mamba": "Mamba (ZOH A, Euler B)"}


def system(name: str = "decay") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two small SSMs, both with a steady-state gain of 1 (a unit step settles at y = 1).

    ``decay``: diagonal A = (-0.5, -4), B = (1, 1), C = (0.25, 2): a slow and a fast mode.
    ``oscillator``: the mass–spring x'' = -4x - 0.5x' + u, full A, y = 4x.
    """
    if name == "decay":
        return (
            torch.tensor([-0.5, -4.0], dtype=_F64),
            torch.ones(2, dtype=_F64),
            torch.tensor([0.25, 2.0], dtype=_F64),
        )
    if name == "oscillator":
        A = torch.tensor([[0.0, 1.0], [-4.0, -0.5]], dtype=_F64)
        return A, torch.tensor([0.0, 1.0], dtype=_F64), torch.tensor([4.0, 0.0], dtype=_F64)
    raise ValueError(f"system must be one of {SYSTEMS}, got {name!r}")


def _u(kind: str, t: np.ndarray) -> np.ndarray:
    return np.ones_like(t) if kind == "step" else np.sin(t)


def trajectory_update(
    delta: float = 0.25, method: str = "zoh", system_name: str = "decay", kind: str = "step", T: float = 8.0
) -> dict:
    """The discrete recurrence at step Δ against the continuous solution, for a step or a sine input.

    Discrete: u_k = u(kΔ) is held over [kΔ, (k+1)Δ), h_{k+1} = A_bar h_k + B_bar u_k from h_0 = 0 (computed
    with ``minimamba.lti.lti_recurrent``), y_k = C h_k at t_k = kΔ. Continuous: ``simulate`` on a fine grid
    (exact for the step; for the sine, the fine grid's own hold error is below 1e-3).

    Returns ``t`` and ``y`` (continuous), ``t_k`` and ``y_k`` (discrete), ``error``: max_k |y_k - y(t_k)|,
    ``abar_max``: the largest |eigenvalue| of A_bar, and ``stable``: abar_max < 1.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    if kind not in INPUTS:
        raise ValueError(f"kind must be one of {INPUTS}, got {kind!r}")
    if not (T > 0 and math.isfinite(T)):
        raise ValueError(f"T must be positive and finite, got {T}")
    A, B, C = system(system_name)
    A_bar, B_bar = discretize(A, B, delta, method)  # validates delta
    K = int(T / delta + 1e-9)
    t_k = np.arange(K + 1) * delta
    u_k = torch.from_numpy(_u(kind, t_k))
    y_k = np.concatenate([[0.0], lti_recurrent(A_bar, B_bar, C, u_k[:-1]).numpy()])  # y_0 = 0 at rest
    t = np.linspace(0, T, 4001)
    y = simulate(A, B, C, 0.0, torch.from_numpy(_u(kind, t)), torch.from_numpy(t))[0].numpy()
    if kind == "step":
        y_at_k = step_response(A, B, C, torch.from_numpy(t_k)).numpy()
    else:
        y_at_k = np.interp(t_k, t, y)
    eig = A_bar if A_bar.dim() == 1 else torch.linalg.eigvals(A_bar)
    abar_max = eig.abs().max().item()
    return {
        "t": t,
        "y": y,
        "t_k": t_k,
        "y_k": y_k,
        "error": float(np.abs(y_k - y_at_k).max()),
        "abar_max": abar_max,
        "stable": abar_max < 1,
    }


def plot_trajectory(
    delta: float = 0.25, method: str = "zoh", system_name: str = "decay", kind: str = "step"
) -> Figure:
    """Continuous y(t) (line) and the discrete y_k at t = kΔ (dots); a blown-up recurrence is clipped."""
    d = trajectory_update(delta, method, system_name, kind)
    fig, ax = plt.subplots(figsize=(9, 3.4), layout="constrained")
    ax.plot(d["t"], d["y"], color="0.3", label="continuous y(t)")
    ax.plot(d["t_k"], d["y_k"], "o-", ms=4, lw=0.8, color="C3", label=f"{_LABELS[method]}, Δ = {delta:.2f}")
    lo, hi = min(d["y"].min(), 0) - 0.5, d["y"].max() + 0.8
    ax.set_ylim(lo, hi)
    if np.abs(d["y_k"]).max() > hi:
        ax.text(
            0.5,
            0.92,
            "the recurrence blows up (|eigenvalue of Ā| > 1)",
            transform=ax.transAxes,
            ha="center",
            color="C3",
        )
    ax.set(
        xlabel="time t",
        ylabel="output y",
        title=f"{system_name}, {kind} input: max error {d['error']:.2e}, max |eig Ā| = {d['abar_max']:.3f}",
    )
    ax.legend(loc="lower right")
    return fig


def trajectory_widget() -> widgets.interactive:
    """A Δ slider and dropdowns for the method, the system and the input, over :func:`plot_trajectory`."""
    w = widgets.interactive(
        lambda delta, method, system_name, kind: show(plot_trajectory(delta, method, system_name, kind)),
        delta=widgets.FloatSlider(value=0.25, min=0.05, max=2.0, step=0.05, description="Δ"),
        method=widgets.Dropdown(options=list(METHODS), value="euler", description="method"),
        system_name=widgets.Dropdown(options=SYSTEMS, value="decay", description="system"),
        kind=widgets.Dropdown(options=INPUTS, value="step", description="input"),
    )
    return with_static(w, lambda: plot_trajectory(**w.kwargs))


# ------------------------------------------------------------------------------------------------------
# Error against Δ: the order of each rule.


def error_vs_delta(
    methods: Sequence[str] = ("euler", "bilinear", "mamba", "zoh"),
    steps: Sequence[int] = (10, 20, 40, 80, 160, 320),
    T: float = 2.0,
) -> dict:
    """|y_K - y(T)| for the oscillator's step response, with Δ = T / K for K in ``steps``.

    Returns ``delta`` (len(steps),), ``error`` {method: array} and ``slope`` {method: the fitted log–log
    slope, the measured order} (no slope for ZOH, whose error is rounding).
    """
    A, B, C = system("oscillator")
    exact = step_response(A, B, C, torch.tensor([T], dtype=_F64)).item()
    deltas = np.array([T / K for K in steps])
    err, slope = {}, {}
    for m in methods:
        e = []
        for K in steps:
            A_bar, B_bar = discretize(A, B, T / K, m)
            e.append(abs(lti_recurrent(A_bar, B_bar, C, torch.ones(K, dtype=_F64))[-1].item() - exact))
        err[m] = np.array(e)
        if m != "zoh":
            slope[m] = float(np.polyfit(np.log(deltas), np.log(err[m]), 1)[0])
    return {"delta": deltas, "error": err, "slope": slope}


@figure("02_error_vs_delta")
def plot_error_vs_delta() -> Figure:
    """Log–log error against Δ with the measured slopes."""
    d = error_vs_delta()
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    for m, e in d["error"].items():
        slope = f", slope {d['slope'][m]:.2f}" if m in d["slope"] else " (exact: rounding only)"
        ax.loglog(d["delta"], np.maximum(e, 1e-17), "o-", label=_LABELS[m] + slope)
    ax.set(
        xlabel="step Δ", ylabel="|y_K - y(T)| at T = 2", title="step response of the oscillator: error vs Δ"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# ------------------------------------------------------------------------------------------------------
# Stability: |A_bar| for a real eigenvalue λ < 0 as Δ|λ| grows.


def stability_curves(x: np.ndarray | None = None) -> dict:
    """|A_bar| = |1 + Δλ| (Euler), |(1 + Δλ/2)/(1 - Δλ/2)| (bilinear), e^{Δλ} (ZOH and Mamba) against
    x = Δ|λ| for λ = -1, computed with the package's rules."""
    x = np.linspace(0.01, 6, 300) if x is None else np.asarray(x, dtype=float)
    lam, B = torch.tensor([-1.0], dtype=_F64), torch.ones(1, dtype=_F64)
    out = {"x": x}
    for m in ("euler", "bilinear", "zoh"):
        out[m] = np.array([discretize(lam, B, float(xi), m)[0].abs().item() for xi in x])
    return out


@figure("02_stability")
def plot_stability() -> Figure:
    """|A_bar| against Δ|λ| for the three rules; above 1 the recurrence blows up."""
    d = stability_curves()
    fig, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
    for m in ("euler", "bilinear", "zoh"):
        ax.plot(d["x"], d[m], label=_LABELS[m])
    ax.axhline(1, color="0.3", ls="--", lw=1)
    ax.axvline(2, color="C0", ls=":", lw=1)
    ax.text(2.1, 3.2, "Euler unstable\nfor Δ|λ| > 2", color="C0")
    ax.set(
        xlabel="Δ|λ| (real eigenvalue λ < 0)", ylabel="|Ā| (growth per step)", title="stability as Δ grows"
    )
    ax.set_ylim(0, 4)
    ax.legend(loc="upper left")
    return fig


# ------------------------------------------------------------------------------------------------------
# Δ as a time scale (Mamba §3.5.2).


def delta_timescale(deltas: Sequence[float] = (0.01, 0.1, 1.0, 10.0), L: int = 60, seed: int = 0) -> dict:
    """One state h_k = e^{-Δ} h_{k-1} + Δ u_k (A = -1, Mamba's rule) over the same input sequence u_k.

    The input is a piecewise-constant random sequence (a new level every 10 steps). Returns ``k`` (L,),
    ``u`` (L,) and ``h`` {Δ: (L,)}. For comparison with u, the state is scaled by its steady-state gain:
    h / (Δ / (1 - e^{-Δ})), so that a state that follows the input equals it.
    """
    g = np.random.default_rng(seed)
    u = np.repeat(g.uniform(-1, 1, size=(L + 9) // 10), 10)[:L]
    A, B, C = torch.tensor([-1.0], dtype=_F64), torch.ones(1, dtype=_F64), torch.ones(1, dtype=_F64)
    h = {}
    for d in deltas:
        A_bar, B_bar = mamba_discretize(A, B, d)
        gain = B_bar.item() / (1 - A_bar.item())
        h[d] = lti_recurrent(A_bar, B_bar, C, torch.from_numpy(u)).numpy() / gain
    return {"k": np.arange(L), "u": u, "h": h}


def plot_delta_timescale() -> Figure:
    """The same input through one state at four Δ: small Δ holds on, large Δ follows the input."""
    d = delta_timescale()
    fig, ax = plt.subplots(figsize=(9, 3.4), layout="constrained")
    ax.step(d["k"], d["u"], where="mid", color="k", alpha=0.4, lw=2.5, label="input $u_k$")
    for delta, h in d["h"].items():
        ax.plot(d["k"], h, "o-", ms=2.5, lw=1, label=f"state (scaled), Δ = {delta:g}")
    ax.set(
        xlabel="step k (sequence position)",
        ylabel="value",
        title="Δ as a time scale: remember (small Δ) or reset (large Δ)",
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return fig


# ------------------------------------------------------------------------------------------------------
# Mamba's B_bar = ΔB against ZOH's.


def mamba_vs_zoh(x: np.ndarray | None = None) -> dict:
    """Relative difference |B_zoh - ΔB| / |B_zoh| against x = Δ|a| for a real a < 0, and its first-order
    estimate x / 2."""
    x = np.logspace(-3, 1, 60) if x is None else np.asarray(x, dtype=float)
    a, B = torch.tensor([-1.0], dtype=_F64), torch.ones(1, dtype=_F64)
    rel = []
    for xi in x:
        Bz, Bm = zoh(a, B, float(xi))[1], mamba_discretize(a, B, float(xi))[1]
        rel.append(((Bm - Bz).abs() / Bz.abs()).item())
    return {"x": x, "rel_diff": np.array(rel), "first_order": x / 2}


@figure("02_mamba_vs_zoh")
def plot_mamba_vs_zoh() -> Figure:
    """How far Mamba's ΔB is from ZOH's B_bar, against Δ|a|; Mamba's default Δ range shaded."""
    d = mamba_vs_zoh()
    fig, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
    ax.loglog(d["x"], d["rel_diff"], label="$|\\Delta B - \\bar B_{ZOH}| / |\\bar B_{ZOH}|$")
    ax.loglog(d["x"], d["first_order"], "--", color="0.4", label="Δ|a| / 2 (first order)")
    ax.axvspan(0.001, 0.1, color="C2", alpha=0.12, label="Δ at init (dt_min 0.001 to dt_max 0.1), |a| = 1")
    ax.set(
        xlabel="Δ|a|",
        ylabel="relative difference of $\\bar B$",
        title="Mamba's ΔB vs the paper's ZOH $\\bar B$",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
