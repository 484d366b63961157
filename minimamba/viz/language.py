"""Does it model language? Tables and figures of the runs of ``scripts/run_language.py``.

:mod:`minimamba.language_runs` reads the runs and picks each family's best learning rate; here:

- :func:`scaling_table` / :func:`plot_scaling`: validation bits per character against parameters;
  :func:`plot_curves`: validation loss against characters seen or wall-clock seconds;
- :func:`samples_table`: the text each family generated, side by side;
- :func:`plot_schedule` and :func:`plot_live`: the learning-rate schedule, and the curves of a short run
  trained in memory (notebook 12's CPU run), which writes no file.

Pure functions return the numbers they plot, so that pytest checks what a reader sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from minimamba.language import FAMILIES, lr_at
from minimamba.language_runs import Best, Run, best_runs, by_family_size, check_list, family_order, is_number

__all__ = [
    "plot_curves",
    "plot_live",
    "plot_scaling",
    "plot_schedule",
    "samples_table",
    "scaling_table",
]

_FONT = 9  # legend and tick labels, points: readable at notebook width


# ------------------------------------------------------------------------------------------------- scaling


def scaling_table(best: Iterable[Best]) -> list[dict]:
    """One row per (family, size): parameters (mean over seeds), seeds, validation bpc mean / min / max over
    seeds, each seed's best learning rate, and whether any of them sits at the sweep's edge."""
    best = check_list("best", best, Best)
    rows = []
    for family, sizes in by_family_size(best).items():
        for size, group in sizes.items():
            bpcs = [b.bpc for b in group]
            rows.append(
                {"family": family, "size": size, "params": round(sum(b.params for b in group) / len(group)),
                 "seeds": len(group), "val bpc": sum(bpcs) / len(bpcs), "min": min(bpcs), "max": max(bpcs),
                 "best lr": ", ".join(f"{b.lr:g}" for b in group), "lr at edge": any(b.at_edge for b in group)}
            )  # fmt: skip
    return sorted(rows, key=lambda r: family_order(r["family"], r["params"]))


def _check_unigram(unigram_bpc) -> None:
    if unigram_bpc is not None and not (
        is_number(unigram_bpc) and math.isfinite(unigram_bpc) and unigram_bpc > 0
    ):
        raise ValueError(f"unigram_bpc must be a positive number or None, got {unigram_bpc!r}")


def _finish(ax, fig, unigram_bpc) -> None:
    if unigram_bpc is not None:
        ax.axhline(unigram_bpc, color="0.5", ls="--", lw=1, label="unigram baseline")
    ax.tick_params(labelsize=_FONT)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=_FONT, frameon=False)


def plot_scaling(best: Iterable[Best], unigram_bpc: float | None = None) -> Figure:
    """Validation bpc against parameters (log x): per family, each seed's best run as a dot and the line
    through the seeds' mean at each size (:func:`scaling_table`); ``unigram_bpc`` (e.g. a run's
    ``unigram_bpc``, or :func:`minimamba.data.unigram_bpc`) as a dashed horizontal line."""
    best = check_list("best", best, Best)
    _check_unigram(unigram_bpc)
    rows = scaling_table(best)
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for i, family in enumerate(f for f in FAMILIES if any(b.family == f for b in best)):
        seeds = [b for b in best if b.family == family]
        ax.plot([b.params for b in seeds], [b.bpc for b in seeds], "o", color=f"C{i}", alpha=0.45, ms=5,
                label=f"_{family} seeds")  # fmt: skip
        line = [r for r in rows if r["family"] == family]
        ax.plot(
            [r["params"] for r in line],
            [r["val bpc"] for r in line],
            "-",
            color=f"C{i}",
            lw=1.8,
            label=family,
        )
    edge = [b for b in best if b.at_edge]
    if edge:
        ax.plot([b.params for b in edge], [b.bpc for b in edge], "o", mfc="none", mec="k", ms=9,
                label="best lr at the sweep's edge")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation bits per character")
    seeds = max(r["seeds"] for r in rows)
    ax.set_title(f"best learning rate per size ({seeds} seed{'s' * (seeds > 1)}; line: mean)", fontsize=10)
    _finish(ax, fig, unigram_bpc)
    return fig


def plot_curves(
    runs: Iterable[Run],
    size: str,
    x: str = "tokens",
    unigram_bpc: float | None = None,
    throughput: dict[tuple[str, str], float] | None = None,
) -> Figure:
    """Validation bpc against characters seen (``x="tokens"``) or wall-clock seconds (``x="wall"``) for the
    best run (:func:`~minimamba.language_runs.best_runs`) of each family, and each seed, at ``size``.

    Wall-clock seconds are the run's own (since its start, evaluations and checkpoints included, on the
    device named in the title), or with ``throughput`` ({(size, family): characters per second},
    :func:`~minimamba.language_runs.load_throughput`) the training time of each model alone: characters
    seen ÷ its speed. Use the latter for runs that shared the GPU (``run_language.py --parallel``)."""
    runs = check_list("runs", runs, Run)
    if x not in ("tokens", "wall"):
        raise ValueError(f"x must be 'tokens' or 'wall', got {x!r}")
    if throughput is not None and (x != "wall" or not isinstance(throughput, dict)):
        raise ValueError("throughput must be a dict {(size, family): characters per second}, with x='wall'")
    _check_unigram(unigram_bpc)
    best = [b for b in best_runs(runs) if b.size == size]
    if not best:
        sizes = sorted({r.size for r in runs if r.finished})
        raise ValueError(f"size must be a size with a finished run, one of {sizes}, got {size!r}")
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    many = len({b.seed for b in best}) > 1
    families = [f for f in FAMILIES if any(b.family == f for b in best)]
    for b in best:
        i = families.index(b.family)
        hist = b.run.history
        if x == "tokens":
            xs = hist["tokens"]
        elif throughput is None:
            xs = hist["time"]
        elif (size, b.family) in throughput:
            xs = [t / throughput[size, b.family] for t in hist["tokens"]]
        else:
            raise ValueError(f"throughput has no speed for ({size!r}, {b.family!r})")
        label = f"{b.family} (lr {b.lr:g}{f', seed {b.seed}' if many else ''})"
        ax.plot(xs, hist["val_bpc"], "o-", ms=3, color=f"C{i}", label=label)
    devices = sorted({b.run.device for b in best})
    ax.set_xlabel(
        "characters seen"
        if x == "tokens"
        else "wall-clock seconds (evaluations included)"
        if throughput is None
        else "seconds of training, each model alone on the GPU"
    )
    ax.set_ylabel("validation bits per character")
    ax.set_title(f"{size}, best learning rate of each family ({', '.join(devices)})", fontsize=10)
    _finish(ax, fig, unigram_bpc)
    return fig


# ------------------------------------------------------------------------------------------------- samples


def samples_table(best: Iterable[Best], size: str, width: int = 28, seed: int | None = None) -> str:
    """The text each family generated at ``size`` (its best run), in columns side by side, under the prompt.

    Each column is one family (order of ``FAMILIES``): a header (family, parameters, validation bpc), then
    the sample's lines cut every ``width`` characters. ``seed``: whose runs (default: the smallest seed
    of each family).
    """
    best = check_list("best", best, Best)
    if isinstance(width, bool) or not isinstance(width, int) or width < 8:
        raise ValueError(f"width must be an int >= 8, got {width!r}")
    here = [b for b in best if b.size == size]
    if not here:
        raise ValueError(f"size must be one of {sorted({b.size for b in best})}, got {size!r}")
    if seed is not None and not any(b.seed == seed for b in here):
        raise ValueError(f"seed must be one of {sorted({b.seed for b in here})} at {size}, got {seed!r}")
    columns, prompt = [], None
    for family in FAMILIES:
        mine = [b for b in here if b.family == family and (seed is None or b.seed == seed)]
        if not mine:
            continue
        b = min(mine, key=lambda b: -1 if b.seed is None else b.seed)
        head = [family, f"{b.params / 1e6:.2f}M params, {b.bpc:.3f} bpc"]
        if b.run.sample is None:
            body = ["(no sample)"]
        else:
            prompt = b.run.sample.get("prompt", prompt)
            text = b.run.sample["text"].replace("\t", " ")
            body = [
                line[i : i + width] for line in text.split("\n") for i in range(0, max(1, len(line)), width)
            ]
        columns.append((head, body))
    w = max(width, *(len(h) for head, _ in columns for h in head))
    n = max(len(body) for _, body in columns)
    lines = [" | ".join(head[k].ljust(w) for head, _ in columns).rstrip() for k in range(2)]
    lines.append("-+-".join("-" * w for _ in columns))
    for k in range(n):
        lines.append(" | ".join((body[k] if k < len(body) else "").ljust(w) for _, body in columns).rstrip())
    top = [] if prompt is None else [f"prompt (each column continues it): {prompt!r}", ""]
    return "\n".join(top + lines)


# ------------------------------------------------------------------------------------ a live run, in memory


def plot_schedule(steps: int, peak: float, warmup: int, final_frac: float = 0.1) -> Figure:
    """The learning rate of every step 1..``steps`` (:func:`minimamba.language.lr_at`): linear warm-up over
    ``warmup`` steps to ``peak``, then cosine decay to ``final_frac · peak``; the warm-up's end is marked."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup < steps:
        raise ValueError(f"warmup must be an int in [0, steps) = [0, {steps}), got {warmup!r}")
    if not (is_number(peak) and math.isfinite(peak) and peak > 0):
        raise ValueError(f"peak must be a positive number, got {peak!r}")
    if not (is_number(final_frac) and 0 <= final_frac <= 1):
        raise ValueError(f"final_frac must be a number in [0, 1], got {final_frac!r}")
    xs = list(range(1, steps + 1))
    fig, ax = plt.subplots(figsize=(7, 2.8), layout="constrained")
    ax.plot(xs, [lr_at(s, steps, peak, warmup, final_frac) for s in xs], "-", color="C0", lw=1.8)
    ax.axvline(warmup, color="0.5", ls=":", lw=1)
    ax.annotate(
        "end of warm-up", (warmup, 0.5 * peak), xytext=(6, 0), textcoords="offset points", fontsize=_FONT
    )
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_ylim(0, 1.08 * peak)
    ax.set_title(
        f"warm-up {warmup} steps to {peak:g}, cosine decay to {final_frac:g} of it at step {steps}",
        fontsize=10,
    )
    ax.tick_params(labelsize=_FONT)
    ax.grid(alpha=0.3)
    return fig


_LIVE_KEYS = ("train_bpc", "step", "val_bpc")


def _check_history(label, hist) -> None:
    if not isinstance(hist, dict) or not all(isinstance(hist.get(k), list) for k in _LIVE_KEYS):
        raise TypeError(f"histories[{label!r}] must be a dict with the lists {_LIVE_KEYS}")
    if not hist["train_bpc"] or not hist["step"] or len(hist["step"]) != len(hist["val_bpc"]):
        raise ValueError(
            f"histories[{label!r}]: train_bpc must be non-empty and step, val_bpc of one non-zero length, got "
            f"{[len(hist[k]) for k in _LIVE_KEYS]}"
        )
    if not all(is_number(v) for k in _LIVE_KEYS for v in hist[k]):
        raise ValueError(f"histories[{label!r}]: the lists {_LIVE_KEYS} must hold numbers")


def plot_live(
    histories: dict[str, dict], baselines: dict[str, float] | None = None, title: str | None = None
) -> Figure:
    """Training and validation bits per character of runs held in memory, against the step.

        ``histories``: {label: history}; a history holds ``train_bpc`` (the training batch's loss at steps 1, 2,
        …), ``step`` (the steps where the validation set was scored, 0 for before training) and ``val_bpc``
        (the scores there). Each run's training curve is drawn thin, its validation scores with markers in the
        same colour. ``baselines``: {name: bpc}, each a grey horizontal line (dashed, dotted, dash-dotted in turn),
    e.g. the unigram model's.
    """
    if not isinstance(histories, dict):
        raise TypeError(f"histories must be a dict {{label: history}}, got {type(histories).__name__}")
    if not histories:
        raise ValueError("histories must hold at least one run, got an empty dict")
    for label, hist in histories.items():
        _check_history(label, hist)
    baselines = {} if baselines is None else baselines
    if not isinstance(baselines, dict):
        raise TypeError(f"baselines must be a dict {{name: bpc}} or None, got {type(baselines).__name__}")
    if not all(is_number(v) and math.isfinite(v) and v > 0 for v in baselines.values()):
        raise ValueError(f"baselines must map names to positive numbers of bits, got {baselines!r}")
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for i, (label, hist) in enumerate(histories.items()):
        steps = range(1, len(hist["train_bpc"]) + 1)
        ax.plot(
            steps, hist["train_bpc"], "-", color=f"C{i}", lw=0.8, alpha=0.45, label=f"{label}, train batch"
        )
        ax.plot(
            hist["step"], hist["val_bpc"], "o-", color=f"C{i}", ms=4, lw=1.6, label=f"{label}, validation"
        )
    for k, (name, value) in enumerate(baselines.items()):
        ax.axhline(value, color="0.4", ls=("--", ":", "-.")[k % 3], lw=1, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("bits per character")
    if title is not None:
        ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=_FONT)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=_FONT, frameon=False)
    return fig
