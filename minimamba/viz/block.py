"""Figures and widgets of notebook 07 (the Mamba block): the block drawn, Δ at initialization (and the
inverse-softplus bug), how exp(ΔA_n) decays per state, and where the parameters of the paper's models go.

Data functions (``dt_init_update``, ``decay_update``, ``param_breakdown``) are pure and tested; the
``plot_*`` functions draw them; ``dt_init_widget`` wires sliders to ``plot_dt_init``.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from minimamba.block import inverse_softplus, sample_dt
from minimamba.config import MambaConfig
from minimamba.viz import figure, show, with_static

__all__ = [
    "PAPER_SIZES",
    "decay_update",
    "dt_init_update",
    "dt_init_widget",
    "param_breakdown",
    "plot_block_diagram",
    "plot_decay",
    "plot_dt_init",
    "plot_param_breakdown",
]

#: The pretrained sizes (Table 3 / the state-spaces/mamba-* config.json): name -> (d_model, n_layer)
PAPER_SIZES = {
    "130M": (768, 24),
    "370M": (1024, 48),
    "790M": (1536, 48),
    "1.4B": (2048, 48),
    "2.8B": (2560, 64),
}


# ------------------------------------------------------------------------------------------------------
# The block, drawn.

_BOXES = {  # name: (x, y, label, shape text, colour)
    "in": (0.0, 1.0, "hidden", "(B, L, D)", "#eeeeee"),
    "in_proj": (1.75, 1.0, "in_proj", "D → 2·E·D", "#cfe2f3"),
    "conv": (3.55, 2.0, "conv1d\n(causal)", "(B, E·D, L)", "#d9ead3"),
    "silu_x": (5.2, 2.0, "SiLU", "", "#fff2cc"),
    "ssm": (8.75, 2.0, "selective\nscan", "A, D, Δ, B, C", "#f4cccc"),
    "x_proj": (7.0, 3.25, "x_proj", "→ Δ, B, C   (Δ: dt_proj, then softplus)", "#cfe2f3"),
    "silu_z": (5.2, 0.0, "SiLU", "z: (B, E·D, L)", "#fff2cc"),
    "gate": (10.3, 1.0, "×", "", "#ead1dc"),
    "out_proj": (11.75, 1.0, "out_proj", "E·D → D", "#cfe2f3"),
    "out": (13.45, 1.0, "output", "(B, L, D)", "#eeeeee"),
}
_WIDTH = {"gate": 0.6, "ssm": 1.5}  # box widths other than the default
_SHAPE_RIGHT = {"x_proj"}  # boxes whose shape text sits to their right (arrows pass below them)
_ARROWS = [
    ("in", "in_proj"),
    ("in_proj", "conv"),
    ("in_proj", "silu_z"),
    ("conv", "silu_x"),
    ("silu_x", "ssm"),
    ("silu_x", "x_proj"),
    ("x_proj", "ssm"),
    ("ssm", "gate"),
    ("silu_z", "gate"),
    ("gate", "out_proj"),
    ("out_proj", "out"),
]


#: the width in inches at which a figure is shown about 800 px wide in a notebook (100 dpi)
NOTEBOOK_WIDTH_IN = 8.0


@figure("07_mamba_block")
def plot_block_diagram() -> Figure:
    """The Mamba block (Fig. 3 of the paper, right), left to right, with the shape after each box.

    Drawn 10 inches wide with 11.5-13 pt text, so that shown 800 px wide every label is still >= 9 pt.
    """
    fig, ax = plt.subplots(figsize=(10, 4.4), layout="constrained")
    w0, h = 1.3, 0.8
    for name, (x, y, label, shape, colour) in _BOXES.items():
        w = _WIDTH.get(name, w0)
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc=colour, ec="#444444", lw=1.2
            )
        )
        ax.text(x, y, label, ha="center", va="center", fontsize=12, weight="bold", linespacing=1.0)
        if shape and name in _SHAPE_RIGHT:
            ax.text(x + w / 2 + 0.2, y, shape, ha="left", va="center", fontsize=11.5, color="#333333")
        elif shape:
            ax.text(x, y - h / 2 - 0.12, shape, ha="center", va="top", fontsize=11.5, color="#333333")
    for a, b in _ARROWS:
        xa, ya = _BOXES[a][:2]
        xb, yb = _BOXES[b][:2]
        ax.annotate(
            "",
            xy=(xb - _WIDTH.get(b, w0) / 2, yb),
            xytext=(xa + _WIDTH.get(a, w0) / 2, ya),
            arrowprops=dict(arrowstyle="-|>", color="#444444", lw=1.2, shrinkA=2, shrinkB=2),
        )
    ax.text(2.45, 1.7, "x", fontsize=13, style="italic")
    ax.text(2.55, 0.25, "z", fontsize=13, style="italic")
    ax.set_xlim(-0.75, 14.2)
    ax.set_ylim(-0.85, 3.75)
    ax.set_axis_off()
    ax.set_title(
        "The Mamba block (D = d_model, E = expand, N = d_state, R = dt_rank, B = batch)", fontsize=12.5
    )
    return fig


# ------------------------------------------------------------------------------------------------------
# Δ at initialization.


def dt_init_update(
    dt_min: float = 1e-3, dt_max: float = 1e-1, n: int = 1536, floor: float = 1e-4, seed: int = 0
) -> dict:
    """Δ = softplus(dt_proj.bias) at init for ``n`` channels, done right and with the log-space bug.

    Right: sample dt log-uniform in [dt_min, dt_max], bias = softplus⁻¹(dt) = dt + log(1 − e^{−dt}).
    Bug: the log-space sample u = log dt is used as the first term: bias = u + log(1 − e^{−dt}) ≈ 2 log dt,
    so softplus(bias) ≈ dt². Returns ``dt`` (n,), ``dt_bug`` (n,), ``in_range`` (fraction of the right Δ
    inside [dt_min, dt_max]) and ``bug_in_range``.
    """
    if not (0 < dt_min <= dt_max):
        raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
    g = torch.Generator().manual_seed(seed)
    dt = sample_dt(n, dt_min, dt_max, floor, generator=g).double()  # (n,)
    right = torch.nn.functional.softplus(inverse_softplus(dt))  # (n,) = dt
    bug_bias = torch.log(dt) + torch.log(-torch.expm1(-dt))  # log dt where dt belongs
    wrong = torch.nn.functional.softplus(bug_bias)  # ≈ dt²
    lo, hi = max(dt_min, floor) * (1 - 1e-6), max(dt_max, floor) * (1 + 1e-6)  # fp32 sampling
    return {
        "dt": right.numpy(),
        "dt_bug": wrong.numpy(),
        "in_range": float(((right >= lo) & (right <= hi)).double().mean()),
        "bug_in_range": float(((wrong >= lo) & (wrong <= hi)).double().mean()),
        "dt_min": dt_min,
        "dt_max": dt_max,
    }


def plot_dt_init(dt_min: float = 1e-3, dt_max: float = 1e-1) -> Figure:
    """Histogram of Δ at init on a log axis: right (inside [dt_min, dt_max]) and with the dt² bug."""
    d = dt_init_update(dt_min, dt_max)
    fig, ax = plt.subplots(figsize=(8, 3.2), layout="constrained")
    lo = math.log10(min(d["dt_bug"].min(), d["dt"].min())) - 0.2
    hi = math.log10(max(d["dt"].max(), d["dt_bug"].max())) + 0.2
    bins = np.logspace(lo, hi, 60)
    ax.hist(d["dt"], bins=bins, alpha=0.7, label=f"softplus⁻¹(dt): {100 * d['in_range']:.0f}% in range")
    ax.hist(
        d["dt_bug"],
        bins=bins,
        alpha=0.7,
        label=f"log-space bug (≈ dt²): {100 * d['bug_in_range']:.0f}% in range",
    )
    for v in (dt_min, dt_max):
        ax.axvline(v, color="k", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("Δ = softplus(dt_proj.bias) at initialization")
    ax.set_ylabel("channels")
    ax.legend(loc="upper left", fontsize=9)
    return fig


@figure("07_dt_init")
def _plot_dt_init_default() -> Figure:
    return plot_dt_init()


def dt_init_widget() -> widgets.interactive:
    """Sliders (log scale) for dt_min and dt_max over :func:`plot_dt_init`.

    The sliders keep dt_min <= dt_max (``dt_init_update`` refuses the other order): move dt_min above dt_max
    and dt_max follows it up; move dt_max below dt_min and dt_min follows it down.
    """
    kw = dict(base=10, min=-4, max=0, step=0.1, style={"description_width": "4em"})
    lo = widgets.FloatLogSlider(value=1e-3, description="dt_min", **kw)
    hi = widgets.FloatLogSlider(value=1e-1, description="dt_max", **kw)

    def keep_order(change: dict) -> None:  # registered before the plot's observer, so it runs first
        if lo.value > hi.value:
            if change["owner"] is lo:
                hi.value = lo.value
            else:
                lo.value = hi.value

    lo.observe(keep_order, "value")
    hi.observe(keep_order, "value")
    w = widgets.interactive(lambda dt_min, dt_max: show(plot_dt_init(dt_min, dt_max)), dt_min=lo, dt_max=hi)
    return with_static(w, lambda: plot_dt_init(**w.kwargs))


# ------------------------------------------------------------------------------------------------------
# exp(Δ A_n): how long each state remembers.


def decay_update(delta: float = 0.01, N: int = 16, L: int = 400) -> dict:
    """With A_n = −(n+1) (S4D-real), state n forgets as exp(Δ A_n)^t. Returns ``t`` (L,), ``decay`` (N, L)
    and ``half_life`` (N,): steps until a state keeps half of an input, log 2 / (Δ (n+1))."""
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    A = -torch.arange(1, N + 1, dtype=torch.float64)  # (N,)
    t = torch.arange(L, dtype=torch.float64)  # (L,)
    decay = torch.exp(delta * A[:, None] * t[None, :])  # (N, L)
    return {"t": t.numpy(), "decay": decay.numpy(), "half_life": (math.log(2) / (delta * -A)).numpy()}


@figure("07_state_decay")
def plot_decay(delta: float = 0.01, N: int = 16, L: int = 400) -> Figure:
    d = decay_update(delta, N, L)
    fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
    cmap = plt.get_cmap("viridis")
    for n in range(N):
        ax.plot(
            d["t"],
            d["decay"][n],
            color=cmap(n / max(N - 1, 1)),
            lw=1.2,
            label=f"n = {n}" if n in (0, N - 1) else None,
        )
    ax.set_xlabel("steps since the input t")
    ax.set_ylabel(r"$\exp(\Delta A_n)^t$")
    ax.set_title(
        rf"S4D-Real $A_n = -(n+1)$, $\Delta$ = {delta:g}: state n forgets (n+1)× faster than state 0"
    )
    ax.legend()
    return fig


# ------------------------------------------------------------------------------------------------------
# Where the parameters go.


def param_breakdown(config: MambaConfig) -> dict[str, int]:
    """Parameters of ``MambaLM(config)`` by role (sums to :func:`minimamba.model.param_count`)."""
    c = config
    d, di, n, r = c.d_model, c.d_inner, c.d_state, c.dt_rank
    L = c.n_layer
    parts = {
        "embedding": c.padded_vocab_size * d,
        "in_proj": L * (2 * di * d + (2 * di if c.bias else 0)),
        "conv1d": L * (di * c.d_conv + (di if c.conv_bias else 0)),
        "x_proj + dt_proj": L * (di * (r + 2 * n) + r * di + di) if c.selective else L * (di + 2 * di * n),
        "A_log + D": L * (di * n + di),
        "out_proj": L * (di * d + (d if c.bias else 0)),
        "norms": L * d + d,
    }
    if not c.tie_embeddings:
        parts["lm_head"] = c.padded_vocab_size * d
    return parts


@figure("07_param_breakdown")
def plot_param_breakdown() -> Figure:
    """Stacked bars: the share of each role in the paper's five sizes, total on top."""
    names = list(PAPER_SIZES)
    data = [
        param_breakdown(MambaConfig(d_model=dm, n_layer=nl, vocab_size=50277))
        for dm, nl in PAPER_SIZES.values()
    ]
    totals = np.array([sum(p.values()) for p in data], dtype=float)
    fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    bottom = np.zeros(len(names))
    for key in data[0]:
        share = 100 * np.array([p[key] for p in data]) / totals
        ax.bar(names, share, bottom=bottom, label=key)
        bottom += share
    for i, t in enumerate(totals):
        ax.text(i, 101, f"{t / 1e6:.0f}M", ha="center", va="bottom", fontsize=9)
    ax.set_xlabel("model (d_model / n_layer of the released checkpoints)")
    ax.set_ylabel("share of parameters (%)")
    ax.set_ylim(0, 112)
    ax.legend(fontsize=8, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig
