"""Figures, widget and measurements of notebook 11 (earlier recurrences beside S6): step Jacobians of an LSTM
and of S6, sequential steps and CPU time against L, what linear attention and S6 keep of an old token, how many
key-value pairs a fixed state recalls, and the state sizes of real configurations.

Every plot is drawn from a pure function that returns the plotted data (``step_jacobians``,
``critical_paths``, ``forgetting_update``, ``recall_accuracy``, ``state_sizes``), so that pytest can check the
numbers the reader sees.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from minimamba.lstm import LSTMLM, LSTMConfig, lstm_param_count
from minimamba.model import MambaLM, param_count
from minimamba.recurrences import (
    critical_path,
    feature_map,
    linear_attention_parallel,
    linear_attention_recurrent,
    lstm_step_jacobian,
    s6_step_jacobian,
)
from minimamba.scan import scan_sequential, selective_scan, selective_scan_ref
from minimamba.transformer import TransformerPP, matched_pairs, tpp_param_count
from minimamba.viz import figure, show, with_static

__all__ = [
    "MEMORIES",
    "critical_paths",
    "forgetting_update",
    "forgetting_widget",
    "matched_lstm",
    "plot_critical_paths",
    "plot_forgetting",
    "plot_recall",
    "plot_step_jacobians",
    "plot_timings",
    "recall_accuracy",
    "recall_curves",
    "state_sizes",
    "step_jacobians",
    "time_forward",
]

_F64 = torch.float64


def _check_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


# ------------------------------------------------------------------------------------------------------
# Step Jacobians: the LSTM's depends on the state, S6's does not.


def step_jacobians(H: int = 4, d_inner: int = 4, N: int = 2, seed: int = 0) -> dict:
    """The Jacobian of one step with respect to the whole state, at two random states, float64.

    LSTM: an ``nn.LSTMCell(3, H)``, state (h, c), a (2H, 2H) matrix. S6: d_inner channels of N states,
    A = −(n+1), Δ and B fixed by the seed, a (d_inner·N, d_inner·N) matrix. The input x_t is the same for
    both states. Returns ``lstm`` and ``s6``: lists of the two Jacobians (numpy), and ``H``, ``d_inner``, ``N``.
    """
    for name, v in (("H", H), ("d_inner", d_inner), ("N", N)):
        _check_int(name, v)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    cell = nn.LSTMCell(3, H).double()
    x = torch.randn(3, generator=g, dtype=_F64)
    lstm = [
        lstm_step_jacobian(cell, x, *torch.randn(2, H, generator=g, dtype=_F64)).numpy() for _ in range(2)
    ]
    A = -torch.arange(1.0, N + 1, dtype=_F64).repeat(d_inner, 1)  # (d_inner, N): S4D-Real
    delta = F.softplus(torch.randn(d_inner, generator=g, dtype=_F64))  # Δ_t > 0: (d_inner,)
    u, B = torch.randn(d_inner, generator=g, dtype=_F64), torch.randn(N, generator=g, dtype=_F64)
    s6 = [
        s6_step_jacobian(torch.randn(d_inner, N, generator=g, dtype=_F64), u, delta, A, B).numpy()
        for _ in range(2)
    ]
    return {"lstm": lstm, "s6": s6, "H": H, "d_inner": d_inner, "N": N}


@figure("11_step_jacobians")
def plot_step_jacobians(seed: int = 0) -> Figure:
    """Four heat maps on one colour scale: the LSTM's step Jacobian at two states, then S6's."""
    d = step_jacobians(seed=seed)
    mats = [*d["lstm"], *d["s6"]]
    vmax = max(np.abs(m).max() for m in mats)
    titles = [
        "LSTM, state 1",
        "LSTM, state 2",
        "S6, state 1: diag(exp(ΔA))",
        "S6, state 2: the same",
    ]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4), layout="constrained")
    for ax, m, title in zip(axes, mats, titles):
        im = ax.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set(title=title, xlabel="state entry j at t − 1", ylabel="state entry i at t")
    H = d["H"]
    for ax in axes[:2]:  # (h, c) blocks
        ax.axhline(H - 0.5, color="0.3", lw=0.8)
        ax.axvline(H - 0.5, color="0.3", lw=0.8)
    fig.colorbar(im, ax=axes, shrink=0.8, label="∂(state at t)ᵢ / ∂(state at t − 1)ⱼ")
    return fig


# ------------------------------------------------------------------------------------------------------
# Sequential steps (critical path) and CPU time against L.


def _lstm_forward(lstm: nn.LSTM, x: torch.Tensor):
    return lstm(x)[0]


def critical_paths(lengths: Sequence[int] = (16, 64, 256, 1024), width: int = 4, N: int = 4) -> dict:
    """The critical path (:class:`minimamba.recurrences.CriticalPath`) of one forward over L, float64, batch 1.

    ``nn.LSTM(width, width)`` (PyTorch's own; float64 runs it op by op), the selective scan with d_inner =
    width and N states by the ``sequential``, ``chunked`` and ``blelloch`` backends, causal linear attention
    recurrent and parallel (d_k = d_v = width), and causal softmax attention (``scaled_dot_product_attention``).
    Returns ``L`` (list) and ``depth``: {name: list of depths, one per L}.
    """
    for L in lengths:
        _check_int("every L in lengths", L)
    _check_int("width", width)
    _check_int("N", N)
    torch.manual_seed(0)
    lstm = nn.LSTM(width, width, batch_first=True).double()
    A = -torch.arange(1.0, N + 1, dtype=_F64).repeat(width, 1)  # (width, N)
    depth: dict[str, list[int]] = {}

    def add(name: str, value: int) -> None:
        depth.setdefault(name, []).append(value)

    for L in lengths:
        g = torch.Generator().manual_seed(L)
        x = torch.randn(1, L, width, generator=g, dtype=_F64)  # (batch, L, width)
        u, dt = (
            torch.randn(1, width, L, generator=g, dtype=_F64),
            torch.rand(1, width, L, generator=g, dtype=_F64),
        )
        B, C = torch.randn(2, 1, N, L, generator=g, dtype=_F64)
        add("LSTM (nn.LSTM)", critical_path(_lstm_forward, lstm, x))
        add("linear attention, recurrent", critical_path(linear_attention_recurrent, x, x, x))
        add("S6 scan, sequential", critical_path(selective_scan, u, dt, A, B, C, backend="sequential"))
        add("S6 scan, chunked", critical_path(selective_scan, u, dt, A, B, C, backend="chunked"))
        add("S6 scan, Blelloch", critical_path(selective_scan, u, dt, A, B, C, backend="blelloch"))
        add("linear attention, parallel", critical_path(linear_attention_parallel, x, x, x))
        add(
            "softmax attention",
            critical_path(F.scaled_dot_product_attention, x[:, None], x[:, None], x[:, None], is_causal=True),
        )
    return {"L": list(lengths), "depth": depth}


_STYLE = {
    "LSTM (nn.LSTM)": ("C3", "o-"),
    "linear attention, recurrent": ("C1", "s--"),
    "S6 scan, sequential": ("C0", "^:"),
    "S6 scan, chunked": ("C0", "^-"),
    "S6 scan, Blelloch": ("C2", "v-"),
    "linear attention, parallel": ("C1", "s-"),
    "softmax attention": ("C4", "d-"),
}


@figure("11_critical_path")
def plot_critical_paths(d: dict | None = None) -> Figure:
    """Depth against L, log-log: ∝ L for the recurrences, ∝ √L chunked, ∝ log L Blelloch, flat for attention."""
    d = critical_paths() if d is None else d
    fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
    for name, depths in d["depth"].items():
        color, style = _STYLE.get(name, ("0.5", "o-"))
        ax.loglog(d["L"], depths, style, color=color, label=name, ms=5)
    ax.set_xticks(d["L"], [str(L) for L in d["L"]])
    ax.set(
        xlabel="sequence length L",
        ylabel="critical path (dependent operations)",
        title="Sequential steps of one forward pass (float64, measured)",
    )
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _best_time(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def time_forward(
    lengths: Sequence[int] = (256, 1024, 4096), batch: int = 4, width: int = 64, N: int = 16, repeats: int = 5
) -> dict:
    """Seconds for one forward pass on this machine (fastest of ``repeats``, fp32, no autograd): PyTorch's
    ``nn.LSTM(width, width)`` (on a CPU one fused oneDNN kernel that loops over L inside) against
    ``selective_scan(..., backend="chunked")`` with d_inner = width and N states. Returns ``L`` and ``seconds``:
    {name: list}. Timings on a shared machine are noisy; nothing should be concluded from one run."""
    for L in lengths:
        _check_int("every L in lengths", L)
    torch.manual_seed(0)
    lstm = nn.LSTM(width, width, batch_first=True)
    A = -torch.arange(1.0, N + 1).repeat(width, 1)
    seconds: dict[str, list[float]] = {"LSTM (nn.LSTM)": [], "S6 scan, chunked": []}
    with torch.no_grad():
        for L in lengths:
            x = torch.randn(batch, L, width)
            u, dt = torch.randn(batch, width, L), 0.1 * torch.rand(batch, width, L)
            B, C = torch.randn(2, batch, N, L)
            seconds["LSTM (nn.LSTM)"].append(_best_time(lambda: lstm(x), repeats))  # noqa: B023
            seconds["S6 scan, chunked"].append(
                _best_time(lambda: selective_scan(u, dt, A, B, C, backend="chunked"), repeats)  # noqa: B023
            )
    return {"L": list(lengths), "seconds": seconds, "batch": batch, "width": width, "N": N}


def plot_timings(d: dict) -> Figure:
    """CPU milliseconds against L (log-log), from :func:`time_forward`."""
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    for name, s in d["seconds"].items():
        color, style = _STYLE.get(name, ("0.5", "o-"))
        ax.loglog(d["L"], 1e3 * np.asarray(s), style, color=color, label=name)
    ax.set_xticks(d["L"], [str(L) for L in d["L"]])
    ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
    ax.set(
        xlabel="sequence length L",
        ylabel="forward time (ms, fastest of 5)",
        title=f"CPU, fp32, batch {d['batch']}, width {d['width']}, N = {d['N']}",
    )
    ax.legend(fontsize=8)
    return fig


# ------------------------------------------------------------------------------------------------------
# What an old token leaves in the state: linear attention keeps it whole, S6 decays it.


def forgetting_update(
    log10_delta: float = -1.5,
    log10_delta_reset: float = 1.0,
    reset_at: int = 120,
    L: int = 200,
    j: int = 20,
    d: int = 4,
    seed: int = 0,
) -> dict:
    """Token j's share of the state at every later step, in linear attention and in one S6 channel.

    Linear attention (φ = elu + 1, d_k = d_v = d): S_t = Σ_{s≤t} φ(k_s) v_s^T, so token j contributes
    φ(k_j) v_j^T to every S_t with t ≥ j; the normalizer z_t = Σ φ(k_s) grows without bound. S6 (one channel,
    N = d states, A_n = −(n+1), B_t random, Δ_t = 10^log10_delta except 10^log10_delta_reset at ``reset_at``):
    token j contributes ∏_{s=j+1}^{t} exp(Δ_s A) ⊙ Δ_j B_j u_j, measured as the difference of two scans
    (``scan_sequential``) with and without u_j.

    Returns ``t`` (L,), ``la`` and ``s6``: the Frobenius norm of token j's contribution (0 before j), ``z`` the
    norm of z_t, ``h`` the norm of the S6 state, and the parameters.
    """
    for name, v in (("L", L), ("d", d)):
        _check_int(name, v)
    if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < L:
        raise ValueError(f"j must be an int in [0, L) = [0, {L}), got {j!r}")
    if isinstance(reset_at, bool) or not isinstance(reset_at, int) or not 0 <= reset_at < L:
        raise ValueError(f"reset_at must be an int in [0, L) = [0, {L}), got {reset_at!r}")
    g = torch.Generator().manual_seed(seed)
    k, v = torch.randn(2, L, d, generator=g, dtype=_F64)  # keys and values: (L, d)
    fk = feature_map(k)  # (L, d), > 0
    S = torch.cumsum(fk[:, :, None] * v[:, None, :], dim=0)  # S_t: (L, d, d)
    S_without = S - (torch.arange(L) >= j)[:, None, None] * (
        fk[j][:, None] * v[j][None, :]
    )  # token j removed
    la = (S - S_without).flatten(1).norm(dim=1)
    z = torch.cumsum(fk, dim=0).norm(dim=1)
    A = -torch.arange(1.0, d + 1, dtype=_F64)  # (N,)
    delta = torch.full((L,), 10.0**log10_delta, dtype=_F64)
    delta[reset_at] = 10.0**log10_delta_reset
    u, B = torch.randn(L, generator=g, dtype=_F64), torch.randn(L, d, generator=g, dtype=_F64)
    a = torch.exp(delta[:, None] * A[None, :])  # exp(Δ_t A): (L, N)
    b = (delta * u)[:, None] * B  # Δ_t u_t B_t: (L, N)
    h = scan_sequential(a, b, dim=0)  # (L, N)
    b_without = b.clone()
    b_without[j] = 0.0
    s6 = (h - scan_sequential(a, b_without, dim=0)).norm(dim=1)
    return {
        "t": np.arange(L),
        "la": la.numpy(),
        "s6": s6.numpy(),
        "z": z.numpy(),
        "h": h.norm(dim=1).numpy(),
        "j": j,
        "reset_at": reset_at,
        "delta": 10.0**log10_delta,
        "delta_reset": 10.0**log10_delta_reset,
    }


@figure("11_forgetting")
def plot_forgetting(log10_delta: float = -1.5, log10_delta_reset: float = 1.0, reset_at: int = 120) -> Figure:
    """Left: token j's contribution to the state (log scale). Right: the size of what is carried."""
    d = forgetting_update(log10_delta, log10_delta_reset, reset_at)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    t, j = d["t"], d["j"]
    after = t >= j
    ax0.semilogy(t[after], d["la"][after], color="C1", label="linear attention: ‖φ(k_j) v_jᵀ‖, forever")
    ax0.semilogy(
        t[after], np.maximum(d["s6"][after], 1e-300), color="C0", label="S6: ‖∏ exp(Δ_s A) Δ_j B_j u_j‖"
    )
    ax0.axvline(d["reset_at"], color="0.5", ls=":", label=f"Δ = {d['delta_reset']:g} at t = {d['reset_at']}")
    lo = max(1e-12, min(d["s6"][after].min(), d["la"][after].min()) / 10)
    ax0.set_ylim(lo, 10 * max(d["la"].max(), d["s6"].max()))
    ax0.set(
        xlabel="step t",
        ylabel="size of token j's share of the state",
        title=f"token j = {j}, Δ = {d['delta']:.3g} elsewhere",
    )
    # under the axes: the sliders move both curves anywhere inside them
    ax0.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    ax1.semilogy(t, d["z"], color="C1", label="linear attention: ‖z_t‖ = ‖Σ φ(k_s)‖")
    ax1.semilogy(t, d["h"], color="C0", label="S6: ‖h_t‖")
    ax1.set(
        xlabel="step t",
        ylabel="norm (log scale)",
        title="the normalizer only grows; the S6 state stays bounded",
    )
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False, ncol=2)
    return fig


def forgetting_widget() -> widgets.interactive:
    """Sliders for Δ (log10) on ordinary tokens, Δ at the reset token, and where the reset is."""
    w = widgets.interactive(
        lambda log10_delta, log10_delta_reset, reset_at: show(
            plot_forgetting(log10_delta, log10_delta_reset, reset_at)
        ),
        log10_delta=widgets.FloatSlider(value=-1.5, min=-4.0, max=0.0, step=0.25, description="log₁₀ Δ"),
        log10_delta_reset=widgets.FloatSlider(
            value=1.0,
            min=-4.0,
            max=2.0,
            step=0.25,
            description="log₁₀ Δ reset",
            style={"description_width": "initial"},
        ),
        reset_at=widgets.IntSlider(value=120, min=21, max=199, description="reset at"),
    )
    return with_static(w, lambda: plot_forgetting(**w.kwargs))


# ------------------------------------------------------------------------------------------------------
# Associative recall from a fixed state: write n key-value pairs, query every key.

#: memory -> what it keeps: a KV cache read by softmax attention, linear attention's (d_k, d_v) state with
#: φ = elu + 1 or φ = identity, and S6's (d_inner, N) state with key B_t, value u_t, query C_t
MEMORIES = ("softmax (KV cache)", "linear attention, elu+1", "linear attention, identity", "S6 state")


def recall_accuracy(memory: str, n_pairs: int, d_key: int = 64, d_value: int = 64, seed: int = 0) -> float:
    """Write ``n_pairs`` random (key, value) pairs into a memory, query it with every key, and return the
    fraction of queries whose read-out is closer (cosine) to the right value than to every other stored value.

    Keys (d_key) and values (d_value) are standard normal, float64. ``"softmax (KV cache)"`` keeps every pair
    and reads softmax(K q / √d_key)^T V. The linear-attention memories are the state (S, z) of
    :func:`~minimamba.recurrences.linear_attention_recurrent` after the n writes, read as S^T φ(q) (/ z·φ(q)
    for elu+1). ``"S6 state"``: the state of :func:`~minimamba.scan.selective_scan_ref` with d_inner = d_value
    channels and N = d_key states, B_t = key, u_t = value, Δ = 1 and A = 0 (no decay), read as h q (C = q).
    Chance is 1 / n_pairs.
    """
    if memory not in MEMORIES:
        raise ValueError(f"memory must be one of {MEMORIES}, got {memory!r}")
    for name, v in (("n_pairs", n_pairs), ("d_key", d_key), ("d_value", d_value)):
        _check_int(name, v)
    g = torch.Generator().manual_seed(seed)
    K = torch.randn(n_pairs, d_key, generator=g, dtype=_F64)  # (n, d_key)
    V = torch.randn(n_pairs, d_value, generator=g, dtype=_F64)  # (n, d_value)
    if memory == "softmax (KV cache)":
        Y = torch.softmax(K @ K.T / math.sqrt(d_key), dim=-1) @ V  # (queries, d_value)
    elif memory.startswith("linear attention"):
        kind = memory.split(", ")[1]
        _, (S, z) = linear_attention_recurrent(
            K[None], K[None], V[None], kind, kind == "elu+1", return_state=True
        )
        fq = feature_map(K, kind)  # (queries, d_key)
        Y = fq @ S[0]  # S^T φ(q) for every query: (queries, d_value)
        if kind == "elu+1":
            Y = Y / (fq @ z[0])[:, None]
    else:
        u, B = V.T[None], K.T[None]  # (1, d_value, n), (1, d_key, n)
        A = torch.zeros(d_value, d_key, dtype=_F64)  # exp(ΔA) = 1: nothing decays
        _, h = selective_scan_ref(
            u, torch.ones_like(u), A, B, B, return_last_state=True
        )  # h: (1, d_value, d_key)
        Y = K @ h[0].T  # y = h C with C = q: (queries, d_value)
    cos = F.normalize(Y, dim=-1) @ F.normalize(V, dim=-1).T  # (queries, stored values)
    return (cos.argmax(dim=-1) == torch.arange(n_pairs)).double().mean().item()


def recall_curves(
    ns: Sequence[int] = (4, 8, 16, 32, 64, 128, 256, 512), seeds: Sequence[int] = (0, 1, 2), s6_N: int = 16
) -> dict:
    """Mean :func:`recall_accuracy` over ``seeds`` for each memory and each n: d_key = d_value = 64, except the
    S6 state, whose key is its N = ``s6_N`` states (Mamba's d_state). Returns ``n`` and ``accuracy``: {memory:
    array}, and ``state``: {memory: numbers held after n writes, as a function of n}."""
    acc = {}
    for memory in MEMORIES:
        d_key = s6_N if memory == "S6 state" else 64
        acc[memory] = np.array(
            [np.mean([recall_accuracy(memory, n, d_key, 64, s) for s in seeds]) for n in ns], dtype=float
        )
    state = {
        "softmax (KV cache)": lambda n: n * (64 + 64),
        "linear attention, elu+1": lambda n: 64 * 64 + 64,
        "linear attention, identity": lambda n: 64 * 64,
        "S6 state": lambda n: 64 * s6_N,
    }
    return {"n": np.array(ns), "accuracy": acc, "state": state, "s6_N": s6_N}


_RECALL_STYLE = {
    "softmax (KV cache)": ("C4", "d-"),
    "linear attention, elu+1": ("C1", "s--"),
    "linear attention, identity": ("C1", "s-"),
    "S6 state": ("C0", "^-"),
}


@figure("11_recall")
def plot_recall(d: dict | None = None) -> Figure:
    """Recall accuracy against the number of stored pairs, with the state each memory holds."""
    d = recall_curves() if d is None else d
    fig, ax = plt.subplots(figsize=(10, 4), layout="constrained")
    for memory, acc in d["accuracy"].items():
        color, style = _RECALL_STYLE[memory]
        held = d["state"][memory]
        size = "n·128" if memory.startswith("softmax") else f"{held(1):,}"
        ax.semilogx(d["n"], 100 * acc, style, color=color, label=f"{memory} ({size} numbers)", base=2)
    ax.semilogx(d["n"], 100 / d["n"], ":", color="0.5", label="chance, 1/n", base=2)
    ax.set(
        xlabel="key-value pairs written n",
        ylabel="pairs recalled (%)",
        title="Write n random pairs, query every key (d_key = d_value = 64; S6: N = 16)",
        ylim=(-3, 103),
    )
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


# ------------------------------------------------------------------------------------------------------
# State sizes of real configurations.


def matched_lstm(n_params: int, vocab_size: int = 50277, n_layer: int = 3) -> LSTMConfig:
    """The :class:`~minimamba.lstm.LSTMConfig` with ``n_layer`` layers whose parameter count is closest to
    ``n_params`` (width a multiple of 8, tied embedding), counted in closed form."""
    _check_int("n_params", n_params)
    _check_int("n_layer", n_layer)
    best = None
    for width in range(8, 16385, 8):
        config = LSTMConfig(vocab_size=vocab_size, d_model=width, n_layer=n_layer)
        gap = abs(lstm_param_count(config) - n_params)
        if best is None or gap < best[0]:
            best = (gap, config)
        elif lstm_param_count(config) > n_params:
            break
    return best[1]


def _numel(tensors) -> int:
    return sum(t.numel() for t in tensors)


def state_sizes(context: int = 2048, lstm_layers: int = 3) -> list[dict]:
    """What each model carries from token to token, for one sequence, measured from its own cache.

    ``mamba-130m`` (:class:`~minimamba.model.MambaLM`) and ``transformer++-125m``
    (:class:`~minimamba.transformer.TransformerPP`) from :func:`~minimamba.transformer.matched_pairs`; an
    :class:`~minimamba.lstm.LSTMLM` of ``lstm_layers`` layers with the Mamba's parameter count
    (:func:`matched_lstm`); and the Transformer++ with linear attention in place of softmax attention (the same
    parameters; per layer one (S, z) per head, measured from
    :func:`~minimamba.recurrences.linear_attention_recurrent`). Models are built on the ``meta`` device (no
    memory), their caches on the CPU for batch 1.

    Returns one dict per model: ``model``, ``params``, ``fixed`` (numbers that do not grow), ``per_token``
    (numbers added per token), ``at_context`` (numbers held after ``context`` tokens).
    """
    _check_int("context", context, 2)
    pair = matched_pairs(max_len=context)[0]
    with torch.device("meta"):
        mamba, tpp = MambaLM(pair.mamba), TransformerPP(pair.transformer)
        lstm_config = matched_lstm(param_count(pair.mamba), pair.mamba.vocab_size, lstm_layers)
        lstm = LSTMLM(lstm_config)
    m_cache = mamba.init_cache(1, device="cpu")
    m_fixed = _numel(t for layer in m_cache.layers for t in (layer.conv_state, layer.ssm_state))
    l_fixed = _numel(lstm.init_cache(1, device="cpu").tensors())
    full, one = (tpp.init_cache(1, max_len=n, device="cpu") for n in (context, 1))
    per_token = (_numel([*full.keys, *full.values]) - _numel([*one.keys, *one.values])) // (context - 1)
    t = pair.transformer
    x = torch.zeros(1, t.n_head, 2, t.head_dim)  # (batch, heads, L, head_dim): any two tokens
    _, (S, z) = linear_attention_recurrent(x, x, x, return_state=True)
    la_fixed = t.n_layer * (S.numel() + z.numel())
    rows = [
        (pair.mamba_name, param_count(pair.mamba), m_fixed, 0),
        (f"LSTM, {lstm_layers} layers of {lstm_config.d_model}", lstm_param_count(lstm_config), l_fixed, 0),
        (f"{pair.transformer_name}, linear attention", tpp_param_count(t), la_fixed, 0),
        (pair.transformer_name, tpp_param_count(t), 0, per_token),
    ]
    return [
        {"model": name, "params": p, "fixed": f, "per_token": k, "at_context": f + k * context}
        for name, p, f, k in rows
    ]
