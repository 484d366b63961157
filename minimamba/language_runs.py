"""Does it model language? The runs of ``scripts/run_language.py``, read and compared.

The script trains four families (:data:`minimamba.language.FAMILIES`) at matched sizes on Shakespeare
characters, a few peak learning rates each, and writes one JSON per run,
``language_<size>_<family>_lr<lr>_seed<seed>.json`` (:func:`minimamba.train.save_results`). Here:

- :func:`load_runs` reads a folder of them (the committed ``results/language/`` by default) into
  :class:`Run` records; :func:`best_runs` keeps, per family, size and seed, the finished run of lowest final
  validation loss over the learning-rate sweep (:class:`Best`), and says whether that rate sits at the edge
  of the sweep (:func:`minimamba.language.sweep_edge`);
- :func:`matched_ratio`: the paper's claim that Mamba "matches Transformers twice its size" (Gu & Dao 2023,
  abstract, for Mamba-3B; the scaling laws of §4.2.1, Figure 4), asked of these runs: how many parameters
  the reference family needs for the same loss, by interpolation between the sizes measured, never beyond;
- :func:`load_throughput`: the training speed of each model timed alone (``run_language.py --time-steps``),
  for comparing the families against wall-clock time when the sweep ran its jobs side by side.

:mod:`minimamba.viz.language` draws them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from minimamba import committed
from minimamba.language import FAMILIES, sweep_edge
from minimamba.train import load_results

__all__ = ["Best", "Run", "best_runs", "load_runs", "load_throughput", "matched_ratio"]


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


def is_number(x) -> bool:
    """A real number, bool excluded (JSON fields and plot arguments are checked with it)."""
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
    if not (is_number(config.get("lr")) and config["lr"] > 0):
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
    if not all(is_number(v) for k in keys for v in hist[k]):
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


def family_order(family: str, params: float, *rest):
    """Sort key: the order of ``FAMILIES``, then parameters, then ``rest``."""
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
    return sorted(
        runs, key=lambda r: family_order(r.family, r.params, -1 if r.seed is None else r.seed, r.lr)
    )


def check_list(name: str, items, kind: type) -> list:
    """``items`` as a non-empty list of ``kind``; TypeError or ValueError naming ``name`` otherwise."""
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
    runs = check_list("runs", runs, Run)
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
    return sorted(best, key=lambda b: family_order(b.family, b.params, -1 if b.seed is None else b.seed))


def by_family_size(best: list[Best]) -> dict[str, dict[str, list[Best]]]:
    """{family: {size: [Best of each seed]}}, families and sizes in :func:`family_order`."""
    out: dict[str, dict[str, list[Best]]] = {}
    for b in sorted(best, key=lambda b: family_order(b.family, b.params)):
        out.setdefault(b.family, {}).setdefault(b.size, []).append(b)
    return out


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
    best = check_list("best", best, Best)
    groups = by_family_size(best)
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


def load_throughput(folder: str | Path | None = None) -> dict[tuple[str, str], float]:
    """{(size, family): characters per second of training}, from ``<folder>/throughput.json``, written by
    ``scripts/run_language.py --time-steps N`` (each model timed alone on the device; default folder: the
    committed ``results/language/``). A sweep run with ``--parallel`` shares the GPU between its jobs, so its
    own wall-clock times say how busy the GPU was; these say how fast each model trains by itself. A model
    that did not fit on the device (a row with an ``error``) is left out."""
    if folder is None:
        folder = committed.results_folder("language")
    if not isinstance(folder, (str, Path)):
        raise TypeError(f"folder must be a path or None, got {type(folder).__name__}")
    path = Path(folder) / "throughput.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: run scripts/run_language.py --time-steps 20 --out {folder}")
    import json  # noqa: PLC0415

    try:
        rows = json.loads(path.read_text())["rows"]
        out = {(r["size"], r["family"]): float(r["tokens_per_s"]) for r in rows if "error" not in r}
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a throughput file of run_language.py --time-steps ({e})") from e
    if not out or not all(v > 0 and math.isfinite(v) for v in out.values()):
        raise ValueError(f"{path} must list positive, finite characters per second for each model")
    return out
