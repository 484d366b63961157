"""Does it model language? Tables and figures of the runs of ``scripts/run_language.py``.

The script trains four families (:data:`minimamba.language.FAMILIES`) at matched sizes on Shakespeare
characters, a few peak learning rates each, and writes one JSON per run,
``language_<size>_<family>_lr<lr>_seed<seed>.json`` (:func:`minimamba.train.save_results`). Here:

- :func:`load_runs` reads a folder of them (the committed ``results/language/`` by default) into
  :class:`Run` records; :func:`best_runs` keeps, per family, size and seed, the finished run of lowest final
  validation loss over the learning-rate sweep (:class:`Best`), and says whether that rate sits at the edge
  of the sweep (:func:`minimamba.language.sweep_edge`);
- :func:`scaling_table` / :func:`plot_scaling`: validation bits per character against parameters;
  :func:`plot_curves`: validation loss against characters seen or wall-clock seconds;
- :func:`matched_ratio`: the paper's claim that Mamba "matches Transformers twice its size" (Gu & Dao 2023,
  abstract, for Mamba-3B; the scaling laws of §4.2.1, Figure 4), asked of these runs: how many parameters
  the reference family needs for the same loss, by interpolation between the sizes measured, never beyond;
- :func:`samples_table`: the text each family generated, side by side;
- :func:`plot_schedule` and :func:`plot_live`: the learning-rate schedule, and the curves of a short run
  trained in memory (notebook 12's CPU run), which writes no file.

Pure functions return the numbers they plot, so that pytest checks what a reader sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from minimamba import committed
from minimamba.language import FAMILIES, lr_at, sweep_edge
from minimamba.train import load_results

__all__ = [
    "Best",
    "Run",
    "best_runs",
    "load_runs",
    "matched_ratio",
    "plot_curves",
    "plot_live",
    "plot_scaling",
    "plot_schedule",
    "samples_table",
    "scaling_table",
]

_FONT = 9  # legend and tick labels, points: readable at notebook width


@dataclass(frozen=True)
class Run:
    """One run of ``scripts/run_language.py`` (one JSON file).

    ``final_bpc`` is the validation bits per character at the last evaluation, ``best_bpc`` the lowest over
    all evaluations (nan where the loss diverged); ``tokens`` and ``wall_seconds`` are the characters seen and
    the seconds since the start (evaluations and checkpoints included) at the last evaluation. ``finished``:
    the run reached its last step (``meta.done``); an unfinished one is kept, flagged. ``sample``: the
    ``meta.sample`` dict (prompt, temperature, seed, text) of a finished run, else None. ``history``: the
    file's history (step, tokens, time, lr, train_loss, train_bpc, val_bpc lists). ``unigram_bpc``: the
    corpus's unigram baseline recorded by the script, if any.
    """

    path: Path
    size: str
    family: str
    lr: float
    seed: int | None
    params: int
    final_bpc: float
    best_bpc: float
    tokens: int
    wall_seconds: float
    finished: bool
    device: str
    sample: dict | None = field(default=None, compare=False)
    history: dict = field(default_factory=dict, repr=False, compare=False)
    unigram_bpc: float | None = None


@dataclass(frozen=True)
class Best:
    """The best finished run of one (family, size, seed) over its learning-rate sweep.

    ``lrs``: the learning rates of the finished runs compared, ascending. ``at_edge``: the best is the
    smallest or largest of them, so the sweep has not bracketed the optimum (always true with fewer than
    three rates).
    """

    run: Run
    lrs: tuple[float, ...]
    at_edge: bool

    family = property(lambda self: self.run.family)
    size = property(lambda self: self.run.size)
    seed = property(lambda self: self.run.seed)
    params = property(lambda self: self.run.params)
    lr = property(lambda self: self.run.lr)
    bpc = property(lambda self: self.run.final_bpc, doc="final validation bits per character")


# ------------------------------------------------------------------------------------------------ reading


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _parse(path: Path) -> Run:
    def bad(why: str) -> ValueError:
        return ValueError(f"{path} is not a run of scripts/run_language.py: {why}")

    doc = load_results(path, kind="a run of scripts/run_language.py")
    config, hist, meta = doc["config"], doc["history"], doc["meta"]
    if config.get("family") not in FAMILIES:
        raise bad(f"config.family must be one of {FAMILIES}, got {config.get('family')!r}")
    if not isinstance(config.get("size"), str):
        raise bad(f"config.size must be a size name such as '2M', got {config.get('size')!r}")
    if not (_number(config.get("lr")) and config["lr"] > 0):
        raise bad(f"config.lr must be a positive number, got {config.get('lr')!r}")
    if not (isinstance(config.get("n_params"), int) and config["n_params"] > 0):
        raise bad(f"config.n_params must be a positive int, got {config.get('n_params')!r}")
    keys = ("step", "tokens", "time", "val_bpc")
    if not all(isinstance(hist.get(k), list) for k in keys):
        raise bad(f"history must hold the lists {keys}, got keys {sorted(hist)}")
    lengths = {len(hist[k]) for k in keys}
    if len(lengths) != 1 or 0 in lengths:
        raise bad(
            f"history lists {keys} must be non-empty and of one length, got {[len(hist[k]) for k in keys]}"
        )
    if not all(_number(v) for k in keys for v in hist[k]):
        raise bad(f"history lists {keys} must hold numbers")
    if not isinstance(meta.get("device"), str):
        raise bad(f"meta.device must be a string, got {meta.get('device')!r}")
    sample = meta.get("sample")
    if sample is not None and not (isinstance(sample, dict) and isinstance(sample.get("text"), str)):
        raise bad("meta.sample must be an object with a text string")
    seed = config.get("seed", meta.get("seed"))
    finite = [v for v in hist["val_bpc"] if math.isfinite(v)]
    return Run(
        path=path,
        size=config["size"],
        family=config["family"],
        lr=float(config["lr"]),
        seed=seed,
        params=config["n_params"],
        final_bpc=float(hist["val_bpc"][-1]),
        best_bpc=min(finite) if finite else math.nan,
        tokens=int(hist["tokens"][-1]),
        wall_seconds=float(hist["time"][-1]),
        finished=meta.get("done") is True,
        device=meta["device"],
        sample=sample,
        history=hist,
        unigram_bpc=meta.get("unigram_bpc"),
    )


def _order(family: str, params: float, *rest):
    return (FAMILIES.index(family), params, *rest)


def load_runs(folder: str | Path | None = None) -> list[Run]:
    """Every ``language_*.json`` under ``folder`` (subfolders too) as :class:`Run`s, ordered by family (as
    in ``FAMILIES``), parameters, seed and learning rate.

    ``folder``: default the committed ``results/language/`` (:func:`minimamba.committed.results_folder`).
    A file that is not such a run raises ValueError naming it; so do two files of the same family, size,
    seed and learning rate.
    """
    if folder is None:
        folder = committed.results_folder("language")
    if not isinstance(folder, (str, Path)):
        raise TypeError(f"folder must be a path or None, got {type(folder).__name__}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder must be a folder of scripts/run_language.py's JSON, got {folder}")
    files = sorted(folder.rglob("language_*.json"))
    if not files:
        raise FileNotFoundError(
            f"no language_*.json under {folder}: run scripts/run_language.py --out {folder}"
        )
    runs, seen = [], {}
    for path in files:
        run = _parse(path)
        key = (run.family, run.size, run.seed, run.lr)
        if key in seen:
            raise ValueError(f"{path} and {seen[key]} are both the run (family, size, seed, lr) = {key}")
        seen[key] = path
        runs.append(run)
    return sorted(runs, key=lambda r: _order(r.family, r.params, -1 if r.seed is None else r.seed, r.lr))


def _check_list(name: str, items, kind: type) -> list:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(f"{name} must be a list of {kind.__name__}, got {type(items).__name__}")
    items = list(items)
    wrong = [type(x).__name__ for x in items if not isinstance(x, kind)]
    if wrong:
        raise TypeError(f"{name} must be a list of {kind.__name__}, got items of type {sorted(set(wrong))}")
    if not items:
        raise ValueError(f"{name} must not be empty")
    return items


def _loss(run: Run) -> float:
    return run.final_bpc if math.isfinite(run.final_bpc) else math.inf


def best_runs(runs: Iterable[Run]) -> list[Best]:
    """Per (family, size, seed), the finished run of lowest final validation bpc over its learning rates.

    Unfinished runs take no part; a finished run whose loss diverged (nan) counts as a rate tried but is
    never picked, and a group with no finite finished run is left out. Ordered as :func:`load_runs`.
    """
    runs = _check_list("runs", runs, Run)
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        if r.finished:
            groups.setdefault((r.family, r.size, r.seed), []).append(r)
    best = []
    for group in groups.values():
        top = min(group, key=_loss)
        if not math.isfinite(top.final_bpc):
            continue
        finals = {r.lr: _loss(r) for r in group}
        at_edge = len(finals) < 3 or sweep_edge(finals) is not None
        best.append(Best(top, tuple(sorted(finals)), at_edge))
    return sorted(best, key=lambda b: _order(b.family, b.params, -1 if b.seed is None else b.seed))


# ------------------------------------------------------------------------------------------------- scaling


def _by_family_size(best: list[Best]) -> dict[str, dict[str, list[Best]]]:
    out: dict[str, dict[str, list[Best]]] = {}
    for b in sorted(best, key=lambda b: _order(b.family, b.params)):
        out.setdefault(b.family, {}).setdefault(b.size, []).append(b)
    return out


def scaling_table(best: Iterable[Best]) -> list[dict]:
    """One row per (family, size): parameters (mean over seeds), seeds, validation bpc mean / min / max over
    seeds, each seed's best learning rate, and whether any of them sits at the sweep's edge."""
    best = _check_list("best", best, Best)
    rows = []
    for family, sizes in _by_family_size(best).items():
        for size, group in sizes.items():
            bpcs = [b.bpc for b in group]
            rows.append(
                {"family": family, "size": size, "params": round(sum(b.params for b in group) / len(group)),
                 "seeds": len(group), "val bpc": sum(bpcs) / len(bpcs), "min": min(bpcs), "max": max(bpcs),
                 "best lr": ", ".join(f"{b.lr:g}" for b in group), "lr at edge": any(b.at_edge for b in group)}
            )  # fmt: skip
    return sorted(rows, key=lambda r: _order(r["family"], r["params"]))


def _check_unigram(unigram_bpc) -> None:
    if unigram_bpc is not None and not (
        _number(unigram_bpc) and math.isfinite(unigram_bpc) and unigram_bpc > 0
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
    best = _check_list("best", best, Best)
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
    runs: Iterable[Run], size: str, x: str = "tokens", unigram_bpc: float | None = None
) -> Figure:
    """Validation bpc against characters seen (``x="tokens"``) or wall-clock seconds (``x="wall"``: since the
    start of the run, evaluations and checkpoints included, on the device named in the title) for the best
    run (:func:`best_runs`) of each family, and each seed, at ``size``."""
    runs = _check_list("runs", runs, Run)
    if x not in ("tokens", "wall"):
        raise ValueError(f"x must be 'tokens' or 'wall', got {x!r}")
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
        xs = hist["tokens"] if x == "tokens" else hist["time"]
        label = f"{b.family} (lr {b.lr:g}{f', seed {b.seed}' if many else ''})"
        ax.plot(xs, hist["val_bpc"], "o-", ms=3, color=f"C{i}", label=label)
    devices = sorted({b.run.device for b in best})
    ax.set_xlabel("characters seen" if x == "tokens" else "wall-clock seconds (evaluations included)")
    ax.set_ylabel("validation bits per character")
    ax.set_title(f"{size}, best learning rate of each family ({', '.join(devices)})", fontsize=10)
    _finish(ax, fig, unigram_bpc)
    return fig


# ----------------------------------------------------------------------------------------- matched ratio


def _curve(sizes: dict[str, list[Best]], pick) -> list[tuple[float, float]]:
    """(log10 mean params, pick(seeds' bpc)) per size, ascending in params."""
    pts = [(math.log10(sum(b.params for b in g) / len(g)), pick([b.bpc for b in g])) for g in sizes.values()]
    return sorted(pts)


def _params_for(curve: list[tuple[float, float]], loss: float) -> float | None:
    """The fewest parameters at which the piecewise-linear curve (log10 params -> bpc) reaches ``loss``;
    None outside the curve's range of losses."""
    if len(curve) == 1:
        return 10 ** curve[0][0] if loss == curve[0][1] else None
    for (x0, y0), (x1, y1) in zip(curve, curve[1:]):
        if min(y0, y1) <= loss <= max(y0, y1):
            t = 0.0 if y0 == y1 else (loss - y0) / (y1 - y0)
            return 10 ** (x0 + t * (x1 - x0))
    return None


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def matched_ratio(
    best: Iterable[Best], family: str = "mamba", reference: str = "transformer++"
) -> list[dict]:
    """For each size of ``family``: how many parameters ``reference`` needs for the same validation loss.

    The reference's loss is interpolated piecewise-linearly in log10(parameters) between the sizes it was
    measured at (the mean over seeds at each size, at the mean parameter count), and inverted: where the
    curve is not monotone, the fewest parameters that reach the loss count. Nothing is extrapolated: a loss
    outside the reference's measured range gives ``reference_params`` and ``ratio`` None, with the reason.

    Returns one dict per size of ``family``, ascending in parameters: ``size``, ``params``, ``bpc`` (mean over
    seeds), ``reference_params``, ``ratio`` = reference_params / params (> 1: ``family`` is the more
    parameter-efficient), ``ratio_low`` / ``ratio_high`` and ``reason`` (None when there is a ratio). The
    uncertainty is the min/max over seeds of both families: ``ratio_low`` puts ``family``'s worst seed (its
    highest bpc at that size) against the reference's best seeds (the lowest bpc at each of its sizes),
    ``ratio_high`` its best seed against the reference's worst; each is None where that loss falls outside
    that curve's range. With one seed per family the three ratios agree.
    """
    best = _check_list("best", best, Best)
    groups = _by_family_size(best)
    for name, value in (("family", family), ("reference", reference)):
        if value not in groups:
            raise ValueError(f"{name} must be a family of best, one of {list(groups)}, got {value!r}")
    if family == reference:
        raise ValueError(f"family and reference must differ, got {family!r} for both")
    ref = groups[reference]
    curves = {pick: _curve(ref, pick) for pick in (_mean, min, max)}
    lo, hi = min(y for _, y in curves[_mean]), max(y for _, y in curves[_mean])
    rows = []
    for size, group in groups[family].items():
        params = sum(b.params for b in group) / len(group)
        bpcs = [b.bpc for b in group]
        need = _params_for(curves[_mean], _mean(bpcs))
        low, high = _params_for(curves[min], max(bpcs)), _params_for(curves[max], min(bpcs))
        reason = None
        if need is None:
            reason = (
                f"{family} at {size} reaches {_mean(bpcs):.4f} bpc, outside the {reference}'s measured range "
                f"{lo:.4f} to {hi:.4f} bpc (sizes {', '.join(ref)}): no extrapolation"
            )
        rows.append(
            {"size": size, "params": params, "bpc": _mean(bpcs), "reference_params": need,
             "ratio": None if need is None else need / params,
             "ratio_low": None if low is None else low / params,
             "ratio_high": None if high is None else high / params, "reason": reason}
        )  # fmt: skip
    return sorted(rows, key=lambda r: r["params"])


# ------------------------------------------------------------------------------------------------- samples


def samples_table(best: Iterable[Best], size: str, width: int = 28, seed: int | None = None) -> str:
    """The text each family generated at ``size`` (its best run), in columns side by side, under the prompt.

    Each column is one family (order of ``FAMILIES``): a header (family, parameters, validation bpc), then
    the sample's lines cut every ``width`` characters. ``seed``: whose runs (default: the smallest seed
    of each family).
    """
    best = _check_list("best", best, Best)
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
    if not (_number(peak) and math.isfinite(peak) and peak > 0):
        raise ValueError(f"peak must be a positive number, got {peak!r}")
    if not (_number(final_frac) and 0 <= final_frac <= 1):
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
    if not all(_number(v) for k in _LIVE_KEYS for v in hist[k]):
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
    if not all(_number(v) and math.isfinite(v) and v > 0 for v in baselines.values()):
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
