"""Notebook 12's analysis (minimamba.language_runs and minimamba.viz.language): real files of scripts/run_language.py --smoke read back
against the JSON read here, the matched-size ratio against the closed form of a constructed scaling law,
the plotted data against the tables (and, for a run held in memory, against the schedule's closed form and
the histories given), and the errors."""

import json
import math
import shutil
from pathlib import Path

import pytest
from script_modules import load_script

from minimamba import committed
from minimamba.language import FAMILIES
from minimamba.language_runs import Best, Run, best_runs, load_runs, load_throughput, matched_ratio
from minimamba.viz.language import (
    plot_curves,
    plot_live,
    plot_scaling,
    plot_schedule,
    samples_table,
    scaling_table,
)


def _script():
    return load_script("run_language")


@pytest.fixture(scope="module")
def out(corpus_dir, tmp_path_factory):
    """One smoke sweep, run once: mamba and lstm at lr 1e-3; lstm also at 2e-3, 4e-3 and at 8e-3 stopped
    after 4 of its 6 steps (unfinished); lstm at 1e-3 with seed 1, in the same folder
    and with --resume (the finished seed-0 run must not count as this one)."""
    folder = tmp_path_factory.mktemp("results") / "language"
    main = _script().main
    common = ["--smoke", "--data", str(corpus_dir), "--no-progress"]
    assert main([*common, "--families", "mamba,lstm", "--lrs", "1e-3", "--out", str(folder)]) == 0
    for lr in ("2e-3", "4e-3"):
        assert main([*common, "--families", "lstm", "--lrs", lr, "--out", str(folder)]) == 0
    assert (
        main([*common, "--families", "lstm", "--lrs", "8e-3", "--stop-after", "4", "--out", str(folder)]) == 0
    )
    assert (
        main(
            [*common, "--families", "lstm", "--lrs", "1e-3", "--seed", "1", "--resume", "--out", str(folder)]
        )
        == 0
    )
    return folder


def _docs(folder: Path) -> dict[Path, dict]:
    return {p: json.loads(p.read_text()) for p in sorted(folder.rglob("language_*.json"))}


# ----------------------------------------------------------------------------------------------- real files


def test_load_runs_reads_every_file(out):
    docs = _docs(out)
    runs = load_runs(out)
    assert len(docs) == len(runs) == 6
    assert {r.path for r in runs} == set(docs)
    for r in runs:
        config, hist, meta = docs[r.path]["config"], docs[r.path]["history"], docs[r.path]["meta"]
        assert (r.family, r.size, r.lr, r.seed) == (
            config["family"],
            config["size"],
            config["lr"],
            config["seed"],
        )
        assert r.params == config["n_params"]
        assert r.final_bpc == hist["val_bpc"][-1] and r.best_bpc == min(hist["val_bpc"])
        assert r.tokens == hist["tokens"][-1] and r.wall_seconds == hist["time"][-1]
        assert r.finished is meta["done"] and r.device == meta["device"]
        assert r.sample == meta.get("sample") and r.history == hist
        assert r.unigram_bpc == meta["unigram_bpc"]
    unfinished = [r for r in runs if not r.finished]
    assert [(r.family, r.lr) for r in unfinished] == [("lstm", 8e-3)] and unfinished[0].sample is None
    assert unfinished[0].tokens == docs[unfinished[0].path]["config"]["tokens"] // 2  # 3 of 6 steps evaluated
    assert [r.family for r in runs] == sorted((r.family for r in runs), key=FAMILIES.index)


def test_best_runs_pick_the_lowest_final_loss_of_the_finished(out):
    docs = _docs(out)
    groups = {}
    for doc in docs.values():
        c = doc["config"]
        if doc["meta"]["done"]:
            groups.setdefault((c["family"], c["size"], c["seed"]), {})[c["lr"]] = doc["history"]["val_bpc"][
                -1
            ]
    best = best_runs(load_runs(out))
    assert (
        {(b.family, b.size, b.seed) for b in best}
        == set(groups)
        == {
            ("mamba", "0.5M", 0),
            ("lstm", "0.5M", 0),
            ("lstm", "0.5M", 1),
        }
    )
    for b in best:
        finals = groups[(b.family, b.size, b.seed)]
        assert b.bpc == min(finals.values()) and finals[b.lr] == b.bpc
        assert b.lrs == tuple(sorted(finals))
        edge = len(finals) < 3 or b.lr in (min(finals), max(finals))
        assert b.at_edge is edge
    assert next(b for b in best if b.family == "lstm" and b.seed == 0).lrs == (1e-3, 2e-3, 4e-3)


def test_default_folder_is_the_committed_results_language(out, monkeypatch):
    monkeypatch.setattr(committed, "RESULTS", out.parent)
    assert load_runs() == load_runs(out)
    monkeypatch.setattr(committed, "RESULTS", out)  # no language/ inside
    with pytest.raises(FileNotFoundError, match="run_language"):
        load_runs()


def test_scaling_table_and_plot_on_real_files(out):
    docs = _docs(out).values()
    best = best_runs(load_runs(out))
    rows = scaling_table(best)
    assert [(r["family"], r["size"], r["seeds"]) for r in rows] == [("mamba", "0.5M", 1), ("lstm", "0.5M", 2)]
    lstm = {}
    for doc in docs:
        c = doc["config"]
        if c["family"] == "lstm" and doc["meta"]["done"]:
            lstm[c["seed"]] = min(lstm.get(c["seed"], math.inf), doc["history"]["val_bpc"][-1])
    assert rows[1]["val bpc"] == pytest.approx((lstm[0] + lstm[1]) / 2)
    assert (rows[1]["min"], rows[1]["max"]) == (min(lstm.values()), max(lstm.values()))
    fig = plot_scaling(best, unigram_bpc=next(iter(docs))["meta"]["unigram_bpc"])
    _check_scaling_plot(fig, best, rows, next(iter(docs))["meta"]["unigram_bpc"])


@pytest.mark.parametrize("x", ["tokens", "wall"])
def test_curves_plot_the_best_runs_histories(out, x):
    runs = load_runs(out)
    docs = _docs(out)
    fig = plot_curves(runs, "0.5M", x=x)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert len(lines) == 3  # mamba, lstm seed 0, lstm seed 1: the best of each sweep
    for b in best_runs(runs):
        line = lines[f"{b.family} (lr {b.lr:g}, seed {b.seed})"]
        hist = docs[b.run.path]["history"]
        assert list(line.get_xdata()) == hist["tokens" if x == "tokens" else "time"]
        assert list(line.get_ydata()) == hist["val_bpc"]
    assert ax.get_xlabel() and ax.get_ylabel() and docs[runs[0].path]["meta"]["device"] in ax.get_title()


def test_samples_table_puts_each_family_in_a_column(out):
    best = best_runs(load_runs(out))
    width = 12
    table = samples_table(best, "0.5M", width=width)
    lines = table.splitlines()
    prompt = _script().SAMPLE_PROMPT
    assert lines[0] == f"prompt (each column continues it): {prompt!r}" and lines[1] == ""
    head, body = lines[2:4], lines[5:]
    shown = [b for b in best if b.seed == 0]  # the smallest seed of each family, in FAMILIES order
    assert [b.family for b in shown] == ["mamba", "lstm"]
    w = max(width, *(len(f"{b.params / 1e6:.2f}M params, {b.bpc:.3f} bpc") for b in shown))
    for k, b in enumerate(shown):
        cut = slice(k * (w + 3), k * (w + 3) + w)
        assert head[0][cut].rstrip() == b.family
        assert head[1][cut].rstrip() == f"{b.params / 1e6:.2f}M params, {b.bpc:.3f} bpc"
        expected = []  # the sample's lines, each cut every `width` characters (an empty line stays one)
        for line in b.run.sample["text"].split("\n"):
            expected += [line[i : i + width] for i in range(0, len(line), width)] or [""]
        column = [row[cut].rstrip() for row in body]
        assert column[: len(expected)] == [e.rstrip() for e in expected]
        assert not any(column[len(expected) :])
    assert samples_table(best, "0.5M", seed=1).splitlines()[2].split() == ["lstm"]


# ------------------------------------------------------------------------------------------ synthetic records


def fake(family, size, params, bpc, seed=0, lr=1e-3, finished=True, history=None):
    hist = history or {"step": [1], "tokens": [64], "time": [1.0], "val_bpc": [bpc]}
    return Run(Path(f"{family}_{size}_{seed}_{lr}.json"), size, family, lr, seed, params, bpc, bpc, 64, 1.0,
               finished, "cpu", None, hist)  # fmt: skip


def test_best_runs_over_a_sweep():
    runs = [
        fake("mamba", "2M", 2_000_000, 2.1, lr=1e-3),
        fake("mamba", "2M", 2_000_000, 1.9, lr=2e-3),
        fake("mamba", "2M", 2_000_000, 2.0, lr=4e-3),
        fake("mamba", "2M", 2_000_000, 1.5, lr=8e-3, finished=False),  # lower, but unfinished
        fake("lstm", "2M", 2_000_000, 2.3, lr=1e-3),
        fake("lstm", "2M", 2_000_000, 2.2, lr=2e-3),
        fake("lstm", "2M", 2_000_000, math.nan, lr=4e-3),  # diverged: tried, never picked
        fake("lstm", "6M", 6_000_000, 1.0, finished=False),  # no finished run: no best
    ]
    best = best_runs(runs)
    assert [(b.family, b.size, b.lr, b.lrs, b.at_edge) for b in best] == [
        ("mamba", "2M", 2e-3, (1e-3, 2e-3, 4e-3), False),
        ("lstm", "2M", 2e-3, (1e-3, 2e-3, 4e-3), False),
    ]
    edge = best_runs(
        [fake("mamba", "2M", 2_000_000, v, lr=lr) for v, lr in ((2.1, 1e-3), (2.0, 2e-3), (1.9, 4e-3))]
    )
    assert edge[0].lr == 4e-3 and edge[0].at_edge is True


def test_samples_table_keeps_empty_lines_and_cuts_long_ones():
    text = "To be\n\n" + "x" * 25 + "\ttail"
    with_sample = fake("mamba", "2M", 2_000_000, 1.5)
    with_sample = Run(**{**with_sample.__dict__, "sample": {"prompt": "P\n", "text": text}})
    best = best_runs([with_sample, fake("lstm", "2M", 2_000_000, 2.5)])
    lines = samples_table(best, "2M", width=10).splitlines()
    assert lines[0].endswith(repr("P\n"))
    w = len("2.00M params, 1.500 bpc")  # the widest header sets the column width (above width=10)
    column = [row[:w].rstrip() for row in lines[5:]]
    # "To be", the empty line, then 25 x's and the tab (as a space) and "tail" cut every 10 characters
    assert column == ["To be", "", "x" * 10, "x" * 10, "xxxxx tail"]
    assert [row[w + 3 :] for row in lines[5:]] == ["(no sample)", "", "", "", ""]


#: a scaling law bpc = a - b * log10(params) for each family (the reference with a larger a: worse)
A, B_SLOPE = {"mamba": 3.5, "transformer++": 3.59}, 0.3
DELTA, EPS = 0.02, 0.01  # seed offsets: mamba's seeds at law ± DELTA, the reference's at law ± EPS
MAMBA = {"tiny": 5e4, "s": 3e5, "m": 1.1e6, "l": 4e6, "xl": 1.5e7}
REFERENCE = {"r1": 2e5, "r2": 1e6, "r3": 5e6, "r4": 2.1e7}


def _law(family, params):
    return A[family] - B_SLOPE * math.log10(params)


def _synthetic_best() -> list[Best]:
    runs = []
    for family, sizes, off in (("mamba", MAMBA, DELTA), ("transformer++", REFERENCE, EPS)):
        for size, p in sizes.items():
            for seed, sign in ((0, -1), (1, 1)):
                runs.append(fake(family, size, int(p), _law(family, int(p)) + sign * off, seed=seed))
    return best_runs(runs)


def test_matched_ratio_against_the_closed_form():
    # Mamba at p_m has loss a_m - b log10 p_m; the reference reaches it where a_t - b log10 p_t equals that:
    # log10 p_t = log10 p_m + (a_t - a_m) / b, so p_t / p_m = 10^((a_t - a_m) / b) at every size. Mamba's
    # worst seed (+DELTA) against the reference's best seeds (-EPS): 10^((a_t - a_m - DELTA - EPS) / b); its
    # best against their worst: 10^((a_t - a_m + DELTA + EPS) / b).
    gap = A["transformer++"] - A["mamba"]
    ratio, low, high = (10 ** ((gap + s * (DELTA + EPS)) / B_SLOPE) for s in (0, -1, 1))
    assert ratio == pytest.approx(2, rel=0.01)  # the law was built so: "twice its size"
    rows = matched_ratio(_synthetic_best(), "mamba", "transformer++")
    assert [r["size"] for r in rows] == list(MAMBA)
    lo_p, hi_p = min(REFERENCE.values()), max(REFERENCE.values())
    for r in rows:
        p = int(MAMBA[r["size"]])
        assert r["params"] == p and r["bpc"] == pytest.approx(_law("mamba", p))
        for key, value in (("ratio", ratio), ("ratio_low", low), ("ratio_high", high)):
            if lo_p <= p * value <= hi_p:  # the reference was measured there: interpolated, exact for a law
                assert r[key] == pytest.approx(value, rel=1e-9), (r["size"], key)  # linear in log10 params
            else:
                assert r[key] is None, (r["size"], key)
        if r["ratio"] is None:
            assert "no extrapolation" in r["reason"] and r["reference_params"] is None
        else:
            assert r["reason"] is None and r["reference_params"] == pytest.approx(p * ratio)
    assert [r["ratio"] is None for r in rows] == [True, False, False, False, True]  # tiny and xl outside


def test_matched_ratio_the_other_way_is_the_inverse():
    rows = matched_ratio(_synthetic_best(), "transformer++", "mamba")
    gap = A["transformer++"] - A["mamba"]
    assert [r["ratio"] for r in rows] == pytest.approx([10 ** (-gap / B_SLOPE)] * len(REFERENCE), rel=1e-9)


def test_matched_ratio_takes_the_fewest_params_on_a_non_monotone_reference():
    ref = [
        fake("transformer++", s, p, v)
        for s, p, v in (("a", 10**5, 3.0), ("b", 10**6, 2.0), ("c", 10**7, 2.5))
    ]
    (row,) = matched_ratio(best_runs([*ref, fake("mamba", "a", 10**5, 2.25)]))
    # 2.25 is reached on the first segment (3.0 -> 2.0) a quarter of the way from its end: 10^(5 + 0.75);
    # the second segment (2.0 -> 2.5) reaches it again at 10^6.5, more parameters
    assert row["reference_params"] == pytest.approx(10**5.75) and row["ratio"] == pytest.approx(10**0.75)


def test_scaling_plot_on_synthetic_records():
    best = _synthetic_best()
    rows = scaling_table(best)
    assert [r["params"] for r in rows if r["family"] == "mamba"] == [int(p) for p in MAMBA.values()]
    assert [r["val bpc"] for r in rows if r["family"] == "mamba"] == pytest.approx(
        [_law("mamba", int(p)) for p in MAMBA.values()]
    )
    _check_scaling_plot(plot_scaling(best), best, rows, None)


def _check_scaling_plot(fig, best, rows, unigram):
    (ax,) = fig.axes
    assert tuple(fig.get_size_inches()) == (7, 4) and ax.get_xscale() == "log"
    assert ax.get_xlabel() == "parameters" and "bits per character" in ax.get_ylabel()
    lines = {line.get_label(): line for line in ax.get_lines()}
    for family in {b.family for b in best}:
        mine = [r for r in rows if r["family"] == family]
        assert list(lines[family].get_xdata()) == [r["params"] for r in mine]
        assert list(lines[family].get_ydata()) == [r["val bpc"] for r in mine]
        seeds = lines[f"_{family} seeds"]
        expected = sorted((b.params, b.bpc) for b in best if b.family == family)
        assert sorted(zip(seeds.get_xdata(), seeds.get_ydata())) == expected
    if unigram is None:
        assert "unigram baseline" not in lines
    else:
        assert list(lines["unigram baseline"].get_ydata()) == [unigram, unigram]
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1  # beside the axes, off the data
    assert all(t.get_fontsize() >= 9 for t in legend.get_texts())
    assert all(t.get_fontsize() >= 9 for t in ax.get_xticklabels() + ax.get_yticklabels())


# ------------------------------------------------------------------------------------------------------ errors


def test_malformed_files_are_named(out, tmp_path):
    shutil.copytree(out, tmp_path / "ok")
    good = next((tmp_path / "ok").glob("language_*.json"))
    doc = json.loads(good.read_text())
    cases = {
        "not JSON": "{not json",
        "config.family": json.dumps({**doc, "config": {**doc["config"], "family": "rnn"}}),
        "history lists": json.dumps({**doc, "history": {**doc["history"], "val_bpc": []}}),
        '"config", "history" and "meta"': json.dumps({"config": {}, "history": {}}),
    }
    for i, (why, text) in enumerate(cases.items()):
        folder = tmp_path / f"bad{i}"
        folder.mkdir()
        (folder / "language_bad.json").write_text(text)
        with pytest.raises(ValueError, match=rf"language_bad\.json .*{why}"):
            load_runs(folder)
    (tmp_path / "ok" / "copy").mkdir()
    shutil.copy(good, tmp_path / "ok" / "copy" / good.name)
    with pytest.raises(ValueError, match=rf"{good.name} and .*{good.name} are both"):
        load_runs(tmp_path / "ok")
    with pytest.raises(FileNotFoundError, match="no language_"):
        load_runs(tmp_path / "ok" / "checkpoints")
    with pytest.raises(FileNotFoundError, match="folder"):
        load_runs(tmp_path / "missing")
    with pytest.raises(TypeError, match="folder"):
        load_runs(3)


def test_bad_arguments():
    best = _synthetic_best()
    runs = [b.run for b in best]
    with pytest.raises(TypeError, match="runs must be a list of Run"):
        best_runs(best)
    with pytest.raises(TypeError, match="runs"):
        best_runs("runs")
    with pytest.raises(ValueError, match="runs must not be empty"):
        best_runs([])
    with pytest.raises(TypeError, match="best must be a list of Best"):
        scaling_table(runs)
    with pytest.raises(ValueError, match="unigram_bpc"):
        plot_scaling(best, unigram_bpc=-1.0)
    with pytest.raises(ValueError, match="x must be 'tokens' or 'wall'"):
        plot_curves(runs, "s", x="steps")
    with pytest.raises(ValueError, match="size must be .* got '99M'"):
        plot_curves(runs, "99M")
    with pytest.raises(ValueError, match="family must be a family of best"):
        matched_ratio(best, family="lstm")
    with pytest.raises(ValueError, match="reference must be a family of best"):
        matched_ratio(best, reference="transformer")
    with pytest.raises(ValueError, match="must differ"):
        matched_ratio(best, "mamba", "mamba")
    with pytest.raises(ValueError, match="width"):
        samples_table(best, "s", width=4)
    with pytest.raises(ValueError, match="size must be one of"):
        samples_table(best, "99M")
    with pytest.raises(ValueError, match="seed must be one of"):
        samples_table(best, "s", seed=7)
    with pytest.raises(ValueError, match="name must be the name of a folder"):
        committed.results_folder("../language")


# ------------------------------------------------------------------------------------ a live run, in memory


def test_schedule_plot_against_the_closed_form():
    steps, peak, warmup = 50, 4e-3, 5
    fig = plot_schedule(steps, peak, warmup)
    (ax,) = fig.axes
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == list(range(1, steps + 1))
    expected = [peak * s / warmup for s in range(1, warmup + 1)] + [
        peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup))))
        for s in range(warmup + 1, steps + 1)
    ]
    assert list(line.get_ydata()) == pytest.approx(expected, rel=1e-12)
    assert max(line.get_ydata()) == pytest.approx(peak) and line.get_ydata()[-1] == pytest.approx(0.1 * peak)
    assert list(ax.get_lines()[1].get_xdata()) == [warmup, warmup]  # the end of the warm-up, marked
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "learning rate"
    assert all(t.get_fontsize() >= 9 for t in ax.get_xticklabels() + ax.get_yticklabels())


def _live_history(start: float, n: int, every: int) -> dict:
    train = [start - 0.01 * i for i in range(n)]
    steps = list(range(0, n + 1, every))
    return {"train_bpc": train, "step": steps, "val_bpc": [start + 1 - 0.01 * s for s in steps]}


def test_live_plot_draws_the_histories_given():
    hists = {"mamba": _live_history(5.0, 30, 10), "transformer++": _live_history(5.5, 30, 10)}
    fig = plot_live(hists, {"unigram": 4.78, "bigram": 3.67}, title="t")
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    for label, hist in hists.items():
        train, val = lines[f"{label}, train batch"], lines[f"{label}, validation"]
        assert list(train.get_xdata()) == list(range(1, 31)) and list(train.get_ydata()) == hist["train_bpc"]
        assert list(val.get_xdata()) == hist["step"] and list(val.get_ydata()) == hist["val_bpc"]
        assert train.get_color() == val.get_color()  # one colour per run
    assert lines["mamba, train batch"].get_color() != lines["transformer++, train batch"].get_color()
    assert (
        list(lines["unigram"].get_ydata()) == [4.78, 4.78] and list(lines["bigram"].get_ydata()) == [3.67] * 2
    )
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "bits per character" and ax.get_title() == "t"
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1  # beside the axes, off the data
    assert len(plot_live({"a": _live_history(5.0, 3, 3)}).axes[0].get_lines()) == 2  # no baselines


def test_live_and_schedule_bad_arguments():
    good = _live_history(5.0, 10, 5)
    with pytest.raises(TypeError, match="histories must be a dict"):
        plot_live([good])
    with pytest.raises(ValueError, match="histories must hold at least one run"):
        plot_live({})
    with pytest.raises(TypeError, match=r"histories\['a'\] must be a dict with the lists"):
        plot_live({"a": {"train_bpc": [1.0]}})
    with pytest.raises(ValueError, match=r"histories\['a'\]: train_bpc must be non-empty"):
        plot_live({"a": {**good, "val_bpc": good["val_bpc"][:-1]}})
    with pytest.raises(ValueError, match="must hold numbers"):
        plot_live({"a": {**good, "train_bpc": ["x"]}})
    with pytest.raises(TypeError, match="baselines must be a dict"):
        plot_live({"a": good}, baselines=[4.0])
    with pytest.raises(ValueError, match="baselines must map names to positive numbers"):
        plot_live({"a": good}, baselines={"unigram": -1.0})
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        plot_schedule(0, 1e-3, 0)
    with pytest.raises(ValueError, match="warmup must be an int in"):
        plot_schedule(10, 1e-3, 10)
    with pytest.raises(ValueError, match="peak must be a positive number"):
        plot_schedule(10, 0.0, 1)
    with pytest.raises(ValueError, match="final_frac"):
        plot_schedule(10, 1e-3, 1, final_frac=2)


def test_curves_against_the_throughput_of_each_model(out, tmp_path):
    """x="wall" with a throughput file: characters seen ÷ the model's own speed, not the run's clock."""
    runs = load_runs(out)
    speeds = {("0.5M", "mamba"): 2000.0, ("0.5M", "lstm"): 8000.0}
    doc = {"rows": [{"size": s, "family": f, "tokens_per_s": v} for (s, f), v in speeds.items()]}
    (tmp_path / "throughput.json").write_text(json.dumps(doc))
    throughput = load_throughput(tmp_path)
    assert throughput == speeds
    ax = plot_curves(runs, "0.5M", x="wall", throughput=throughput).axes[0]
    for b in best_runs(runs):
        line = next(
            ln
            for ln in ax.get_lines()
            if ln.get_label().startswith(f"{b.family} (lr {b.lr:g}, seed {b.seed}")
        )
        want = [t / speeds["0.5M", b.family] for t in b.run.history["tokens"]]
        assert list(line.get_xdata()) == pytest.approx(want)
    assert "alone" in ax.get_xlabel()
    with pytest.raises(ValueError, match="throughput must be a dict"):
        plot_curves(runs, "0.5M", x="tokens", throughput=throughput)
    with pytest.raises(ValueError, match="no speed for"):
        plot_curves(runs, "0.5M", x="wall", throughput={("0.5M", "mamba"): 1.0})
    with pytest.raises(FileNotFoundError, match="--time-steps"):
        load_throughput(tmp_path / "nowhere")
    (tmp_path / "throughput.json").write_text('{"rows": [{"size": "0.5M"}]}')
    with pytest.raises(ValueError, match="not a throughput file"):
        load_throughput(tmp_path)
