"""The paper-recipe runs of notebook 08's tasks (Mamba §4.1, App. E.1): S6, LTI, LSTM and Transformer++.

``scripts/run_synthetic.py --model s6,lti,lstm,transformer --task {induction,copy}`` writes one file per run,
``<folder>/synthetic_<task><L>_<model>_seed<seed>.json`` (``minimamba.train.save_results``: ``config`` holds
the run's settings, ``history`` the training loss, the validation accuracy at the training length and, for
induction heads, ``test``: one entry per test length, an accuracy or the out-of-memory error the script
recorded; ``meta`` the device, steps, wall time and whether the run is ``done``).

- :func:`load_recipe` reads those files into :class:`RecipeRun` records, per (task, training length, model)
  and seed; files of other names (the budget runs of :mod:`minimamba.viz.synthetic`) are left alone.
- :func:`recipe_table` lays them out as the paper's Table 11 (induction heads, accuracy per test length) or
  Table 1 (selective copying), with the paper's rows below ours.
- :func:`plot_recipe_extrapolation` draws the induction-heads accuracy against the test length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from minimamba import committed
from minimamba.train import load_results
from minimamba.viz.synthetic import PAPER_TABLE1, PAPER_TABLE11

__all__ = [
    "MODELS",
    "NOT_RUN",
    "OOM",
    "RECIPE_FILE",
    "RecipeRun",
    "load_recipe",
    "plot_recipe_extrapolation",
    "recipe_table",
]

#: the name of a paper-recipe file: task, training length, model, seed
RECIPE_FILE = re.compile(r"synthetic_(induction|copy)(\d+)_([a-z0-9]+)_seed(\d+)\.json")
#: --model name -> label, in the order of the tables
MODELS = {"s6": "S6", "lti": "LTI", "lstm": "LSTM", "transformer": "Transformer++"}
_COLOURS = {"s6": "C0", "lti": "C1", "lstm": "C2", "transformer": "C3"}
#: a test length that ran out of memory, or that the script skipped after a shorter one did
OOM = "OOM"
#: a cell with no run behind it
NOT_RUN = "—"
_TASK_NAMES = {"induction": "induction heads", "copy": "selective copying"}
#: what the script records for a test length that ran out of memory, and for the longer ones it then skips
_OOM_ERRORS = ("out of memory", "skipped: out of memory")
_MAKE = "PYTHONPATH=. python scripts/run_synthetic.py --task {task} --model s6,lti,lstm,transformer --out {folder}"


@dataclass(frozen=True)
class RecipeRun:
    """One run of one seed, as its file records it.

    ``val_accuracy``: the last validation accuracy at the training length, in [0, 1] (None before the first
    evaluation). ``test`` (induction heads): test length -> accuracy in [0, 1], or :data:`OOM`.
    """

    task: str
    model: str
    train_length: int
    seed: int
    path: Path
    val_accuracy: float | None
    steps: int
    wall_time: float
    device: str
    done: bool
    test: dict[int, float | str] = field(default_factory=dict)


def _read(path: Path, task: str, L: int, model: str, seed: int) -> RecipeRun:
    """The RecipeRun of ``path``; ValueError naming the file if its contents do not fit its name or format."""

    def bad(what: str) -> ValueError:
        return ValueError(f"{path} is not a paper-recipe result of scripts/run_synthetic.py: {what}")

    doc = load_results(path, kind="a paper-recipe result of scripts/run_synthetic.py")
    config, hist, meta = doc["config"], doc["history"], doc["meta"]
    for key, want in (("task", task), ("train_length", L), ("model", model), ("seed", seed)):
        if config.get(key) != want:
            raise bad(f"config[{key!r}] is {config.get(key)!r}, the file name says {want!r}")
    for key, kind in (("steps", int), ("wall_time", (int, float)), ("done", bool), ("device", str)):
        if not isinstance(meta.get(key), kind) or (kind is int and isinstance(meta[key], bool)):
            raise bad(f"meta[{key!r}] is missing or not a {getattr(kind, '__name__', 'number')}")
    val = hist.get("val_accuracy")
    if not isinstance(val, list) or not all(_is_fraction(v) for v in val):
        raise bad('history["val_accuracy"] must be a list of accuracies in [0, 1]')
    tests = hist.get("test", {})
    if not isinstance(tests, dict):
        raise bad('history["test"] must be an object')
    test: dict[int, float | str] = {}
    for key, r in tests.items():
        if not (isinstance(key, str) and key.isdigit() and isinstance(r, dict)):
            raise bad(f'history["test"][{key!r}] must be a test length with an object')
        if "accuracy" in r and _is_fraction(r["accuracy"]):
            test[int(key)] = float(r["accuracy"])
        elif isinstance(r.get("error"), str) and r["error"].startswith(_OOM_ERRORS):
            test[int(key)] = OOM
        else:
            raise bad(
                f'history["test"][{key!r}] has neither an accuracy in [0, 1] nor an out-of-memory error'
            )
    return RecipeRun(
        task=task,
        model=model,
        train_length=L,
        seed=seed,
        path=path,
        val_accuracy=float(val[-1]) if val else None,
        steps=meta["steps"],
        wall_time=float(meta["wall_time"]),
        device=meta["device"],
        done=meta["done"],
        test=dict(sorted(test.items())),
    )


def _is_fraction(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1


def _model_order(model: str) -> tuple[int, str]:
    return (list(MODELS).index(model) if model in MODELS else len(MODELS), model)


def load_recipe(
    results_dir: str | Path = committed.RESULTS,
) -> dict[tuple[str, int, str], dict[int, RecipeRun]]:
    """Every paper-recipe file of ``results_dir``: {(task, training length, model): {seed: RecipeRun}}.

    Keys are sorted by task, training length and model (:data:`MODELS`' order); an empty dict when there is
    none. Only names matching :data:`RECIPE_FILE` are read; such a file that does not hold what the script
    writes raises ValueError naming it.
    """
    if not isinstance(results_dir, (str, Path)):
        raise TypeError(f"results_dir must be a folder (str or Path), got {type(results_dir).__name__}")
    folder = Path(results_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"results_dir must be a folder, got {str(results_dir)!r}: no such folder")
    runs: dict[tuple[str, int, str], dict[int, RecipeRun]] = {}
    for path in sorted(folder.iterdir()):
        m = RECIPE_FILE.fullmatch(path.name)
        if m is None or not path.is_file():
            continue
        task, L, model, seed = m[1], int(m[2]), m[3], int(m[4])
        runs.setdefault((task, L, model), {})[seed] = _read(path, task, L, model, seed)
    order = lambda key: (key[0], key[1], _model_order(key[2]))  # noqa: E731
    return {key: dict(sorted(runs[key].items())) for key in sorted(runs, key=order)}


def _runs_of(task: str, results_dir: str | Path) -> dict[tuple[int, str], dict[int, RecipeRun]]:
    if task not in _TASK_NAMES:
        raise ValueError(f"task must be one of {list(_TASK_NAMES)}, got {task!r}")
    runs = {(L, model): r for (t, L, model), r in load_recipe(results_dir).items() if t == task}
    if not runs:
        raise ValueError(
            f"no paper-recipe results of task {task!r} (synthetic_{task}<L>_<model>_seed<seed>.json) in "
            f"{results_dir}; make them with `{_MAKE.format(task=task, folder=results_dir)}` (on a GPU)"
        )
    return runs


def _percent(values: list[float]) -> float:
    """The mean of accuracies in [0, 1], in %, to one decimal."""
    return round(100 * sum(values) / len(values), 1)


def _cell(seeds: Mapping[int, RecipeRun], L: int) -> float | str:
    """The accuracy % at test length ``L``, mean over the seeds that measured it; :data:`OOM` if every seed
    that reached ``L`` ran out of memory there; :data:`NOT_RUN` if none reached it."""
    found = [r.test[L] for r in seeds.values() if L in r.test]
    accs = [a for a in found if a != OOM]
    if accs:
        return _percent(accs)
    return OOM if found else NOT_RUN


def _span(values: list[int]) -> int | str:
    return values[0] if min(values) == max(values) else f"{min(values)}–{max(values)}"


def _length_label(L: int) -> str:
    p = L.bit_length() - 1
    return f"2^{p}" if L == 2**p else str(L)


def _run_cells(seeds: Mapping[int, RecipeRun]) -> dict:
    rs = list(seeds.values())
    return {
        "seeds": len(rs),
        "done": f"{sum(r.done for r in rs)}/{len(rs)}",
        "steps": _span([r.steps for r in rs]),
    }


_PAPER_CELLS = dict.fromkeys(("seeds", "done", "steps"), NOT_RUN)


def recipe_table(task: str, results_dir: str | Path = committed.RESULTS) -> list[dict]:
    """The runs of ``task`` ("induction" or "copy") in ``results_dir`` as table rows, ours then the paper's.

    - induction: one row per (model, training length) with the accuracy % per test length (columns "2^6" …
      "2^20", plus any other length the runs tested), beside Table 11's rows (trained at 2^8);
    - copy: one row per (model, training length) with the last validation accuracy % at the training length,
      beside Table 1's rows (L = 4096).

    Every row has the same keys; ours also say how many seeds ran, how many are done and their steps. A cell
    is the mean over seeds, :data:`OOM` where it ran out of memory, :data:`NOT_RUN` where nothing ran.
    Raises ValueError when the folder holds no run of ``task``.
    """
    runs = _runs_of(task, results_dir)
    rows = []
    if task == "induction":
        # Table 11 of the paper: induction heads trained at 2^8, accuracy % per test length 2^6 … 2^20
        lengths = sorted(
            {*PAPER_TABLE11["Mamba"], *(L for s in runs.values() for r in s.values() for L in r.test)}
        )
        for (L_train, model), seeds in runs.items():
            row = {"model": MODELS.get(model, model), "L train": L_train, **_run_cells(seeds)}
            rows.append(row | {_length_label(L): _cell(seeds, L) for L in lengths})
        for name, accs in PAPER_TABLE11.items():
            row = {"model": f"paper: {name}", "L train": 256, **_PAPER_CELLS}
            cells = {
                _length_label(L): NOT_RUN if L not in accs else OOM if accs[L] is None else accs[L]
                for L in lengths
            }
            rows.append(row | cells)
        return rows
    for (L_train, model), seeds in runs.items():
        accs = [r.val_accuracy for r in seeds.values() if r.val_accuracy is not None]
        row = {"model": MODELS.get(model, model), "L": L_train, **_run_cells(seeds)}
        rows.append(row | {"accuracy %": _percent(accs) if accs else NOT_RUN})
    # Table 1 of the paper: selective copying at L = 4096, accuracy % per architecture and inner layer
    for (arch, layer), acc in PAPER_TABLE1.items():
        rows.append({"model": f"paper: {arch} / {layer}", "L": 4096, **_PAPER_CELLS, "accuracy %": acc})
    return rows


#: where the out-of-memory crosses sit on the accuracy axis: a band below 0 %, ours above the paper's
_OOM_Y, _OOM_Y_PAPER = -7.0, -13.0
_PAPER_STYLE = {"Mamba": "C0", "H3": "C4", "MHA-Abs": "C5"}


def plot_recipe_extrapolation(results_dir: str | Path = committed.RESULTS, paper: bool = True) -> Figure:
    """Induction heads: accuracy % against test length (log₂ x) for every model in ``results_dir``.

    Solid lines with dots: ours, labelled "<model> (ours)" (the cells of :func:`recipe_table`); dashed:
    the paper's Table 11 rows, "paper: <model>" (with ``paper``); crosses on the band below 0 %: lengths that
    ran out of memory (lines labelled "_out of memory: <label>", kept out of the legend); dotted vertical
    lines: the training lengths. Raises ValueError naming the folder when it holds no induction-heads run.
    """
    runs = _runs_of("induction", results_dir)
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    several = len({L for L, _ in runs}) > 1
    any_oom = False
    for i, ((L_train, model), seeds) in enumerate(runs.items()):
        colour = _COLOURS.get(model, f"C{6 + i % 4}")
        label = MODELS.get(model, model) + (f", trained at {L_train}" if several else "") + " (ours)"
        cells = {L: _cell(seeds, L) for L in sorted({L for r in seeds.values() for L in r.test})}
        acc = {L: c for L, c in cells.items() if isinstance(c, float)}
        ax.plot(list(acc), list(acc.values()), "o-", color=colour, ms=4, label=label)
        oom = [L for L, c in cells.items() if c == OOM]
        if oom:
            any_oom = True
            ax.plot(
                oom, [_OOM_Y] * len(oom), "x", color=colour, ms=7, mew=2, label=f"_out of memory: {label}"
            )
    if paper:
        for name, accs in PAPER_TABLE11.items():
            label, colour = f"paper: {name}", _PAPER_STYLE[name]
            ok = [L for L, v in accs.items() if v is not None]
            ax.plot(ok, [accs[L] for L in ok], "--", color=colour, alpha=0.7, label=label)
            oom = [L for L, v in accs.items() if v is None]
            if oom:
                any_oom = True
                ax.plot(oom, [_OOM_Y_PAPER] * len(oom), "x", color=colour, alpha=0.7, ms=6,
                        label=f"_out of memory: {label}")  # fmt: skip
    ax.axhspan(_OOM_Y_PAPER - 4, _OOM_Y + 4, color="0.93", zorder=0)
    for L_train in sorted({L for L, _ in runs}):
        ax.axvline(L_train, color="k", lw=1, ls=":")
        ax.annotate(f"trained at {L_train}", (L_train, 50), rotation=90, ha="right", va="center", fontsize=9)
    ax.set_xscale("log", base=2)
    ax.set_yticks([(_OOM_Y + _OOM_Y_PAPER) / 2, 0, 25, 50, 75, 100], ["OOM", "0", "25", "50", "75", "100"])
    ax.set(xlabel="test sequence length L", ylabel="accuracy % (last token)", ylim=(_OOM_Y_PAPER - 4, 104))
    ax.set_title("induction heads: length extrapolation (Mamba App. E.1 recipe)", fontsize=11)
    ax.tick_params(labelsize=9)
    handles, _ = ax.get_legend_handles_labels()
    if any_oom:
        handles.append(Line2D([], [], ls="", marker="x", color="0.3", mew=2, label="out of memory"))
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=9, frameon=False)
    return fig
