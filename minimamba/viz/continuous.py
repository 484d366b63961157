"""Figures and the widget of notebook 01 (the continuous SSM): responses and eigenvalues, HiPPO-LegS memory.

Every plot is drawn from a pure function that returns the plotted data (``response_update``,
``oscillator_responses``, ``hippo_memory``, ``s4d_real_memory``, ``hippo_error_vs_N``), so that pytest can
check what the reader sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from minimamba.ssm import (
    hippo_legs,
    impulse_response,
    legendre_reconstruct,
    legs_memory,
    s4d_real,
    simulate,
    step_response,
)
from minimamba.viz import figure, show, with_static

__all__ = [
    "INPUTS",
    "hippo_error_vs_N",
    "hippo_memory",
    "mass_spring",
    "oscillator_responses",
    "plot_hippo_error",
    "plot_hippo_memory",
    "plot_oscillator",
    "plot_response",
    "response_update",
    "response_widget",
    "history_signal",
    "s4d_real_memory",
]

_F64 = torch.float64

#: the inputs of the response widget
INPUTS = ("impulse", "step", "sine", "square")


def mass_spring(
    k: float = 4.0, c: float = 0.5, m: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """m x'' = -k x - c x' + u as h' = A h + B u, y = C h with h = (position, velocity), y = position.

    A negative friction c pumps energy in (an unstable system); m must be positive.
    """
    for name, v in (("k", k), ("c", c), ("m", m)):
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}")
    if m <= 0:
        raise ValueError(f"m must be positive, got {m}")
    A = torch.tensor([[0.0, 1.0], [-k / m, -c / m]], dtype=_F64)
    return A, torch.tensor([0.0, 1.0 / m], dtype=_F64), torch.tensor([1.0, 0.0], dtype=_F64)


# ------------------------------------------------------------------------------------------------------
# The widget: one complex-conjugate pair of eigenvalues, four inputs.


def _input(kind: str, t: np.ndarray) -> np.ndarray:
    if kind == "step":
        return np.ones_like(t)
    if kind == "sine":
        return np.sin(2 * math.pi * t / 4)
    if kind == "square":
        return np.where(np.floor(t / 2) % 2 == 0, 1.0, -1.0)  # period 4, switches on grid points
    return np.zeros_like(t)  # the impulse is a unit kick of the state at t = 0


def response_update(
    re: float = -0.5, im: float = 2.0, kind: str = "step", T: float = 10.0, n: int = 1001
) -> dict:
    """The response of the SSM with eigenvalues re ± i·im to the input ``kind``, one of ``INPUTS``.

    The system is the real 2-state rotation–decay A = [[re, -im], [im, re]], B = (1, 0), C = (1, 0), whose
    eigenvalues are re ± i·im: a single complex mode λ = re + i·im with y = Re(h). The impulse response is
    C exp(tA) B = e^{re·t} cos(im·t); other inputs run ``simulate`` (exact for the held samples on a grid of
    ``n`` points over [0, T]; the square wave switches on grid points).

    Returns ``t`` (n,), ``u`` (n,), ``y`` (n,), ``eigenvalues`` (2,) complex and ``stable`` (re < 0).
    """
    if kind not in INPUTS:
        raise ValueError(f"kind must be one of {INPUTS}, got {kind!r}")
    for name, v in (("re", re), ("im", im)):
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}")
    if not (T > 0 and math.isfinite(T)):
        raise ValueError(f"T must be positive and finite, got {T}")
    A = torch.tensor([[re, -im], [im, re]], dtype=_F64)
    B = torch.tensor([1.0, 0.0], dtype=_F64)
    C = torch.tensor([1.0, 0.0], dtype=_F64)
    t = torch.linspace(0, T, n, dtype=_F64)
    u = _input(kind, t.numpy())
    if kind == "impulse":
        y = impulse_response(A, B, C, t)
    else:
        # a diagonal copy of the same system, so that the integrator (re = im = 0) is allowed too
        lam = torch.tensor([complex(re, im)], dtype=torch.complex128)
        y = simulate(lam, torch.ones(1, dtype=_F64), torch.ones(1, dtype=_F64), 0.0, torch.from_numpy(u), t)[
            0
        ].real
    return {
        "t": t.numpy(),
        "u": u,
        "y": y.numpy(),
        "eigenvalues": np.array([complex(re, im), complex(re, -im)]),
        "stable": re < 0,
    }


def _plot_eigenvalues(ax, eigenvalues, xlim: tuple[float, float], ylim: tuple[float, float]) -> None:
    """The eigenvalues of A in the complex plane, over the shaded stable half-plane Re λ < 0."""
    ax.axvspan(xlim[0], 0, color="C2", alpha=0.12, label="stable: Re λ < 0")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.plot(eigenvalues.real, eigenvalues.imag, "x", ms=10, mew=2, color="C3", label="eigenvalues")
    ax.set(xlim=xlim, ylim=ylim, xlabel="Re λ", ylabel="Im λ", title="eigenvalues of A")
    # below the axes, so that it never covers an eigenvalue (they can sit anywhere in the plane)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8, frameon=False)


def plot_response(re: float = -0.5, im: float = 2.0, kind: str = "step") -> Figure:
    """Left: the eigenvalues in the complex plane (shaded: the stable half-plane). Right: u and y."""
    d = response_update(re, im, kind)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained", width_ratios=(1, 2.2))
    _plot_eigenvalues(ax0, d["eigenvalues"], xlim=(-3, 1.5), ylim=(-6.5, 6.5))
    if kind != "impulse":
        ax1.plot(d["t"], d["u"], color="0.6", lw=1, label=f"input u ({kind})")
    ax1.plot(d["t"], d["y"], color="C0", label="output y")
    verdict = "stable" if d["stable"] else "not stable: grows or never settles"
    ax1.set(
        xlabel="time t",
        ylabel="signal",
        title=f"response to {kind}, λ = {re:.2f} ± {abs(im):.2f}i ({verdict})",
    )
    ax1.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return fig


def response_widget() -> widgets.interactive:
    """Sliders for the eigenvalue re ± i·im and a dropdown for the input, over :func:`plot_response`."""
    w = widgets.interactive(
        lambda re, im, kind: show(plot_response(re, im, kind)),
        re=widgets.FloatSlider(value=-0.5, min=-2.5, max=1.0, step=0.1, description="Re λ"),
        im=widgets.FloatSlider(value=2.0, min=0.0, max=6.0, step=0.25, description="Im λ"),
        kind=widgets.Dropdown(options=INPUTS, value="step", description="input"),
    )
    return with_static(w, lambda: plot_response(**w.kwargs))


# ------------------------------------------------------------------------------------------------------
# The mass–spring oscillator: impulse and step responses.


def oscillator_responses(k: float = 4.0, c: float = 0.5, T: float = 12.0, n: int = 601) -> dict:
    """Impulse and step responses of ``mass_spring(k, c)`` on [0, T]; ``eigenvalues`` of its A."""
    A, B, C = mass_spring(k, c)
    t = torch.linspace(0, T, n, dtype=_F64)
    return {
        "t": t.numpy(),
        "impulse": impulse_response(A, B, C, t).numpy(),
        "step": step_response(A, B, C, t).numpy(),
        "eigenvalues": torch.linalg.eigvals(A).numpy(),
    }


@figure("01_oscillator")
def plot_oscillator(k: float = 4.0, c: float = 0.5) -> Figure:
    """The mass–spring's eigenvalues and its impulse and step responses."""
    d = oscillator_responses(k, c)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained", width_ratios=(1, 2.2))
    _plot_eigenvalues(ax0, d["eigenvalues"], xlim=(-1, 0.5), ylim=(-3, 3))
    ax0.set_xticks([-1, -0.5, 0, 0.5])
    ax1.plot(d["t"], d["impulse"], label="impulse response $Ce^{tA}B$")
    ax1.plot(d["t"], d["step"], label="step response $CA^{-1}(e^{tA}-I)B$")
    ax1.axhline(1 / k, color="0.6", ls="--", lw=1, label=f"rest position under a unit force, 1/k = {1 / k:g}")
    ax1.set(xlabel="time t", ylabel="position y = x(t)", title=f"mass–spring, k = {k:g}, c = {c:g}, m = 1")
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8, frameon=False)
    return fig


# ------------------------------------------------------------------------------------------------------
# HiPPO-LegS: the state is a compressed memory of the whole input history.


def history_signal(t):
    """The input used for the HiPPO figures: a smooth, wiggly signal on [0, 1] (numpy or torch)."""
    lib = torch if isinstance(t, torch.Tensor) else np
    return lib.sin(12 * t) * lib.exp(-t) + 0.5 * lib.cos(30 * t**2)


def _legs_grid(t_end: float, L: int) -> torch.Tensor:
    return torch.logspace(math.log10(t_end) - 4, math.log10(t_end), L, dtype=_F64)


def hippo_memory(Ns: Sequence[int] = (4, 16, 32), t_end: float = 1.0, L: int = 3000, M: int = 500) -> dict:
    """Feed ``history_signal`` to HiPPO-LegS up to ``t_end``, then rebuild the history from the final state.

    Returns ``s`` (M,) times in [0, t_end], ``u`` (M,) the true history, and ``rec`` {N: (M,)} the
    reconstruction sum_n c_n(t_end) sqrt(2n+1) P_n(2s/t_end - 1) from each state size N.
    """
    t = _legs_grid(t_end, L)
    u = history_signal(t)
    s = torch.linspace(0, t_end, M, dtype=_F64)
    rec = {N: legendre_reconstruct(legs_memory(u, t, N)[-1], t_end, s).numpy() for N in Ns}
    return {"s": s.numpy(), "u": history_signal(s).numpy(), "rec": rec}


def s4d_real_memory(Ns: Sequence[int] = (4, 16, 32), t_end: float = 1.0, L: int = 3000, M: int = 500) -> dict:
    """``hippo_memory`` with LegS's A replaced by its diagonal, S4D-Real A_n = -(n+1) (Mamba §3.6).

    Same input, same B_n = sqrt(2n+1), same log-time clock as ``legs_memory``; only the off-diagonal part of
    A is dropped. The final state is read back the way a LegS state is (``legendre_reconstruct``). Returns
    ``s`` (M,), ``u`` (M,) and ``rec`` {N: (M,)} like ``hippo_memory``.
    """
    t = _legs_grid(t_end, L)
    u = history_signal(t)
    u_held = torch.cat([(u[:-1] + u[1:]) / 2, u[-1:]])  # (L,) held like legs_memory holds it
    s = torch.linspace(0, t_end, M, dtype=_F64)
    rec = {}
    for N in Ns:
        h0 = torch.zeros(N, dtype=_F64)
        h0[0] = u[0]
        _, h = simulate(
            s4d_real(N), hippo_legs(N)[1], torch.zeros(N, dtype=_F64), 0.0, u_held, torch.log(t), h0
        )
        rec[N] = legendre_reconstruct(h[-1], t_end, s).numpy()  # h: (L, N)
    return {"s": s.numpy(), "u": history_signal(s).numpy(), "rec": rec}


@figure("01_hippo_memory")
def plot_hippo_memory(Ns: Sequence[int] = (4, 16, 32)) -> Figure:
    """The input history and what N numbers of HiPPO-LegS state remember of it."""
    d = hippo_memory(Ns)
    fig, ax = plt.subplots(figsize=(9, 3.6), layout="constrained")
    for N, r in d["rec"].items():  # the reconstructions beneath, the input on top: it stays visible
        ax.plot(d["s"], r, lw=1.4, zorder=2, label=f"rebuilt from the state, N = {N}")
    ax.plot(d["s"], d["u"], color="k", ls="--", lw=2.2, zorder=3, label="input history u(s)")
    ax.set(
        xlabel="time s (the state is read at t = 1)",
        ylabel="u(s)",
        title="HiPPO-LegS: N numbers of state remember the whole history on [0, t]",
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return fig


def hippo_error_vs_N(Ns: Sequence[int] = (2, 4, 6, 8, 12, 16, 20, 24, 32), L: int = 3000) -> dict:
    """RMS reconstruction error over [0, 1] of ``history_signal`` from the state of size N: ``rms_error``
    for HiPPO-LegS, ``rms_error_s4d_real`` for its diagonal (S4D-Real) read back the same way."""

    def rms(d: dict) -> np.ndarray:
        return np.array([float(np.sqrt(np.mean((d["rec"][N] - d["u"]) ** 2))) for N in Ns])

    return {
        "N": np.array(Ns),
        "rms_error": rms(hippo_memory(Ns, 1.0, L)),
        "rms_error_s4d_real": rms(s4d_real_memory(Ns, 1.0, L)),
    }


@figure("01_hippo_error_vs_N")
def plot_hippo_error(d: dict | None = None) -> Figure:
    """Reconstruction error against the state size N (log scale); ``d`` from ``hippo_error_vs_N``."""
    d = hippo_error_vs_N() if d is None else d
    fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
    ax.semilogy(d["N"], d["rms_error"], "o-", label="HiPPO-LegS")
    if "rms_error_s4d_real" in d:
        ax.semilogy(d["N"], d["rms_error_s4d_real"], "s--", color="C3", label="S4D-Real (its diagonal)")
    ax.set(
        xlabel="state size N",
        ylabel="RMS error of the rebuilt history",
        title="more state, better memory (LegS only)",
    )
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(True, which="both", alpha=0.3)
    return fig
