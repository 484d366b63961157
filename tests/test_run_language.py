"""scripts/run_language.py in --smoke mode on a tiny fake corpus, resuming from a checkpoint, and the
matched sizes and schedule of minimamba.language (closed forms checked against built models)."""

import json
import math

import pytest
import torch
from script_modules import load_script

from minimamba import language
from minimamba.language import FAMILIES, SIZES, build, count, family_config, lr_at, param_groups, sample


def _script():
    return load_script("run_language")


def test_smoke_writes_one_json_per_family(corpus_dir, tmp_path):
    out = tmp_path / "out"
    assert _script().main(["--smoke", "--data", str(corpus_dir), "--out", str(out), "--no-progress"]) == 0
    files = sorted(out.glob("language_*.json"))
    assert len(files) == len(FAMILIES)
    smallest = next(iter(SIZES))
    for family in FAMILIES:
        doc = json.loads(
            (out / f"language_{smallest}_{family.replace('+', 'p')}_lr0.002_seed0.json").read_text()
        )
        config, hist, meta = doc["config"], doc["history"], doc["meta"]
        assert config["family"] == family and config["size"] == smallest and config["lr"] == 0.002
        assert config["n_params"] == count(
            family_config(family, smallest, len(json.loads((corpus_dir / "meta.json").read_text())["vocab"]))
        )
        assert config["context"] == 64 and config["steps"] == 6 and config["tokens"] == 6 * 4 * 64
        assert config["mamba_block"] == ("readable" if family.startswith("mamba") else None)  # the CPU's
        assert config["cuda_graph"] is False
        assert hist["step"] == [3, 6] and hist["tokens"] == [3 * 256, 6 * 256]
        assert all(math.isfinite(v) and 0 < v < 10 for v in hist["val_bpc"] + hist["train_bpc"])
        assert hist["train_bpc"] == pytest.approx([v / math.log(2) for v in hist["train_loss"]])
        assert hist["time"][0] <= hist["time"][1] and len(hist["lr"]) == 2
        assert meta["done"] is True and meta["device"].startswith("cpu") and "torch" in meta
        assert "--smoke" in meta["command"] and meta["resumed_from"] is None
        text = meta["sample"]["text"]
        assert len(text) == 20 and meta["sample"]["prompt"] == _script().SAMPLE_PROMPT
        assert set(text) <= set(json.loads((corpus_dir / "meta.json").read_text())["vocab"]) | {"\ufffd"}
    assert not list(out.glob("checkpoints/*.pt"))  # finished runs keep their JSON, not their checkpoint


def test_keep_checkpoints_and_ckpt_dir(corpus_dir, tmp_path):
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    args = ["--smoke", "--families", "mamba", "--data", str(corpus_dir), "--no-progress"]
    _script().main([*args, "--out", str(out), "--ckpt-dir", str(ckpt), "--keep-checkpoints"])
    assert [p.name for p in ckpt.glob("*.pt")] == ["language_0.5M_mamba_lr0.002_seed0.pt"]
    assert not (out / "checkpoints").exists()


def test_sample_is_deterministic_and_checks_its_arguments():
    model = build(family_config("lstm", "0.5M", 12))
    prompt = torch.tensor([1, 2, 3])
    a = sample(model, prompt, 8, 12, context=16, seed=3)
    assert a.shape == (8,) and a.dtype == torch.long and int(a.min()) >= 0 and int(a.max()) < 12
    assert torch.equal(a, sample(model, prompt, 8, 12, context=16, seed=3))
    assert not torch.equal(a, sample(model, prompt, 8, 12, context=16, seed=4))
    with pytest.raises(ValueError, match="prompt_ids"):
        sample(model, torch.tensor([[1, 2]]), 4, 12, context=16)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, prompt, 4, 12, context=16, temperature=0.0)


def test_sweep_edge():
    edge = _script().sweep_edge
    assert edge is language.sweep_edge  # the script reports with the function the analysis uses
    assert edge({1e-3: 2.1, 2e-3: 2.0, 4e-3: 1.9}) == 4e-3
    assert edge({1e-3: 1.8, 2e-3: 2.0, 4e-3: 1.9}) == 1e-3
    assert edge({1e-3: 2.1, 2e-3: 1.9, 4e-3: 2.0}) is None
    assert edge({1e-3: 2.1, 2e-3: 1.9}) is None  # two points bracket nothing


def test_resume_continues_from_the_checkpoint(corpus_dir, tmp_path):
    script = _script()
    common = ["--smoke", "--families", "lstm", "--data", str(corpus_dir), "--no-progress"]
    whole = tmp_path / "whole"
    script.main([*common, "--out", str(whole)])
    split = tmp_path / "split"
    script.main([*common, "--out", str(split), "--stop-after", "4"])  # interrupted after step 4
    name = "language_0.5M_lstm_lr0.002_seed0"
    first = json.loads((split / f"{name}.json").read_text())
    assert first["history"]["step"] == [3] and first["meta"]["done"] is False
    assert torch.load(split / "checkpoints" / f"{name}.pt", weights_only=False)["step"] == 4
    script.main([*common, "--out", str(split), "--resume"])
    resumed = json.loads((split / f"{name}.json").read_text())
    ref = json.loads((whole / f"{name}.json").read_text())
    assert resumed["meta"]["resumed_from"] == 4 and resumed["meta"]["done"] is True
    assert resumed["history"]["step"] == ref["history"]["step"] == [3, 6]
    for key in ("train_loss", "val_bpc", "lr", "tokens"):  # bit for bit the uninterrupted run
        assert resumed["history"][key] == ref["history"][key], key
    assert resumed["meta"]["sample"] == ref["meta"]["sample"]  # the same final model
    assert not (split / "checkpoints" / f"{name}.pt").exists()
    script.main([*common, "--out", str(split), "--resume"])  # finished: skipped, the file unchanged
    assert json.loads((split / f"{name}.json").read_text()) == resumed


@pytest.mark.gpu
def test_resume_on_gpu(corpus_dir, tmp_path):
    """Interrupted and resumed on the GPU (the RNG states come back on the CPU, as they must)."""
    script = _script()
    common = [
        "--smoke",
        "--families",
        "mamba",
        "--data",
        str(corpus_dir),
        "--no-progress",
        "--device",
        "cuda",
    ]
    script.main([*common, "--out", str(tmp_path), "--stop-after", "4"])
    script.main([*common, "--out", str(tmp_path), "--resume"])
    (doc,) = [json.loads(f.read_text()) for f in tmp_path.glob("language_*.json")]
    assert doc["meta"]["resumed_from"] == 4 and doc["meta"]["done"] is True
    assert doc["meta"]["device"] == torch.cuda.get_device_name(), doc["meta"]["device"]  # ran on the GPU
    assert doc["history"]["step"][-1] == script.SMOKE["steps"]


def _histories(out):
    return {p.name: json.loads(p.read_text())["history"] for p in sorted(out.glob("language_*.json"))}


@pytest.mark.gpu
def test_cuda_graph_trains_as_the_eager_steps_on_gpu(corpus_dir, tmp_path):
    """--cuda-graph replays the eager step's kernels: the same losses (fp32, so that bf16 rounding of two
    equal computations cannot hide a difference), through the schedule's changing learning rate, for every
    family; interrupted and resumed with graphs, it ends where the uninterrupted graph run ends."""
    script = _script()
    common = ["--smoke", "--data", str(corpus_dir), "--no-progress", "--device", "cuda", "--fp32"]
    eager, graph, split = tmp_path / "eager", tmp_path / "graph", tmp_path / "split"
    assert script.main([*common, "--out", str(eager)]) == 0
    assert script.main([*common, "--out", str(graph), "--cuda-graph"]) == 0
    a, b = _histories(eager), _histories(graph)
    assert sorted(a) == sorted(b) and len(a) == len(FAMILIES)
    for name in a:
        assert a[name]["lr"] == b[name]["lr"] and len(set(a[name]["lr"])) > 1, name  # the schedule moved
        for key in ("train_loss", "val_bpc"):
            assert b[name][key] == pytest.approx(a[name][key], rel=1e-4), (name, key)
        doc = json.loads((graph / name).read_text())
        assert doc["config"]["cuda_graph"] is True and doc["meta"]["done"] is True
    one = ["--families", "mamba", "--cuda-graph", "--out", str(split)]
    assert script.main([*common, *one, "--stop-after", "4"]) == 0
    with pytest.raises(SystemExit, match="was written with --cuda-graph"):  # it resumes with graphs only
        script.main([*common, "--families", "mamba", "--out", str(split), "--resume"])
    assert script.main([*common, *one, "--resume"]) == 0
    (name,) = _histories(split)
    resumed = json.loads((split / name).read_text())
    assert resumed["meta"]["resumed_from"] == 4 and resumed["meta"]["done"] is True
    assert resumed["history"]["val_bpc"] == pytest.approx(b[name]["val_bpc"], rel=1e-4)


@pytest.mark.gpu
def test_time_steps_with_cuda_graph_on_gpu(corpus_dir, tmp_path):
    argv = ["--smoke", "--families", "lstm,mamba", "--data", str(corpus_dir), "--out", str(tmp_path)]
    assert _script().main([*argv, "--device", "cuda", "--cuda-graph", "--time-steps", "3"]) == 0
    doc = json.loads((tmp_path / "throughput.json").read_text())
    assert doc["settings"]["cuda_graph"] is True
    assert [r["family"] for r in doc["rows"]] == ["lstm", "mamba"] and all(
        r["ms_per_step"] > 0 for r in doc["rows"]
    )


def test_cuda_graph_needs_a_gpu_and_checkpoints_resume_in_their_mode(tmp_path, capsys):
    script = _script()
    with pytest.raises(SystemExit):
        script.parse_args(["--cuda-graph", "--device", "cpu"])
    assert "--cuda-graph needs a CUDA device" in capsys.readouterr().err
    script.check_resume_mode({}, False, tmp_path / "old.pt")  # written before the option: eager
    script.check_resume_mode({"cuda_graph": True}, True, tmp_path / "g.pt")
    with pytest.raises(SystemExit, match=r"g\.pt was written with --cuda-graph"):
        script.check_resume_mode({"cuda_graph": True}, False, tmp_path / "g.pt")
    with pytest.raises(SystemExit, match=r"old\.pt was written without --cuda-graph"):
        script.check_resume_mode({}, True, tmp_path / "old.pt")


def test_set_lr_fills_a_tensor_learning_rate_in_place():
    """The schedule must reach a captured graph: a tensor learning rate keeps its storage."""
    script = _script()
    p = torch.nn.Parameter(torch.ones(3))
    lr = torch.tensor(1e-3)
    opt = torch.optim.AdamW([p], lr=lr, capturable=False, foreach=False)
    script.set_lr(opt, 5e-4)
    assert opt.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(5e-4)
    plain = torch.optim.AdamW([p], lr=1e-3)
    script.set_lr(plain, 5e-4)
    assert plain.param_groups[0]["lr"] == 5e-4
    args = script.parse_args(["--device", "cpu"])
    made = script.make_optimizer(build(family_config("lstm", "0.5M", 12)), 2e-3, args, torch.device("cpu"))
    assert made.param_groups[0]["lr"] == 2e-3 and not made.param_groups[0]["capturable"]


@pytest.mark.parametrize("size", list(SIZES))
def test_matched_sizes_agree_within_10_percent(size):
    counts = {f: count(family_config(f, size, 85)) for f in FAMILIES}
    assert max(counts.values()) <= 1.10 * min(counts.values()), counts
    assert all(abs(n / SIZES[size] - 1) < 0.05 for n in counts.values()), counts


@pytest.mark.parametrize("family", FAMILIES)
def test_closed_form_counts_match_built_models(family):
    config = family_config(family, "0.5M", 85)
    model = build(config)
    assert model.num_params() == count(config)
    groups = param_groups(model, 0.1)
    assert sum(p.numel() for g in groups for p in g["params"]) == count(config)
    assert all(p.dim() >= 2 for p in groups[0]["params"]) and groups[1]["weight_decay"] == 0.0


def test_lr_schedule():
    peak, steps, warmup = 2e-3, 100, 10
    assert lr_at(1, steps, peak, warmup) == pytest.approx(peak / 10)
    assert lr_at(10, steps, peak, warmup) == pytest.approx(peak)
    mid = 10 + 45  # halfway through the decay: cos(π/2) = 0, halfway between peak and 10 % of it
    assert lr_at(mid, steps, peak, warmup) == pytest.approx(peak * 0.55)
    assert lr_at(steps, steps, peak, warmup) == pytest.approx(0.1 * peak)
    lrs = [lr_at(s, steps, peak, warmup) for s in range(10, steps + 1)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        _script().parse_args(["--help"])
    text = capsys.readouterr().out
    for option in ("--lrs", "--eval-every", "--resume", "--smoke", "--context", "--tokens", "--ckpt-every"):
        assert option in text


def test_parallel_sweep_gives_the_serial_results(corpus_dir, tmp_path):
    """--parallel runs each (size, family, lr) as its own process; each run's history is the one a serial
    run of the same settings writes (same seed, same data order, CPU arithmetic)."""
    common = ["--smoke", "--data", str(corpus_dir), "--no-progress"]
    par, ser = tmp_path / "par", tmp_path / "ser"
    assert _script().main([*common, "--families", "lstm,mamba", "--out", str(par), "--parallel", "2"]) == 0
    assert _script().main([*common, "--families", "lstm", "--out", str(ser)]) == 0
    assert sorted(p.name for p in par.glob("*.json")) == [
        "language_0.5M_lstm_lr0.002_seed0.json",
        "language_0.5M_mamba_lr0.002_seed0.json",
    ]
    a = json.loads((par / "language_0.5M_lstm_lr0.002_seed0.json").read_text())
    b = json.loads((ser / "language_0.5M_lstm_lr0.002_seed0.json").read_text())
    assert a["meta"]["done"] and a["history"]["val_bpc"] == b["history"]["val_bpc"]
    assert "--parallel" not in a["meta"]["command"] and "--families lstm" in a["meta"]["command"]


def test_time_steps_writes_the_throughput_of_each_model(corpus_dir, tmp_path):
    out = tmp_path / "out"
    argv = ["--smoke", "--families", "lstm,mamba", "--data", str(corpus_dir), "--out", str(out)]
    assert _script().main([*argv, "--time-steps", "2"]) == 0
    assert not list(out.glob("language_0.5M_*.json"))  # timing only: no training runs
    doc = json.loads((out / "throughput.json").read_text())
    vocab = len(json.loads((corpus_dir / "meta.json").read_text())["vocab"])
    assert [(r["size"], r["family"]) for r in doc["rows"]] == [("0.5M", "lstm"), ("0.5M", "mamba")]
    assert [r["mamba_block"] for r in doc["rows"]] == [None, "readable"]
    for r in doc["rows"]:
        assert r["n_params"] == count(family_config(r["family"], "0.5M", vocab))
        assert r["ms_per_step"] > 0 and r["tokens_per_s"] == pytest.approx(4 * 64 / (r["ms_per_step"] / 1e3))
    assert doc["settings"]["timed_steps"] == 2 and "--time-steps 2" in doc["meta"]["command"]
    assert doc["settings"]["cuda_graph"] is False


def test_mamba_block_path_names_the_block_a_model_trains_with():
    script = _script()
    mamba = build(family_config("mamba", "0.5M", 10))
    assert script.mamba_block_path(mamba, torch.device("cpu")) == "readable"
    for m in mamba.modules():
        if hasattr(m, "fused_forward"):
            m.fused_forward = True
    assert script.mamba_block_path(mamba, torch.device("cpu")) == "fused"
    assert script.mamba_block_path(build(family_config("lstm", "0.5M", 10)), torch.device("cpu")) is None


@pytest.mark.parametrize("bad", [["--parallel", "0"], ["--time-steps", "-1"]])
def test_parallel_and_time_steps_reject_bad_values(bad, capsys):
    with pytest.raises(SystemExit):
        _script().parse_args(bad)
    assert bad[0] in capsys.readouterr().err


def test_time_steps_records_a_model_that_does_not_fit(corpus_dir, tmp_path, monkeypatch):
    """A model out of device memory gets a row with its error; the others are still timed, and
    load_throughput leaves it out."""
    from minimamba.language_runs import load_throughput

    script = _script()
    real = script._median_step_ms

    def fake(model, *args):
        if isinstance(model, language.build(family_config("lstm", "0.5M", 5)).__class__):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, *args)

    monkeypatch.setattr(script, "_median_step_ms", fake)
    out = tmp_path / "out"
    argv = ["--smoke", "--families", "lstm,mamba", "--data", str(corpus_dir), "--out", str(out)]
    assert script.main([*argv, "--time-steps", "1"]) == 0
    rows = json.loads((out / "throughput.json").read_text())["rows"]
    assert rows[0] == {
        "size": "0.5M",
        "family": "lstm",
        "n_params": rows[0]["n_params"],
        "mamba_block": None,
        "error": "out of memory",
    }
    assert rows[1]["family"] == "mamba" and rows[1]["ms_per_step"] > 0
    assert set(load_throughput(out)) == {("0.5M", "mamba")}
