"""Figures, tables and the widget of notebook 08 (synthetic tasks): selective copying and induction heads,
LTI vs S6 (Mamba §4.1, Table 1, Table 2 / 11), from training histories and the committed GPU results.

Pure functions return the data they plot (``table1_rows``, ``table2_rows``, ``delta_trace``,
``delta_update``), so that pytest checks the numbers a reader sees. The ``@figure`` functions read
``results/`` (written by ``scripts/run_synthetic.py`` on the GPU).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from minimamba import committed
from minimamba.tasks import NOISE, marker_token, selective_copying
from minimamba.train import load_results
from minimamba.viz import figure, show, with_static

__all__ = [
    "PAPER_TABLE1",
    "PAPER_TABLE11",
    "RESULTS",
    "delta_stats",
    "delta_trace",
    "delta_update",
    "delta_widget",
    "format_table",
    "load_model",
    "load_synthetic",
    "plot_copying",
    "plot_delta",
    "plot_delta_stats",
    "plot_extrapolation",
    "plot_learning_curves",
    "plot_sequences",
    "table1_rows",
    "table2_rows",
]

#: the committed results/ (scripts/run_synthetic.py writes synthetic_*.json there; they ship with the package)
RESULTS = committed.RESULTS

#: Table 1 of the paper (selective copying, L = 4096, accuracy %): (architecture, inner layer) -> accuracy
PAPER_TABLE1 = {
    ("No gate", "S4"): 18.3,
    ("No gate", "S6"): 97.0,
    ("H3", "S4"): 57.0,
    ("H3", "Hyena"): 30.1,
    ("H3", "S6"): 99.7,
    ("Mamba", "S4"): 56.4,
    ("Mamba", "Hyena"): 28.4,
    ("Mamba", "S6"): 99.8,
}

_L = [2**p for p in range(6, 21)]
#: Table 11 of the paper (induction heads trained at 2^8, test accuracy % per length; None = out of memory)
PAPER_TABLE11 = {
    "Mamba": dict.fromkeys(_L, 100.0),
    "H3": dict(zip(_L, [100, 100, 100, 80.9, 39.5, 23.8, 14.8, 8.2, 5.9, 6.6, 8.2, 4.7, 8.2, 6.3, 7.4])),
    "MHA-Abs": dict(zip(_L, [100, 99.6, 100, 58.6, 26.6, 18.8, 9.8, 10.9, 7.8, *[None] * 6])),
}


def load_synthetic(results_dir: str | Path = RESULTS) -> dict[str, dict]:
    """Every ``synthetic_<name>.json`` of ``results_dir`` as {name: {"config", "history", "meta"}}: the budget
    runs. The paper-recipe files (``synthetic_<task><L>_<model>_seed<seed>.json``) are left to
    :mod:`minimamba.viz.recipe`."""
    from minimamba.viz.recipe import RECIPE_FILE  # noqa: PLC0415  (recipe imports this module)

    files = [
        f for f in sorted(Path(results_dir).glob("synthetic_*.json")) if not RECIPE_FILE.fullmatch(f.name)
    ]
    if not files:
        raise FileNotFoundError(f"no synthetic_*.json in {results_dir}: run scripts/run_synthetic.py first")
    return {f.stem.removeprefix("synthetic_"): load_results(f) for f in files}


def load_model(name: str, results_dir: str | Path = RESULTS):
    """The trained MambaLM saved by scripts/run_synthetic.py as ``synthetic_<name>.pt`` (on the CPU, eval)."""
    from minimamba.config import MambaConfig  # noqa: PLC0415
    from minimamba.model import MambaLM  # noqa: PLC0415

    doc = load_results(Path(results_dir) / f"synthetic_{name}.json")
    model = MambaLM(MambaConfig(**doc["config"]))
    state = torch.load(Path(results_dir) / f"synthetic_{name}.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


# ------------------------------------------------------------------------------------------------------ tables


def table1_rows(docs: Mapping[str, dict]) -> list[dict]:
    """Selective copying results, one row per (L, layer), beside Table 1's Mamba rows (L = 4096)."""
    rows = []
    for name, doc in docs.items():
        m = doc["meta"]
        if m.get("task") != "selective_copying":
            continue
        layer = "S6" if m["selective"] else "S4 (LTI)"
        paper = PAPER_TABLE1[("Mamba", "S6" if m["selective"] else "S4")]
        acc = doc["history"]["eval_accuracy"]["train"][-1]
        rows.append(
            {"model": name, "layer": layer, "L": m["train_length"], "k": m["k"], "steps": m["steps"],
             "accuracy %": round(100 * acc, 1), "paper % (L=4096, 400K steps)": paper}
        )  # fmt: skip
    return sorted(rows, key=lambda r: (r["L"], r["layer"]))


def table2_rows(docs: Mapping[str, dict]) -> list[dict]:
    """Induction heads: accuracy % per test length for each trained model, beside Table 11's Mamba and H3."""
    tests = {
        ("S6" if d["meta"]["selective"] else "LTI"): d["history"]["test"]
        for d in docs.values()
        if d["meta"].get("task") == "induction_heads" and "test" in d["history"]
    }
    lengths = sorted({int(L) for t in tests.values() for L in t})
    rows = []
    for L in lengths:
        row = {"L": L}
        for label, t in sorted(tests.items(), reverse=True):
            r = t.get(str(L), {})
            row[f"{label} %"] = round(100 * r["accuracy"], 1) if "accuracy" in r else None
        for model in ("Mamba", "H3"):
            row[f"paper {model} %"] = PAPER_TABLE11[model].get(L)
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Rows of equal keys as a fixed-width text table (None shows as "–")."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    cells = [[("–" if r[k] is None else str(r[k])) for k in keys] for r in rows]
    width = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = "  ".join(k.rjust(w) for k, w in zip(keys, width))
    body = ["  ".join(c.rjust(w) for c, w in zip(cs, width)) for cs in cells]
    return "\n".join([line, "-" * len(line), *body])


# ------------------------------------------------------------------------------------------------------- plots


def plot_sequences(
    inputs: torch.Tensor, task: str, vocab: int = 16, targets: torch.Tensor | None = None
) -> Figure:
    """Sequences as coloured strips: grey noise, coloured data / ordinary tokens, black markers / special."""
    if task not in ("selective_copying", "induction_heads"):
        raise ValueError(f"task must be 'selective_copying' or 'induction_heads', got {task!r}")
    ids = np.asarray(inputs, dtype=float)
    n, T = ids.shape
    special = marker_token(vocab)
    colours = plt.get_cmap("tab20", vocab)(np.arange(vocab))
    colours[special] = (0, 0, 0, 1)
    if task == "selective_copying":
        colours[NOISE] = (0.93, 0.93, 0.93, 1)
    fig, ax = plt.subplots(figsize=(min(12, 2 + 0.12 * T), 0.45 * n + 1.2), layout="constrained")
    ax.imshow(
        ids, cmap=ListedColormap(colours), vmin=-0.5, vmax=vocab - 0.5, aspect="auto", interpolation="none"
    )
    if T <= 80:
        for r in range(n):
            for t in range(T):
                if ids[r, t] != special and not (task == "selective_copying" and ids[r, t] == NOISE):
                    ax.text(t, r, f"{int(ids[r, t])}", ha="center", va="center", fontsize=7)
    if targets is not None:
        ax.set_yticks(range(n), [_answer(targets[r]) for r in range(n)], fontsize=7)
        ax.set_ylabel("answer")
    else:
        ax.set_yticks(range(n))
        ax.set_ylabel("sequence")
    ax.set_xlabel("position t (black: marker / special token)")
    ax.set_title(task.replace("_", " "))
    return fig


def _answer(row: torch.Tensor) -> str:
    return " ".join(str(int(t)) for t in row if int(t) >= 0)


def plot_learning_curves(histories: Mapping[str, dict], key: str | None = None) -> Figure:
    """Training loss (left) and validation accuracy (right) against steps, one line per model.

    ``key`` picks the validation set (a length such as "256", or "train"); default: the first one.
    """
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    for i, (label, h) in enumerate(histories.items()):
        k = key if key is not None else next(iter(h["eval_accuracy"]))
        ax0.plot(h["step"], h["loss"], color=f"C{i}", label=label)
        ax1.plot(h["eval_step"], h["eval_accuracy"][k], "o-", color=f"C{i}", ms=3, label=f"{label} (L={k})")
    ax0.set(xlabel="step", ylabel="training loss (answer tokens)", yscale="log", title="loss")
    ax1.set(xlabel="step", ylabel="validation accuracy", ylim=(-0.02, 1.02), title="accuracy")
    ax0.legend(fontsize=8)
    ax1.legend(fontsize=8, loc="lower right")
    return fig


def plot_extrapolation(
    tests: Mapping[str, Mapping[str, float]], train_length: int, paper: bool = True, title: str = ""
) -> Figure:
    """Accuracy against test length (log₂ x), one line per model, the training length marked.

    ``tests``: {label: {str(L): accuracy in [0, 1]}}. With ``paper``, Table 11's Mamba and H3 (dashed).
    """
    fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
    for i, (label, t) in enumerate(tests.items()):
        Ls = sorted(int(L) for L in t)
        ax.plot(Ls, [100 * t[str(L)] for L in Ls], "o-", color=f"C{i}", label=label)
    if paper:
        for model, style in (("Mamba", "C2"), ("H3", "C3")):
            Ls = [L for L, v in PAPER_TABLE11[model].items() if v is not None]
            ax.plot(
                Ls,
                [PAPER_TABLE11[model][L] for L in Ls],
                "--",
                color=style,
                alpha=0.6,
                label=f"paper: {model}",
            )
    ax.axvline(train_length, color="k", lw=1, ls=":")
    ax.annotate("training length", (train_length, 20), rotation=90, ha="right", va="center", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set(
        xlabel="test sequence length L", ylabel="accuracy %", ylim=(-3, 103), title=title or "induction heads"
    )
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_copying(docs: Mapping[str, dict]) -> Figure:
    """Table 1 in miniature: selective-copying accuracy of LTI and S6 per L, beside the paper's (L = 4096)."""
    rows = table1_rows(docs)
    Ls = sorted({r["L"] for r in rows})
    steps = {r["L"]: r["steps"] for r in rows}
    groups = [f"L={L}\n(ours, {steps[L] / 1000:.1f}K steps)" for L in Ls] + ["L=4096\n(paper, 400K steps)"]
    fig, ax = plt.subplots(figsize=(6.5, 3.4), layout="constrained")
    w = 0.38
    for j, (layer, colour) in enumerate((("S4 (LTI)", "C0"), ("S6", "C1"))):
        vals = [
            next((r["accuracy %"] for r in rows if r["L"] == L and r["layer"] == layer), np.nan) for L in Ls
        ]
        vals.append(PAPER_TABLE1[("Mamba", "S6" if layer == "S6" else "S4")])
        x = np.arange(len(groups)) + (j - 0.5) * w
        ax.bar(x, vals, w, color=colour, label=layer)
        for xi, v in zip(x, vals):
            ax.annotate(f"{v:.1f}", (xi, v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set(
        xlabel="noise positions L (k = 16 data tokens)", ylabel="accuracy % (answer tokens)", ylim=(0, 110)
    )
    ax.set_title("selective copying (Mamba architecture)")
    ax.legend(fontsize=8, loc="upper left")
    return fig


@torch.no_grad()
def delta_trace(model, inputs: torch.Tensor) -> torch.Tensor:
    """Δ = softplus(dt_proj(·)) of every layer of a selective MambaLM, read with forward hooks.

    Args:
        model: a MambaLM with ``config.selective``. inputs: (batch, T) token ids.
    Returns:
        (n_layer, batch, T, d_inner) float tensor: the step size each channel takes at each token.
    """
    if not getattr(model.config, "selective", False):
        raise ValueError(
            "delta_trace needs a selective model (config.selective=True): the LTI Δ is a constant"
        )
    out: list[torch.Tensor] = []
    hooks = [
        layer.mixer.dt_proj.register_forward_hook(lambda mod, args, o: out.append(F.softplus(o.float())))
        for layer in model.backbone.layers
    ]
    try:
        model(inputs)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(out)  # (n_layer, batch, T, d_inner)


def delta_update(model, seed: int, layer: int, L: int = 256, k: int = 16, vocab: int = 16) -> dict:
    """Δ (mean over channels) along one selective-copying sequence drawn with ``seed``, for ``layer``.

    Returns inputs (T,), delta (T,) numpy arrays, the data / noise / marker masks, and their mean Δ.
    """
    n_layer = len(model.backbone.layers)
    if not 0 <= layer < n_layer:
        raise ValueError(f"layer must be in 0 … {n_layer - 1}, got {layer}")
    b = selective_copying(1, L, k, vocab, generator=torch.Generator().manual_seed(seed))
    d = delta_trace(model, b.inputs)[layer, 0].mean(-1).numpy()  # (T,)
    ids = b.inputs[0].numpy()
    marker = ids == marker_token(vocab)
    noise = ids == NOISE
    data = ~marker & ~noise
    return {
        "inputs": ids,
        "delta": d,
        "data": data,
        "noise": noise,
        "marker": marker,
        "mean_data": float(d[data].mean()),
        "mean_noise": float(d[noise].mean()),
    }


def plot_delta(model, seed: int = 0, layer: int = 1, L: int = 256, k: int = 16) -> Figure:
    """Δ along a selective-copying sequence: data tokens (dots) against noise, markers shaded."""
    u = delta_update(model, seed, layer, L, k)
    t = np.arange(len(u["delta"]))
    fig, ax = plt.subplots(figsize=(10, 3.2), layout="constrained")
    ax.plot(t, u["delta"], color="0.5", lw=1, label="Δ (mean over channels)")
    ax.plot(
        t[u["data"]],
        u["delta"][u["data"]],
        "o",
        color="C1",
        ms=5,
        label=f"data tokens (mean {u['mean_data']:.3f})",
    )
    ax.axhline(u["mean_noise"], color="C0", ls="--", lw=1, label=f"noise tokens (mean {u['mean_noise']:.3f})")
    ax.axvspan(t[u["marker"]][0] - 0.5, t[-1] + 0.5, color="k", alpha=0.08, label="markers (answer here)")
    ax.set(
        xlabel="position t",
        ylabel="Δ_t",
        yscale="log",
        title=f"what Δ learned: layer {layer}, sequence {seed}",
    )
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def delta_stats(model, layer: int = 1, n_seq: int = 64, L: int = 256, k: int = 16, seed: int = 1000) -> dict:
    """Δ (mean over channels) on every token of ``n_seq`` selective-copying sequences drawn with ``seed``.

    Returns ``delta`` (n_seq, T), the ``data`` / ``noise`` masks, ``position`` (T,) and ``index`` (n_seq, T):
    for a data token, how many data tokens came before it in its sequence (0 for the first; -1 elsewhere).
    """
    n_layer = len(model.backbone.layers)
    if not 0 <= layer < n_layer:
        raise ValueError(f"layer must be in 0 … {n_layer - 1}, got {layer}")
    if not (isinstance(n_seq, int) and n_seq >= 1):
        raise ValueError(f"n_seq must be an int >= 1, got {n_seq!r}")
    b = selective_copying(n_seq, L, k, 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        d = delta_trace(model, b.inputs)[layer].mean(-1).numpy()  # (n_seq, T)
    ids = b.inputs.numpy()
    noise = ids == NOISE
    data = ~noise & (ids != marker_token(16))
    index = np.where(data, np.cumsum(data, axis=1) - 1, -1)
    return {"delta": d, "data": data, "noise": noise, "position": np.arange(ids.shape[1]), "index": index}


def plot_delta_stats(model, layer: int = 1, n_seq: int = 64, L: int = 256, k: int = 16) -> Figure:
    """Left: Δ against position, data tokens (dots) against the noise tokens' median and 10–90 % band.
    Right: Δ on the j-th data token of a sequence (median and quartiles) against j."""
    u = delta_stats(model, layer, n_seq, L, k)
    d, data, noise, idx = u["delta"], u["data"], u["noise"], u["index"]
    t = np.arange(L)
    noise_q = np.array([np.quantile(d[:, i][noise[:, i]], [0.1, 0.5, 0.9]) for i in t])
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained", width_ratios=[1.6, 1])
    ax0.fill_between(t, noise_q[:, 0], noise_q[:, 2], color="C0", alpha=0.2, label="noise tokens: 10–90 %")
    ax0.plot(t, noise_q[:, 1], color="C0", lw=1.5, label="noise tokens: median")
    rows, cols = np.nonzero(data[:, :L])
    ax0.plot(cols, d[rows, cols], ".", color="C1", ms=3, alpha=0.5, label="data tokens")
    ax0.set(xlabel="position t", ylabel="Δ (mean over channels)", yscale="log",
            title=f"layer {layer}, {n_seq} sequences")  # fmt: skip
    ax0.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    j = np.arange(k)
    q = np.array([np.quantile(d[idx == i], [0.25, 0.5, 0.75]) for i in j])
    ax1.fill_between(j + 1, q[:, 0], q[:, 2], color="C1", alpha=0.25, label="data tokens: quartiles")
    ax1.plot(j + 1, q[:, 1], "o-", color="C1", ms=4, label="data tokens: median")
    ax1.axhline(np.median(d[noise]), color="C0", ls="--", lw=1, label="noise tokens: median")
    ax1.set(xlabel="j (the j-th data token of its sequence)", ylabel="Δ", yscale="log",
            title="Δ shrinks with each data token stored")  # fmt: skip
    ax1.set_xticks([1, *range(4, k + 1, 4)])
    ax1.legend(fontsize=8, loc="upper right")
    return fig


def delta_widget(model, L: int = 256, k: int = 16) -> widgets.VBox:
    """Sliders for the sequence (seed) and the layer over :func:`plot_delta`."""
    seed = widgets.IntSlider(value=0, min=0, max=20, description="sequence")
    layer = widgets.IntSlider(value=len(model.backbone.layers) - 1, min=0, max=len(model.backbone.layers) - 1,
                              description="layer")  # fmt: skip

    out = widgets.interactive_output(
        lambda seed, layer: show(plot_delta(model, seed, layer, L, k)), {"seed": seed, "layer": layer}
    )
    return with_static(
        widgets.VBox([widgets.HBox([seed, layer]), out]),
        lambda: plot_delta(model, seed.value, layer.value, L, k),
    )


# ---------------------------------------------------------------------------------- figures for `make figures`


@figure("08_learning_curves")
def plot_gpu_learning_curves() -> Figure:
    """The GPU runs: selective copying (L = 256) and induction heads (L = 256), LTI vs S6."""
    docs = load_synthetic()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.6), layout="constrained")
    for ax, (task, key, names) in zip(
        axes,
        [("selective copying, L=256, k=16", "train", ("copy256_lti", "copy256_s6")),
         ("induction heads, trained and tested at L=256", "256", ("induction_lti", "induction_s6"))],
    ):  # fmt: skip
        for i, name in enumerate(names):
            h = docs[name]["history"]
            ax.plot(
                h["eval_step"],
                h["eval_accuracy"][key],
                "o-",
                ms=3,
                color=f"C{i}",
                label=name.split("_")[1].upper(),
            )
        ax.set(xlabel="step", ylabel="validation accuracy", ylim=(-0.02, 1.02), title=task)
        ax.legend(fontsize=8, loc="lower right")
    return fig


@figure("08_induction_extrapolation")
def plot_gpu_extrapolation() -> Figure:
    """Induction heads trained at 256, tested from 2^6 to 2^20 (Table 11's axes)."""
    docs = load_synthetic()
    tests = {
        ("S6 (ours)" if d["meta"]["selective"] else "LTI (ours)"): {
            L: r["accuracy"] for L, r in d["history"]["test"].items() if "accuracy" in r
        }
        for d in docs.values()
        if d["meta"].get("task") == "induction_heads"
    }
    return plot_extrapolation(
        dict(sorted(tests.items(), reverse=True)), 256, title="induction heads: length extrapolation"
    )


@figure("08_selective_copying")
def plot_gpu_copying() -> Figure:
    return plot_copying(load_synthetic())


@figure("08_delta")
def plot_gpu_delta() -> Figure:
    return plot_delta_stats(load_model("copy256_s6"), layer=1)
