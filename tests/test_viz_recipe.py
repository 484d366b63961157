"""minimamba.viz.recipe against real files: scripts/run_synthetic.py's paper-recipe runs at tiny sizes on CPU
(induction heads and selective copying, two seeds, an out-of-memory test length recorded by the script
itself), each file read back here with json."""

import json
import re
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from script_modules import load_script

from minimamba import committed
from minimamba.viz.recipe import (
    MODELS,
    NOT_RUN,
    OOM,
    RECIPE_FILE,
    load_recipe,
    plot_recipe_extrapolation,
    recipe_table,
)
from minimamba.viz.synthetic import PAPER_TABLE1, PAPER_TABLE11, load_synthetic

BUDGET_FILES = ("synthetic_induction_s6.json", "synthetic_copy256_lti.json")  # the older format, committed


def _script():
    return load_script("run_synthetic")


def _run(script, out: Path, *argv: str) -> None:
    base = [
        "--tiny",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(out),
        "--ckpt-dir",
        str(out.parent / "ck"),
    ]
    assert script.main([*base, *argv]) == 0


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """res: induction (s6 with seeds 0 and 1, lstm, transformer), copy (s6, lstm) and two budget-run files;
    oom: s6 and a transformer that ran out of memory from L = 32 on; mixed: oom plus a transformer seed 1."""
    root = tmp_path_factory.mktemp("recipe")
    script = _script()
    res, oom, mixed = root / "res", root / "oom", root / "mixed"
    _run(script, res, "--task", "induction", "--model", "s6,lstm,transformer")
    _run(script, res, "--task", "induction", "--model", "s6", "--seed", "1")
    _run(script, res, "--task", "copy", "--model", "s6,lstm")
    for name in BUDGET_FILES:
        shutil.copy(committed.RESULTS / name, res / name)
    real = script.accuracy_at_length

    def out_of_memory_from_32(model, model_name, L, *args):
        if L >= 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")
        return real(model, model_name, L, *args)

    oom.mkdir()
    shutil.copy(res / "synthetic_induction16_s6_seed0.json", oom)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(script, "accuracy_at_length", out_of_memory_from_32)
        _run(script, oom, "--task", "induction", "--model", "transformer")
    shutil.copytree(oom, mixed)
    _run(script, mixed, "--task", "induction", "--model", "transformer", "--seed", "1")
    return {"res": res, "oom": oom, "mixed": mixed}


def _files(folder: Path) -> dict[tuple[str, int, str, int], dict]:
    """The recipe files of ``folder`` read with json, keyed by their own config."""
    out = {}
    for path in folder.glob("synthetic_*_seed*.json"):
        doc = json.loads(path.read_text())
        c = doc["config"]
        out[(c["task"], c["train_length"], c["model"], c["seed"])] = doc
    return out


def _mean_percent(values) -> float:
    return round(100 * sum(values) / len(values), 1)


def _label(L: int) -> str:
    return f"2^{L.bit_length() - 1}"


# ------------------------------------------------------------------------------------------------------ loader


def test_file_names_and_models_are_the_scripts():
    script = _script()
    assert list(MODELS) == list(script.MODELS)
    for task in script.RECIPES:
        for model in script.MODELS:
            name = script.paper_run_name(task, model, 4096, 3) + ".json"
            m = RECIPE_FILE.fullmatch(name)
            assert m is not None and m.groups() == (task, "4096", model, "3")
    for name in BUDGET_FILES:
        assert RECIPE_FILE.fullmatch(name) is None


def test_loader_reads_every_run_as_its_file_says(folders):
    files = _files(folders["res"])
    runs = load_recipe(folders["res"])
    assert {(t, L, m) for t, L, m, _ in files} == set(runs)
    assert sorted(runs[("induction", 16, "s6")]) == [0, 1]
    for (task, L, model, seed), doc in files.items():
        run = runs[(task, L, model)][seed]
        hist, meta = doc["history"], doc["meta"]
        assert (run.task, run.train_length, run.model, run.seed) == (task, L, model, seed)
        assert run.val_accuracy == hist["val_accuracy"][-1]
        assert (run.steps, run.wall_time, run.device, run.done) == (
            meta["steps"],
            meta["wall_time"],
            meta["device"],
            meta["done"],
        )
        assert run.test == {int(k): r["accuracy"] for k, r in hist["test"].items()}
        assert bool(run.test) == (task == "induction")
    # the budget runs are not recipe runs, and load_synthetic reads the budget runs only
    assert set(load_synthetic(folders["res"])) == {
        n.removeprefix("synthetic_").removesuffix(".json") for n in BUDGET_FILES
    }


def test_out_of_memory_is_marked_not_zero(folders):
    doc = json.loads((folders["oom"] / "synthetic_induction16_transformer_seed0.json").read_text())
    recorded = doc["history"]["test"]
    assert "error" in recorded["32"] and "error" in recorded["64"]  # what the script wrote there
    run = load_recipe(folders["oom"])[("induction", 16, "transformer")][0]
    assert run.test == {8: recorded["8"]["accuracy"], 16: recorded["16"]["accuracy"], 32: OOM, 64: OOM}


# ------------------------------------------------------------------------------------------------------ tables


def test_induction_table_against_the_files(folders):
    files = _files(folders["res"])
    rows = recipe_table("induction", folders["res"])
    tested = sorted({int(L) for d in files.values() for L in d["history"]["test"]})
    lengths = sorted({*PAPER_TABLE11["Mamba"], *tested})
    assert list(rows[0]) == ["model", "L train", "seeds", "done", "steps", *map(_label, lengths)]
    assert [r["model"] for r in rows] == [
        "S6",
        "LSTM",
        "Transformer++",
        *(f"paper: {m}" for m in PAPER_TABLE11),
    ]
    for row, model in zip(rows, ("s6", "lstm", "transformer")):
        docs = [d for (t, _, m, _), d in files.items() if t == "induction" and m == model]
        assert row["seeds"] == len(docs) and row["done"] == f"{len(docs)}/{len(docs)}"
        assert (
            row["steps"] == docs[0]["meta"]["steps"] and row["L train"] == docs[0]["config"]["train_length"]
        )
        for L in lengths:
            accs = [d["history"]["test"][str(L)]["accuracy"] for d in docs if str(L) in d["history"]["test"]]
            assert row[_label(L)] == (_mean_percent(accs) if accs else NOT_RUN), (model, L)
    for row, (name, paper) in zip(rows[3:], PAPER_TABLE11.items()):
        for L in lengths:
            want = NOT_RUN if L not in paper else OOM if paper[L] is None else paper[L]
            assert row[_label(L)] == want, (name, L)


def test_induction_table_out_of_memory_cells(folders):
    only = {r["model"]: r for r in recipe_table("induction", folders["oom"])}["Transformer++"]
    assert only["2^5"] == only["2^6"] == OOM and isinstance(only["2^4"], float)
    # another seed that did measure these lengths: its accuracy, not OOM
    seed1 = json.loads((folders["mixed"] / "synthetic_induction16_transformer_seed1.json").read_text())
    mixed = {r["model"]: r for r in recipe_table("induction", folders["mixed"])}["Transformer++"]
    for L in (32, 64):
        assert mixed[_label(L)] == _mean_percent([seed1["history"]["test"][str(L)]["accuracy"]])
    assert mixed["seeds"] == 2


def test_copy_table_against_the_files(folders):
    files = {k: d for k, d in _files(folders["res"]).items() if k[0] == "copy"}
    rows = recipe_table("copy", folders["res"])
    ours = {r["model"]: r for r in rows if not r["model"].startswith("paper")}
    assert set(ours) == {MODELS[m] for _, _, m, _ in files}
    for (_, L, model, _), doc in files.items():
        row = ours[MODELS[model]]
        assert row["L"] == L and row["accuracy %"] == _mean_percent([doc["history"]["val_accuracy"][-1]])
    paper = [r for r in rows if r["model"].startswith("paper")]
    assert [(r["model"], r["L"], r["accuracy %"]) for r in paper] == [
        (f"paper: {arch} / {layer}", 4096, acc) for (arch, layer), acc in PAPER_TABLE1.items()
    ]


# ------------------------------------------------------------------------------------------------------ figure


def test_plot_lines_are_the_table(folders):
    for folder in (folders["res"], folders["oom"]):
        rows = recipe_table("induction", folder)
        fig = plot_recipe_extrapolation(folder)
        (ax,) = fig.axes
        lines = {line.get_label(): line for line in ax.lines}
        for row in rows:
            cells = {int(k[2:]): v for k, v in row.items() if k.startswith("2^")}
            if row["model"].startswith("paper"):
                label, want = row["model"], {p: v for p, v in cells.items() if isinstance(v, (int, float))}
            else:
                label, want = (
                    f"{row['model']} (ours)",
                    {p: v for p, v in cells.items() if isinstance(v, float)},
                )
            line = lines[label]
            assert [round(float(x)).bit_length() - 1 for x in line.get_xdata()] == list(want)
            assert list(line.get_ydata()) == list(want.values())
            oom = [p for p, v in cells.items() if v == OOM]
            if oom:
                marks = lines[f"_out of memory: {label}"]
                assert [round(float(x)).bit_length() - 1 for x in marks.get_xdata()] == oom
                assert all(y < 0 for y in marks.get_ydata())  # on the band below 0 %, not at 0 %
            else:
                assert f"_out of memory: {label}" not in lines
        assert ax.get_xscale() == "log" and ax.get_xlabel() and ax.get_ylabel()
        assert any(list(line.get_xdata()) == [16, 16] for line in ax.lines)  # the training length
        assert tuple(fig.get_size_inches()) == (7, 4)
        (legend,) = fig.legends
        assert min(t.get_fontsize() for t in legend.get_texts()) >= 9
        assert "out of memory" in [t.get_text() for t in legend.get_texts()]  # MHA-Abs's, and ours in oom
        fig.canvas.draw()
        assert legend.get_window_extent().y1 <= ax.get_window_extent().y0  # below the axes, off the data
        plt.close(fig)
    # without the paper: our lines only, and no out-of-memory entry where none of ours ran out of memory
    fig = plot_recipe_extrapolation(folders["res"], paper=False)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "S6 (ours)",
        "LSTM (ours)",
        "Transformer++ (ours)",
    ]
    plt.close(fig)


# ------------------------------------------------------------------------------------------------------ errors


def test_no_runs_says_where_and_how(tmp_path, folders):
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))) as e:
        plot_recipe_extrapolation(tmp_path)
    assert "scripts/run_synthetic.py --task induction --model s6,lti,lstm,transformer" in str(e.value)
    copy_only = tmp_path / "copy_only"
    copy_only.mkdir()
    for path in folders["res"].glob("synthetic_copy*_seed*.json"):
        shutil.copy(path, copy_only)
    with pytest.raises(ValueError, match="no paper-recipe results of task 'induction'"):
        plot_recipe_extrapolation(copy_only)
    assert load_recipe(tmp_path / "copy_only") and load_recipe(tmp_path) == {}
    with pytest.raises(ValueError, match=r"task must be one of \['induction', 'copy'\], got 'sorting'"):
        recipe_table("sorting", folders["res"])
    with pytest.raises(FileNotFoundError, match="results_dir must be a folder"):
        load_recipe(tmp_path / "nowhere")
    with pytest.raises(TypeError, match="results_dir must be a folder \\(str or Path\\), got int"):
        load_recipe(3)


def _edit(doc: dict, how: str) -> dict:
    if how == "no meta":
        del doc["meta"]
    elif how == "no done":
        del doc["meta"]["done"]
    elif how == "other error":
        doc["history"]["test"]["16"] = {"error": "RuntimeError: CUDA error: an illegal memory access"}
    elif how == "accuracy > 1":
        doc["history"]["test"]["8"]["accuracy"] = 1.5
    return doc


@pytest.mark.parametrize(
    ("how", "msg"),
    [
        ("not json", "not JSON"),
        ("no meta", '"config", "history" and "meta"'),
        ("no done", r"meta\['done'\] is missing"),
        ("other error", r"history\[\"test\"\]\['16'\] has neither an accuracy"),
        ("accuracy > 1", r"history\[\"test\"\]\['8'\] has neither an accuracy"),
        ("renamed", r"config\['seed'\] is 0, the file name says 7"),
    ],
)
def test_malformed_file_is_named(tmp_path, folders, how, msg):
    src = folders["res"] / "synthetic_induction16_lstm_seed0.json"
    path = tmp_path / ("synthetic_induction16_lstm_seed7.json" if how == "renamed" else src.name)
    if how == "not json":
        path.write_text(src.read_text()[:100])
    else:
        path.write_text(json.dumps(_edit(json.loads(src.read_text()), how)))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + msg):
        load_recipe(tmp_path)
