"""Figures and widgets of notebook 03 (recurrence and convolution): the S4D-Real kernel family, how Δ
stretches the kernel, the cost of each mode against L, and what a fixed kernel cannot do.

Every plot is drawn from a pure function that returns the plotted data (``kernel_update``,
``kernel_family``, ``delta_stretch``, ``time_modes``, ``copying_fit``), so that pytest can check the numbers
the reader sees. The SSM throughout is S4D-Real (Mamba §3.6): A_n = -(n+1), B = 1, discretized with ZOH.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from minimamba import env
from minimamba.discretize import zoh
from minimamba.lti import conv_matrix, kernel_effective_length, lti_convolution, lti_recurrent, ssm_kernel
from minimamba.ssm import impulse_response, s4d_real
from minimamba.viz import figure, show, with_static

__all__ = [
    "copying_examples",
    "copying_fit",
    "delta_stretch",
    "kernel_family",
    "kernel_update",
    "kernel_widget",
    "plot_copying",
    "plot_cost",
    "plot_delta_stretch",
    "plot_kernel",
    "plot_kernel_family",
    "s4d_system",
    "time_modes",
]

_F64 = torch.float64


def _check_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_delta(delta) -> None:
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
        raise TypeError(f"delta must be a positive float, got {type(delta).__name__}")
    if not 0 < delta < math.inf:
        raise ValueError(f"delta must be positive and finite, got {delta}")


def s4d_system(N: int, C: str = "ones", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """S4D-Real in float64: A (N,) = -(1, 2, ..., N), B (N,) = 1, and C (N,) all ones (``C="ones"``) or
    standard normal drawn with ``seed`` (``C="random"``)."""
    _check_int("N", N)
    if C not in ("ones", "random"):
        raise ValueError(f"C must be 'ones' or 'random', got {C!r}")
    A = s4d_real(N)
    B = torch.ones(N, dtype=_F64)
    if C == "ones":
        return A, B, torch.ones(N, dtype=_F64)
    g = torch.Generator().manual_seed(seed)
    return A, B, torch.randn(N, generator=g, dtype=_F64)


# ------------------------------------------------------------------------------------------------------
# One kernel, and the continuous impulse response it samples (the widget).


def kernel_update(delta: float = 0.1, N: int = 16, L: int = 64, C: str = "ones") -> dict:
    """The ZOH kernel of S4D-Real and the impulse response it comes from.

    Returns ``k`` (L,) step indices, ``K`` (L,) the kernel C A_bar^k B_bar, ``t`` (L,) = kΔ, ``K_over_delta``
    = K/Δ (≈ h(kΔ) for small Δ), ``t_fine`` and ``impulse``: h(t) = C exp(tA) B on a fine grid over
    [0, LΔ], and ``effective_length``: the taps that hold 95% of sum |K|.
    """
    _check_delta(delta)
    _check_int("N", N)
    _check_int("L", L)
    A, B, Cv = s4d_system(N, C)
    A_bar, B_bar = zoh(A, B, delta)
    K = ssm_kernel(A_bar, B_bar, Cv, L)
    t_fine = torch.linspace(0, L * delta, 400, dtype=_F64)
    return {
        "k": np.arange(L),
        "K": K.numpy(),
        "t": np.arange(L) * delta,
        "K_over_delta": K.numpy() / delta,
        "t_fine": t_fine.numpy(),
        "impulse": impulse_response(A, B, Cv, t_fine).numpy(),
        "effective_length": kernel_effective_length(K),
    }


def plot_kernel(delta: float = 0.1, N: int = 16, L: int = 64, C: str = "ones") -> Figure:
    """Left: K_k against the step k. Right: K_k/Δ at t = kΔ on top of the impulse response h(t).

    Drawn cheaply (fixed margins, no mathtext, no stem containers): the widget redraws it on every slider
    step, and rendering dominates the time a reader waits.
    """
    d = kernel_update(delta, N, L, C)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.4))
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.15, top=0.9, wspace=0.2)
    ax0.vlines(d["k"], 0, d["K"], color="C0", lw=1)
    ax0.plot(d["k"], d["K"], "o", ms=3, color="C0")
    ax0.axhline(0, color="0.7", lw=0.8)
    ax0.axvline(
        d["effective_length"], color="C3", ls="--", label=f"95% of Σ|K| by k = {d['effective_length']}"
    )
    ax0.set(xlabel="step k", ylabel="Kₖ = C Āᵏ B̄", title=f"kernel, Δ = {delta:.3g}, N = {N}")
    ax0.legend(loc="upper right")
    ax1.plot(d["t_fine"], d["impulse"], color="0.3", label="h(t) = C exp(tA) B (continuous)")
    ax1.plot(d["t"], d["K_over_delta"], "o", ms=3, color="C0", label="Kₖ / Δ at t = kΔ")
    ax1.set(xlabel="time t", ylabel="response", title="the kernel samples the impulse response")
    ax1.legend(loc="upper right")
    return fig


def kernel_widget() -> widgets.interactive:
    """Sliders for Δ, N and C over :func:`plot_kernel` (L = 64 steps).

    Δ is a linear slider (a log slider's handle reports the exponent, not the value) in steps of 0.02.
    """
    w = widgets.interactive(
        lambda delta, N, C: show(plot_kernel(delta, N, 64, C)),
        delta=widgets.FloatSlider(
            value=0.1, min=0.02, max=1.0, step=0.02, readout_format=".2f", description="Δ"
        ),
        N=widgets.IntSlider(value=16, min=1, max=64, description="N"),
        C=widgets.Dropdown(options=["ones", "random"], value="ones", description="C"),
    )
    return with_static(w, lambda: plot_kernel(w.kwargs["delta"], w.kwargs["N"], 64, w.kwargs["C"]))


# ------------------------------------------------------------------------------------------------------
# The S4D-Real family: one exponential per state, and their mixtures.


def kernel_family(Ns: Sequence[int] = (1, 4, 16, 64), delta: float = 0.05, L: int = 200) -> dict:
    """Kernels of S4D-Real with ZOH at step Δ.

    Returns ``k`` (L,), ``basis`` (8, L): the per-state kernels B_bar_n A_bar_n^k for n = 0..7 (C = e_n),
    and ``K``: {N: (L,) kernel with C random (seed N), divided by its largest |K_k|} for each N in Ns.
    """
    _check_delta(delta)
    _check_int("L", L)
    for N in Ns:
        _check_int("N in Ns", N)
    A, B, _ = s4d_system(8)
    A_bar, B_bar = zoh(A, B, delta)
    basis = np.stack([ssm_kernel(A_bar[n : n + 1], B_bar[n : n + 1], B[:1], L).numpy() for n in range(8)])
    K = {}
    for N in Ns:
        A, B, C = s4d_system(N, "random", seed=N)
        KN = ssm_kernel(*zoh(A, B, delta), C, L)
        K[N] = (KN / KN.abs().max()).numpy()
    return {"k": np.arange(L), "basis": basis, "K": K}


@figure("03_s4d_kernel_family")
def plot_kernel_family(Ns: Sequence[int] = (1, 4, 16, 64), delta: float = 0.05, L: int = 200) -> Figure:
    """Left: the basis kernel of each state n decays as exp(-(n+1)Δk). Right: mixtures with random C."""
    d = kernel_family(Ns, delta, L)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    for n, row in enumerate(d["basis"]):
        ax0.semilogx(d["k"] + 1, row, color=plt.get_cmap("viridis")(n / 8), label=f"n = {n}")
    ax0.set(
        xlabel="step k + 1 (log scale)",
        ylabel="$\\bar B_n \\bar A_n^k$",
        title=f"S4D-Real basis, $A_n = -(n+1)$, Δ = {delta}",
    )
    ax0.legend(ncol=2, fontsize=8)
    for N, K in d["K"].items():
        ax1.semilogx(d["k"] + 1, K, label=f"N = {N}")
    ax1.axhline(0, color="0.7", lw=0.8)
    ax1.set(
        xlabel="step k + 1 (log scale)",
        ylabel="$K_k$ / max $|K|$",
        title="kernels $K_k = \\sum_n C_n \\bar B_n \\bar A_n^k$, C random",
    )
    ax1.legend(fontsize=8)
    return fig


# ------------------------------------------------------------------------------------------------------
# Δ stretches the kernel.


def delta_stretch(deltas: Sequence[float] = (0.01, 0.02, 0.05, 0.1), N: int = 16, L: int = 1024) -> dict:
    """S4D-Real kernels (C = 1) for several Δ, and their 95% effective lengths in steps.

    Returns ``k`` (L,), ``K``: {Δ: (L,)}, ``length``: {Δ: int}. For small Δ, K_k ≈ Δ·h(kΔ), so the length
    in steps scales like 1/Δ (``length[Δ] * Δ`` is nearly constant: the length in time).
    """
    _check_int("N", N)
    _check_int("L", L)
    K, length = {}, {}
    for delta in deltas:
        _check_delta(delta)
        A, B, C = s4d_system(N)
        K[delta] = ssm_kernel(*zoh(A, B, delta), C, L)
        length[delta] = kernel_effective_length(K[delta])
        K[delta] = K[delta].numpy()
    return {"k": np.arange(L), "K": K, "length": length}


@figure("03_delta_stretch")
def plot_delta_stretch(
    deltas: Sequence[float] = (0.01, 0.02, 0.05, 0.1, 0.2), N: int = 16, L: int = 1024
) -> Figure:
    """Left: kernels for several Δ (smaller Δ, longer memory). Right: effective length against Δ, log-log."""
    d = delta_stretch(deltas, N, L)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    for delta, K in d["K"].items():
        ax0.plot(d["k"][:400], K[:400] / K[0], label=f"Δ = {delta}")
    ax0.set(xlabel="step k", ylabel="$K_k / K_0$", title=f"S4D-Real kernel (N = {N}, C = 1) for several Δ")
    ax0.legend()
    ds = np.array(list(d["length"]))
    ls = np.array(list(d["length"].values()))
    ax1.loglog(ds, ls, "o-", label="95% effective length")
    ax1.loglog(ds, ls[0] * ds[0] / ds, "--", color="0.5", label="∝ 1/Δ")
    ax1.set(xlabel="step Δ", ylabel="effective length (steps)", title="memory in steps ∝ 1/Δ")
    ax1.legend()
    return fig


# ------------------------------------------------------------------------------------------------------
# Cost against L.


def time_modes(
    Ls: Sequence[int],
    N: int = 16,
    batch: int = 8,
    repeat: int = 5,
    max_direct: int = 1 << 14,
    max_recurrent: int = 1 << 16,
) -> dict:
    """Best-of-``repeat`` wall time (seconds) of each mode on u (batch, L), float32, one CPU thread (a single
    run once one takes over 0.1 s).

    Returns {"L": [...], "recurrent": [...], "direct": [...], "fft": [...]}, with NaN where L exceeds
    ``max_direct`` / ``max_recurrent``. The convolution modes include computing the kernel. One thread, so
    that the curves show the algorithms and not how many cores the machine lends to each.
    """
    _check_int("N", N)
    _check_int("batch", batch)
    _check_int("repeat", repeat)
    for L in Ls:
        _check_int("L in Ls", L)
    A, B, C = s4d_system(N, "random")
    A_bar, B_bar = (x.float() for x in zoh(A, B, 0.01))
    C = C.float()
    g = torch.Generator().manual_seed(0)
    runs = {
        "recurrent": lambda u: lti_recurrent(A_bar, B_bar, C, u),
        "direct": lambda u: lti_convolution(ssm_kernel(A_bar, B_bar, C, u.shape[-1]), u, fft=False),
        "fft": lambda u: lti_convolution(ssm_kernel(A_bar, B_bar, C, u.shape[-1]), u, fft=True),
    }
    limit = {"recurrent": max_recurrent, "direct": max_direct, "fft": math.inf}
    out: dict[str, list] = {"L": list(Ls), **{m: [] for m in runs}}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for L in Ls:
            u = torch.randn(batch, L, generator=g, dtype=torch.float32)
            for mode, fn in runs.items():
                if L > limit[mode]:
                    out[mode].append(math.nan)
                    continue
                best = math.inf
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    fn(u)
                    best = min(best, time.perf_counter() - t0)
                    if best > 0.1:  # long runs vary little: one is enough
                        break
                out[mode].append(best)
    finally:
        torch.set_num_threads(threads)
    return out


def plot_cost(times: dict) -> Figure:
    """Wall time against L for each mode, log-log, with ∝ L and ∝ L² guides."""
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    Ls = np.array(times["L"], dtype=float)
    labels = {
        "recurrent": "recurrence (Eq. 2), L steps",
        "direct": "direct sum (Eq. 3), O(L²)",
        "fft": "FFT (Eq. 3), O(L log L)",
    }
    for mode, label in labels.items():
        ax.loglog(Ls, times[mode], "o-", label=label)
    t_rec = np.array(times["recurrent"], dtype=float)
    ok = np.flatnonzero(np.isfinite(t_rec))
    if len(ok):
        i = ok[-1]
        ax.loglog(Ls[: i + 1], t_rec[i] * Ls[: i + 1] / Ls[i], ":", color="0.5", label="∝ L")
    t_dir = np.array(times["direct"], dtype=float)
    ok = np.flatnonzero(np.isfinite(t_dir))
    if len(ok):
        i = ok[-1]
        ax.loglog(Ls[: i + 1], t_dir[i] * (Ls[: i + 1] / Ls[i]) ** 2, "--", color="0.5", label="∝ L²")
    ax.set(
        xlabel="sequence length L",
        ylabel="wall time (s), one CPU thread",
        title="cost of each mode against L",
    )
    ax.legend(fontsize=8)
    return fig


@figure("03_cost_vs_L")
def plot_cost_measured() -> Figure:
    """Measure on this machine (smaller L when FAST) and plot."""
    top = 13 if env.FAST else 16
    return plot_cost(time_modes([1 << p for p in range(4, top + 1)]))


# ------------------------------------------------------------------------------------------------------
# What a fixed kernel cannot do: copying vs selective copying, with scalar "tokens".


def copying_examples(n: int, L: int = 32, M: int = 4, selective: bool = True, seed: int = 0) -> dict:
    """``n`` sequences of length L: M random values ("tokens") in the first L - M positions, zeros
    elsewhere; the target holds the same M values, in order, in the last M positions.

    Plain copying (``selective=False``): the tokens always sit at positions 0..M-1. Selective copying: at
    random positions (sorted), different in each sequence. Returns ``u`` and ``y`` (n, L) float64 and
    ``positions`` (n, M).
    """
    _check_int("n", n)
    _check_int("M", M)
    _check_int("L", L, minimum=2 * M)
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(n, M, generator=g, dtype=_F64)
    if selective:
        positions = torch.stack([torch.randperm(L - M, generator=g)[:M].sort().values for _ in range(n)])
    else:
        positions = torch.arange(M).expand(n, M)
    u = torch.zeros(n, L, dtype=_F64)
    u.scatter_(1, positions, values)
    y = torch.zeros(n, L, dtype=_F64)
    y[:, L - M :] = values
    return {"u": u, "y": y, "positions": positions}


def copying_fit(
    n_train: int = 400, n_test: int = 100, L: int = 32, M: int = 4, selective: bool = True
) -> dict:
    """The best single kernel for the task, by least squares over ``n_train`` examples (only the answer
    positions are scored), then scored on ``n_test`` fresh ones.

    y_n = conv_matrix(u_n) @ K is linear in K, so stacking the answer rows of every example gives one
    least-squares problem. Returns ``K`` (L,), ``rel_error`` on the test set: ‖ŷ - y‖ / ‖y‖ over the
    answer positions, and ``u``, ``y``, ``y_hat`` of the first test example.
    """
    train = copying_examples(n_train, L, M, selective, seed=1)
    test = copying_examples(n_test, L, M, selective, seed=2)
    rows = torch.cat([conv_matrix(u)[L - M :] for u in train["u"]])  # (n_train·M, L)
    # gelsd (SVD): the minimum-norm solution; taps no example ever uses stay 0 (gelsy returned all zeros here)
    K = torch.linalg.lstsq(rows, train["y"][:, L - M :].reshape(-1, 1), driver="gelsd").solution[:, 0]  # (L,)
    y_hat = lti_convolution(K, test["u"], fft=False)
    err = (y_hat - test["y"])[:, L - M :].norm() / test["y"][:, L - M :].norm()
    return {"K": K, "rel_error": err.item(), "u": test["u"][0], "y": test["y"][0], "y_hat": y_hat[0]}


@figure("03_fixed_kernel_copying")
def plot_copying(L: int = 32, M: int = 4) -> Figure:
    """One test example of each task: input, target, and the output of the best fixed kernel."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained", sharey=True)
    for ax, selective in zip(axes, (False, True)):
        d = copying_fit(L=L, M=M, selective=selective)
        k = np.arange(L)
        ax.bar(k - 0.2, d["u"].numpy(), width=0.4, color="0.6", label="input u")
        ax.bar(k + 0.2, d["y"].numpy(), width=0.4, color="C2", label="target y")
        ax.plot(k, d["y_hat"].numpy(), "o", color="C3", ms=4, label="best fixed kernel K * u")
        name = "selective copying (random positions)" if selective else "copying (fixed positions)"
        ax.set(xlabel="position", ylabel="value", title=f"{name}: test error {d['rel_error']:.0%}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=9)
    return fig
