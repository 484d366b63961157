"""Figures and widgets of notebook 04 (selection): why one fixed kernel cannot do selective copying,
Theorem 1 (the selective SSM with N = 1 is a gated RNN), and Δ as a gate.

Every plot is drawn from a pure function that returns the plotted data (``kernel_demands``,
``theorem1``, ``theorem1_sweep``, ``gate_update``), so that pytest can check the numbers the reader sees.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from minimamba.lti import lti_convolution
from minimamba.scan import selective_scan_ref
from minimamba.tasks import NOISE, selective_copying
from minimamba.viz import figure, show, with_static

__all__ = [
    "GATE_SLIDER_STYLE",
    "GATE_SLIDER_WIDTH",
    "GATE_TOKENS",
    "gate_update",
    "gate_widget",
    "kernel_demands",
    "plot_fixed_kernel",
    "plot_gate",
    "plot_theorem1",
    "theorem1",
    "theorem1_sweep",
]

_F64 = torch.float64


def _check_tokens(name: str, t, k) -> None:
    if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.dtype != torch.long:
        got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be an int64 (batch, L + k) tensor of tokens, got {got}")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k < t.shape[1]:
        raise ValueError(f"k must be an int in [1, {t.shape[1] - 1}], got {k!r}")


# ------------------------------------------------------------------------------------------------------
# Selective copying with one fixed kernel.


def kernel_demands(inputs: torch.Tensor, k: int) -> dict:
    """What a fixed causal kernel K must satisfy to solve each selective-copying sequence, for *every*
    value of its data tokens.

    The output at answer position L + j is Σ_s K_{L+j-s} u_s, linear in the token values u. For it to be
    the j-th data token whatever the values, K_{L+j-p_i} must be 1 for i = j and 0 for i != j, where p_i is
    the position of the i-th data token. Each sequence makes k² such demands, each on one tap; the best
    kernel (least squares over all sequences) takes the mean demand per tap.

    Args:
        inputs: (batch, L + k) int64 tokens from ``minimamba.tasks.selective_copying``. k: data tokens.
    Returns:
        ``K`` (L + k,) float64 the least-squares kernel, ``residual`` the sum of squared unmet demands
        (0 only when no tap is asked for two different values), ``conflicts`` a sorted list of the lags
        asked to be both 0 and 1, and ``positions`` (batch, k) the data positions.
    """
    _check_tokens("inputs", inputs, k)
    T = inputs.shape[1]
    L = T - k
    data = inputs[:, :L] != NOISE  # (batch, L)
    if not bool((data.sum(dim=1) == k).all()):
        raise ValueError(
            f"every sequence must hold exactly k = {k} data tokens in its first L = {L} positions"
        )
    positions = torch.stack([row.nonzero()[:, 0] for row in data])  # (batch, k)
    j = torch.arange(k)
    lag = L + j[None, None, :] - positions[:, :, None]  # (batch, i, j): the tap K_{L+j-p_i}
    want = (j[:, None] == j[None, :]).to(_F64).expand_as(lag)  # (batch, i, j): δ_ij
    total = torch.zeros(T, dtype=_F64).index_add_(0, lag.reshape(-1), want.reshape(-1))
    count = torch.zeros(T, dtype=_F64).index_add_(0, lag.reshape(-1), torch.ones(lag.numel(), dtype=_F64))
    K = torch.where(count > 0, total / count.clamp_min(1), 0.0)
    residual = ((want - K[lag]) ** 2).sum().item()
    conflicts = sorted(int(x) for x in torch.nonzero((total > 0) & (total < count))[:, 0])
    return {"K": K, "residual": residual, "conflicts": conflicts, "positions": positions}


def fixed_kernel_outputs(K: torch.Tensor, inputs: torch.Tensor, k: int) -> dict:
    """Run the kernel ``K`` over token values (noise = 0, data token = its id) by ``lti_convolution``.

    Returns ``u`` (batch, L + k) the values, ``y`` the kernel's outputs, ``answers`` (batch, k) its outputs
    at the k answer positions and ``targets`` (batch, k) the data tokens they should equal.
    """
    _check_tokens("inputs", inputs, k)
    u = torch.where(inputs[:, :-k] != NOISE, inputs[:, :-k], 0).to(_F64)
    u = torch.cat([u, torch.zeros(inputs.shape[0], k, dtype=_F64)], dim=1)  # markers carry no value
    y = lti_convolution(K.to(_F64), u, fft=False)  # (batch, L + k)
    targets = torch.stack([row[row != NOISE] for row in inputs[:, :-k]])  # (batch, k)
    return {"u": u, "y": y, "answers": y[:, -k:], "targets": targets.to(_F64)}


@figure("04_fixed_kernel_fails")
def plot_fixed_kernel(L: int = 16, k: int = 3, seed: int = 3) -> Figure:
    """Two selective-copying sequences; the kernel that solves the first, run on both."""
    inputs = selective_copying(2, L, k=k, generator=torch.Generator().manual_seed(seed)).inputs
    K = kernel_demands(inputs[:1], k)["K"]
    out = fixed_kernel_outputs(K, inputs, k)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5), layout="constrained")
    axes[0].stem(np.arange(L + k), K.numpy(), basefmt=" ")
    axes[0].set(xlabel="lag", ylabel="$K_{lag}$", title="the kernel that solves sequence A")
    pos = np.arange(L + k)
    for ax, row, name in zip(axes[1:], (0, 1), ("A", "B")):
        ax.bar(pos, out["u"][row].numpy(), color="0.6", label="input token values")
        ans = pos[-k:]
        ax.plot(ans, out["targets"][row].numpy(), "s", color="C2", ms=8, mfc="none", label="target")
        ax.plot(ans, out["answers"][row].numpy(), "o", color="C3", ms=5, label="K * u")
        ax.axvline(L - 0.5, color="k", lw=0.8, ls=":")
        top = max(
            out["u"][row].max().item(), out["targets"][row].max().item(), out["answers"][row].max().item()
        )
        ax.set_ylim(-0.06 * top, 1.08 * top)  # room for the markers at 0 and at the tallest token
        ax.set(
            xlabel="position (answers after the dotted line)", ylabel="token value", title=f"sequence {name}"
        )
    # one legend under the figure: inside, it would cover a tall token wherever the sequence puts one
    fig.legend(*axes[1].get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8)
    return fig


# ------------------------------------------------------------------------------------------------------
# Theorem 1: N = 1, A = -1, B = 1, Δ = softplus(w x + b)  =>  h_t = (1 - g_t) h_{t-1} + g_t x_t.


def _check_x(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 1 or not x.is_floating_point() or x.numel() == 0:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a non-empty 1-D floating-point tensor (L,), got {got}")
    return x.to(_F64)


def _scan_n1(x: torch.Tensor, delta: torch.Tensor, B_bar: torch.Tensor) -> torch.Tensor:
    """h for N = 1, A = -1, C = 1 with a given B_bar_t, through selective_scan_ref (which multiplies B by Δ:
    pass B = B_bar / Δ)."""
    L = x.shape[0]
    A = -torch.ones(1, 1, dtype=_F64)
    B = (B_bar / delta).view(1, 1, L)
    C = torch.ones(1, 1, L, dtype=_F64)
    return selective_scan_ref(x.view(1, 1, L), delta.view(1, 1, L), A, B, C)[0, 0]


def theorem1(x: torch.Tensor, w: float = 1.0, b: float = 0.0) -> dict:
    """The selective SSM of Theorem 1 three ways, in float64, for the scalar input x: (L,).

    z_t = w x_t + b, Δ_t = softplus(z_t), g_t = σ(z_t).
    ``h_rnn``: the gated RNN h_t = (1 - g_t) h_{t-1} + g_t x_t (a loop). ``h_zoh``: the selective scan
    with ZOH for B (B_bar = (1 - exp(-Δ)) / 1, the theorem's discretization). ``h_mamba``: the scan with
    mamba_ssm's Euler B_bar = Δ. Also ``A_bar`` = exp(-Δ), ``B_bar_zoh``, ``rel_error_mamba``
    = ‖h_mamba - h_rnn‖ / ‖h_rnn‖.
    """
    x = _check_x(x)
    z = w * x + b
    delta, g = F.softplus(z), torch.sigmoid(z)
    h, hs = torch.zeros((), dtype=_F64), []
    for t in range(x.shape[0]):
        h = (1 - g[t]) * h + g[t] * x[t]
        hs.append(h)
    h_rnn = torch.stack(hs)
    B_bar_zoh = -torch.expm1(-delta)  # ZOH with A = -1, B = 1: (ΔA)^{-1}(exp(ΔA) - 1)ΔB = 1 - exp(-Δ)
    h_zoh = _scan_n1(x, delta, B_bar_zoh)
    h_mamba = _scan_n1(x, delta, delta)
    return {
        "z": z,
        "delta": delta,
        "g": g,
        "A_bar": torch.exp(-delta),
        "B_bar_zoh": B_bar_zoh,
        "h_rnn": h_rnn,
        "h_zoh": h_zoh,
        "h_mamba": h_mamba,
        "rel_error_mamba": ((h_mamba - h_rnn).norm() / h_rnn.norm()).item(),
    }


def theorem1_sweep(biases: Sequence[float], L: int = 200, w: float = 1.0, seed: int = 0) -> dict:
    """How far mamba's Euler B_bar = Δ is from the gated RNN, as the bias b moves Δ up and down.

    Returns ``bias``, ``mean_delta`` (mean Δ over the sequence) and ``rel_error`` (‖h_mamba - h_rnn‖ /
    ‖h_rnn‖), one entry per bias, for x ~ N(0, 1) of length L drawn with ``seed``.
    """
    x = torch.randn(L, generator=torch.Generator().manual_seed(seed), dtype=_F64)
    rows = [theorem1(x, w, float(b)) for b in biases]
    return {
        "bias": np.asarray(biases, dtype=float),
        "mean_delta": np.array([r["delta"].mean().item() for r in rows]),
        "rel_error": np.array([r["rel_error_mamba"] for r in rows]),
    }


@figure("04_theorem1")
def plot_theorem1(biases: Sequence[float] = tuple(np.linspace(-8, 4, 25))) -> Figure:
    """Left: one sequence, the gated RNN and both scans. Right: the Euler-B error against the mean Δ."""
    x = torch.randn(40, generator=torch.Generator().manual_seed(1), dtype=_F64)
    d = theorem1(x, 1.0, 0.0)
    s = theorem1_sweep(biases)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.4), layout="constrained")
    t = np.arange(40)
    ax0.plot(t, x.numpy(), ".", color="0.6", label="input $x_t$")
    ax0.plot(t, d["h_rnn"].numpy(), "-", color="C0", lw=3, alpha=0.5, label="gated RNN")
    ax0.plot(t, d["h_zoh"].numpy(), "--", color="C2", label="selective SSM, ZOH $\\bar B$")
    ax0.plot(t, d["h_mamba"].numpy(), ":", color="C3", label="selective SSM, Euler $\\bar B = \\Delta$")
    ax0.set(xlabel="step $t$", ylabel="state $h_t$", title="Theorem 1 (b = 0)")
    ax0.legend(fontsize=7)
    ax1.loglog(s["mean_delta"], s["rel_error"], "o-")
    ax1.set(
        xlabel="mean $\\Delta$ over the sequence",
        ylabel=r"$\|h_{\mathrm{Euler}} - h_{\mathrm{RNN}}\| \,/\, \|h_{\mathrm{RNN}}\|$",
        title=r"Euler $\bar B$: error grows with $\Delta$",
    )
    return fig


# ------------------------------------------------------------------------------------------------------
# Δ as a gate: a toy sequence, one Δ per token.

#: the toy sequence of the gate widget: 8 scalar "tokens"
GATE_TOKENS = (1.0, -2.0, 0.5, 3.0, -1.0, 2.0, -0.5, 1.5)


def gate_update(x: Sequence[float], log10_delta: Sequence[float]) -> dict:
    """The state of the N = 1, A = -1, ZOH selective SSM when token t gets the step Δ_t = 10**log10_delta[t].

    h_t = exp(-Δ_t) h_{t-1} + (1 - exp(-Δ_t)) x_t: large Δ_t resets h to x_t (focus on this token), small
    Δ_t keeps h (ignore this token). Returns ``x``, ``delta``, ``g`` = 1 - exp(-Δ) (the gate) and ``h``,
    all (L,) numpy arrays.
    """
    x_t = _check_x(torch.as_tensor(np.asarray(x, dtype=float)))
    ld = np.asarray(log10_delta, dtype=float)
    if ld.shape != (x_t.shape[0],) or not np.isfinite(ld).all():
        raise ValueError(
            f"log10_delta must hold {x_t.shape[0]} finite numbers (one per token), got {ld.shape}"
        )
    delta = torch.as_tensor(10.0**ld, dtype=_F64)
    g = -torch.expm1(-delta)
    h = _scan_n1(x_t, delta, g)
    return {"x": x_t.numpy(), "delta": delta.numpy(), "g": g.numpy(), "h": h.numpy()}


def plot_gate(x: Sequence[float] = GATE_TOKENS, log10_delta: Sequence[float] | None = None) -> Figure:
    """Top: the tokens and Δ per token. Bottom: the gate g_t and the state h_t."""
    if log10_delta is None:
        log10_delta = [1.0, -2.0, -2.0, 1.0, -2.0, -2.0, -2.0, 0.0]
    d = gate_update(x, log10_delta)
    t = np.arange(len(d["x"]))
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(8, 4.6), layout="constrained", sharex=True)
    ax0.bar(t, d["x"], color="0.6", label="token $x_t$")
    ax0.set_ylabel("token value")
    axd = ax0.twinx()
    axd.semilogy(t, d["delta"], "D", color="C1", label="$\\Delta_t$")
    axd.set_ylim(5e-4, 20)
    axd.set_ylabel("$\\Delta_t$ (log scale)", color="C1")
    ax0.set_title("large $\\Delta$: take the token; small $\\Delta$: ignore it")
    ax1.bar(t, d["g"], color="C1", alpha=0.3, label="gate $g_t = 1 - e^{-\\Delta_t}$")
    ax1.step(t, d["h"], where="mid", color="C0", lw=2, label="state $h_t$ (= output, C = 1)")
    ax1.plot(t, d["x"], "_", color="k", ms=14, label="token $x_t$")
    ax1.set(xlabel="token $t$", ylabel="value")
    ax1.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


figure("04_delta_gate")(plot_gate)


#: one description width and one track width for every slider of the gate widget, so that the tracks line up
GATE_SLIDER_STYLE = {"description_width": "9em"}
GATE_SLIDER_WIDTH = "98%"


def gate_widget() -> widgets.VBox:
    """One slider per token of :data:`GATE_TOKENS` for log10 Δ_t, over :func:`plot_gate`."""
    default = [1.0, -2.0, -2.0, 1.0, -2.0, -2.0, -2.0, 0.0]
    sliders = {
        f"t{i}": widgets.FloatSlider(
            value=v,
            min=-3.0,
            max=1.0,
            step=0.25,
            description=rf"$\log_{{10}} \Delta_{i}$ ($x_{i}$ = {x:g})",
            readout_format=".2f",
            style=GATE_SLIDER_STYLE,
            layout=widgets.Layout(width=GATE_SLIDER_WIDTH),
        )
        for i, (v, x) in enumerate(zip(default, GATE_TOKENS))
    }

    def draw(**kw) -> Figure:
        return plot_gate(GATE_TOKENS, [kw[f"t{i}"] for i in range(len(GATE_TOKENS))])

    out = widgets.interactive_output(lambda **kw: show(draw(**kw)), sliders)
    grid = widgets.GridBox(
        list(sliders.values()), layout=widgets.Layout(grid_template_columns="repeat(2, 48%)")
    )
    return with_static(
        widgets.VBox([grid, out]), lambda: draw(**{name: s.value for name, s in sliders.items()})
    )
