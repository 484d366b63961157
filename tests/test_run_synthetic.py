"""scripts/run_synthetic.py's paper-recipe runs at tiny sizes on CPU (every model, both tasks, resume, the
stopping rule, out-of-memory at a test length), and minimamba.train.last_logits (chunked through the
model's cache vs one pass)."""

import contextlib
import json
from pathlib import Path

import pytest
import torch
from script_modules import load_script

from minimamba.language import build, make_config
from minimamba.train import last_logits

MODELS = ("s6", "lti", "lstm", "transformer")


def _script():
    return load_script("run_synthetic")


def _tiny(script, out: Path, *extra: str) -> list[str]:
    return ["--tiny", "--device", "cpu", "--no-progress", "--out", str(out / "res"), "--ckpt-dir",
            str(out / "ck"), *extra]  # fmt: skip


def _load(out: Path, name: str) -> dict:
    return json.loads((out / "res" / f"{name}.json").read_text())


# ------------------------------------------------------------------------------------------------ last_logits


def _model(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return build(make_config(family, 16, 16, 2, max_len=64)).eval()


@pytest.mark.parametrize("family", ["mamba", "mamba-lti", "lstm"])
@pytest.mark.parametrize("chunk", [1, 8, 13])
def test_last_logits_in_chunks_equals_one_pass(family, chunk):
    model = _model(family)
    ids = torch.randint(0, 16, (3, 37), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(ids)[:, -1]  # (3, V): the full forward, every position
    got = last_logits(model, ids, chunk=chunk)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # not a constant: another sequence gives other logits
    assert (last_logits(model, ids.flip(1), chunk=chunk) - got).abs().max() > 1e-4


def test_last_logits_one_pass_for_attention():
    model = _model("transformer++")
    ids = torch.randint(0, 16, (2, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(ids)[:, -1]
    torch.testing.assert_close(last_logits(model, ids), want)
    torch.testing.assert_close(last_logits(model, ids, chunk=64), want)  # chunk >= T: one pass


def test_last_logits_rejects_bad_arguments():
    model = _model("lstm")
    with pytest.raises(ValueError, match=r"inputs must be a \(batch, T\) tensor of token ids"):
        last_logits(model, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
        last_logits(model, torch.zeros(1, 5, dtype=torch.long), chunk=0)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        last_logits("lstm", torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="chunk needs a model with init_cache"):
        last_logits(torch.nn.Embedding(16, 4), torch.zeros(1, 5, dtype=torch.long), chunk=2)


# ---------------------------------------------------------------------------------------- paper-recipe runs


def test_help_describes_every_model_and_task(capsys):
    with pytest.raises(SystemExit) as e:
        _script().main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for word in (*MODELS, "induction", "copy", "--ckpt-dir", "--patience", "--time-limit", "2^20", "resume"):
        assert word in text


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["--model", "gru"], "--model: unknown"),
        (["--model", "s6", "--task", "sorting"], "--task must be one of"),
        (["--model", "s6", "--L", "2"], "must be >= 3"),
        (["--model", "s6", "--lr", "-1"], "--lr must be a finite number > 0"),
        (["--model", "s6", "--patience", "-1"], "--patience must be >= 0"),
        (["--model", "s6", "--cuda-graph", "--device", "cpu"], "--cuda-graph needs a CUDA device"),
    ],
)
def test_bad_arguments_are_named(argv, msg, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        _script().main([*argv, "--out", str(tmp_path)])
    assert e.value.code == 2
    assert msg in capsys.readouterr().err


def test_induction_every_model(tmp_path):
    script = _script()
    assert script.main(_tiny(script, tmp_path, "--model", ",".join(MODELS))) == 0
    for m in MODELS:
        doc = _load(tmp_path, f"synthetic_induction16_{m}_seed0")
        config, hist, meta = doc["config"], doc["history"], doc["meta"]
        assert meta["done"] and meta["steps"] == 6 and meta["stopped_by"] == "max_steps"
        assert meta["invocations"][0]["command"].startswith("python scripts/run_synthetic.py --tiny")
        assert config["model"] == m and config["batch"] == 4 and config["n_layer"] == 2
        assert config["lr"] == (2e-4 if m == "transformer" else 1e-3)
        assert config["n_params"] == sum(
            p.numel() for p in build(make_config(script.MODELS[m][0], 16, 16, 2)).parameters()
        )
        assert hist["eval_step"] == [3, 6] and len(hist["val_accuracy"]) == 2
        assert list(hist["test"]) == ["8", "16", "32", "64"]
        for r in hist["test"].values():
            assert r["n"] == 4 and 0 <= r["accuracy"] <= 1
            # recurrent models go through their cache 16 tokens at a time; attention in one pass
            assert r["chunk"] == (None if m == "transformer" else 16)
        assert not list((tmp_path / "ck").glob("*.pt"))  # a finished run leaves no checkpoint


def test_copy_task_runs(tmp_path):
    script = _script()
    assert (
        script.main(_tiny(script, tmp_path, "--task", "copy", "--model", "s6,transformer", "--L", "12,20"))
        == 0
    )
    for m in ("s6", "transformer"):
        for L in (12, 20):
            doc = _load(tmp_path, f"synthetic_copy{L}_{m}_seed0")
            assert doc["meta"]["done"] and doc["config"]["k"] == 3 and doc["config"]["lr"] == 1e-4
            assert doc["config"]["train_length"] == L and doc["history"]["test"] == {}


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    script = _script()
    a, b = tmp_path / "a", tmp_path / "b"
    name = "synthetic_induction16_lstm_seed0"
    assert script.main(_tiny(script, a, "--model", "lstm", "--save-weights")) == 0
    # a time limit of 0 s: stop after the first step with a checkpoint, twice, then finish
    for _ in range(2):
        assert script.main(_tiny(script, b, "--model", "lstm", "--save-weights", "--time-limit", "0")) == 0
        assert not _load(b, name)["meta"]["done"] and (b / "ck" / f"{name}.pt").exists()
    assert script.main(_tiny(script, b, "--model", "lstm", "--save-weights")) == 0
    da, db = _load(a, name), _load(b, name)
    assert db["meta"]["done"] and [i["from_step"] for i in db["meta"]["invocations"]] == [0, 1, 2]
    for key in ("step", "loss", "val_accuracy", "val_loss"):
        assert da["history"][key] == pytest.approx(db["history"][key]), key
    acc = lambda doc: {L: r["accuracy"] for L, r in doc["history"]["test"].items()}  # noqa: E731
    assert acc(da) == acc(db)
    wa = torch.load(a / "ck" / f"{name}_weights.pt")
    wb = torch.load(b / "ck" / f"{name}_weights.pt")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=0, rtol=0)
    # a finished run is skipped, and its file left as it was
    before = (b / "res" / f"{name}.json").read_text()
    assert script.main(_tiny(script, b, "--model", "lstm")) == 0
    assert (b / "res" / f"{name}.json").read_text() == before


@pytest.mark.gpu
def test_resume_on_gpu(tmp_path):
    """A checkpoint written on the GPU resumes there: its RNG state comes back on the CPU, where
    ``Generator.set_state`` needs it (a map_location of the GPU made the resume fail)."""
    script = _script()
    gpu = lambda *extra: [*_tiny(script, tmp_path, *extra)[:1], "--device", "cuda",  # noqa: E731
                          *_tiny(script, tmp_path, *extra)[3:]]  # fmt: skip
    name = "synthetic_induction16_s6_seed0"
    assert script.main(gpu("--model", "s6", "--time-limit", "0")) == 0
    assert not _load(tmp_path, name)["meta"]["done"]
    assert script.main(gpu("--model", "s6")) == 0
    doc = _load(tmp_path, name)
    assert doc["meta"]["done"] and [i["from_step"] for i in doc["meta"]["invocations"]] == [0, 1]


def test_resume_refuses_other_settings(tmp_path):
    script = _script()
    assert script.main(_tiny(script, tmp_path, "--model", "s6", "--time-limit", "0")) == 0
    with pytest.raises(SystemExit, match="was made with other settings"):
        script.main(_tiny(script, tmp_path, "--model", "s6", "--lr", "0.01"))


def test_stopping_rule(tmp_path, monkeypatch):
    script = _script()
    perfect = {"loss": 0.0, "token": 1.0, "sequence": 1.0}
    monkeypatch.setattr(script, "evaluate", lambda *a, **k: perfect)
    argv = _tiny(script, tmp_path, "--model", "lstm", "--steps", "30", "--patience", "2")
    assert script.main(argv) == 0
    doc = _load(tmp_path, "synthetic_induction16_lstm_seed0")
    assert doc["history"]["eval_step"] == [3, 6] and doc["meta"]["steps"] == 6
    assert doc["meta"]["stopped_by"].startswith("validation accuracy 1.0 at 2 evaluations")
    # patience 0: every step, whatever the accuracy
    argv = _tiny(script, tmp_path / "p0", "--model", "lstm", "--steps", "9", "--patience", "0")
    assert script.main(argv) == 0
    assert _load(tmp_path / "p0", "synthetic_induction16_lstm_seed0")["meta"]["steps"] == 9


def test_out_of_memory_at_a_test_length_is_recorded(tmp_path, monkeypatch):
    script = _script()
    real = script.accuracy_at_length

    def fake(model, model_name, L, *args):
        if L >= 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")
        return real(model, model_name, L, *args)

    monkeypatch.setattr(script, "accuracy_at_length", fake)
    assert script.main(_tiny(script, tmp_path, "--model", "transformer")) == 0
    doc = _load(tmp_path, "synthetic_induction16_transformer_seed0")
    test = doc["history"]["test"]
    assert doc["meta"]["done"] and "accuracy" in test["8"] and "accuracy" in test["16"]
    assert test["32"]["error"].startswith("out of memory")
    assert test["64"]["error"] == "skipped: out of memory at L=32 already"


def test_interrupted_test_phase_resumes_at_the_next_length(tmp_path, monkeypatch):
    script = _script()
    real, calls = script.accuracy_at_length, []

    def stop_after_first(model, model_name, L, *args):
        calls.append(L)
        script._Stop.requested = True  # as SIGTERM would
        return real(model, model_name, L, *args)

    monkeypatch.setattr(script, "accuracy_at_length", stop_after_first)
    try:
        assert script.main(_tiny(script, tmp_path, "--model", "s6")) == 0
    finally:
        script._Stop.requested = False
    name = "synthetic_induction16_s6_seed0"
    assert calls == [8] and list(_load(tmp_path, name)["history"]["test"]) == ["8"]
    monkeypatch.setattr(
        script, "accuracy_at_length", lambda m, n, L, *a: calls.append(L) or real(m, n, L, *a)
    )
    assert script.main(_tiny(script, tmp_path, "--model", "s6")) == 0
    assert calls == [8, 16, 32, 64] and _load(tmp_path, name)["meta"]["done"]


# ------------------------------------------------------------------------------------------------------ GPU

WEIGHTS = Path(__file__).resolve().parents[1] / "results" / "synthetic_induction_s6.pt"


@pytest.mark.gpu
def test_long_evaluation_in_chunks_gpu():
    """The trained S6 model at L = 2^18: chunks of 2^16 through the cache (the Triton kernel with h0) give
    the logits of one pass; memory of a 2^20 evaluation stays that of a chunk, not of the sequence."""
    from minimamba.config import MambaConfig  # noqa: PLC0415
    from minimamba.model import MambaLM  # noqa: PLC0415
    from minimamba.tasks import induction_heads  # noqa: PLC0415

    model = MambaLM(MambaConfig(d_model=64, n_layer=2, vocab_size=16))
    model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    model = model.cuda().eval()
    ids = induction_heads(2, 2**18, 16, generator=torch.Generator().manual_seed(2**18)).inputs.cuda()
    one = last_logits(model, ids)
    torch.testing.assert_close(last_logits(model, ids, chunk=2**16), one, atol=1e-3, rtol=1e-3)
    ids = induction_heads(4, 2**20, 16, generator=torch.Generator().manual_seed(2**20)).inputs.cuda()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    last_logits(model, ids, chunk=2**16)
    peak = torch.cuda.max_memory_allocated() - base
    print(f"peak memory of a 4 x 2^20 evaluation in chunks of 2^16: {peak / 2**30:.2f} GiB")
    assert peak < 3 * 2**30  # one pass would hold the activations of all 4 · 2^20 tokens at once


@pytest.mark.gpu
def test_every_model_at_paper_width_gpu(tmp_path):
    """A short run of every model at App. E.1's widths on the GPU (cuDNN LSTM, Triton scan, fused SDPA),
    tested up to 2^12."""
    script = _script()
    argv = ["--model", ",".join(MODELS), "--steps", "20", "--eval-every", "10", "--max-test-length", "4096"]
    argv += ["--test-size", "8", "--no-progress", "--out", str(tmp_path), "--device", "cuda"]
    assert script.main(argv) == 0
    for m in MODELS:
        doc = json.loads((tmp_path / f"synthetic_induction256_{m}_seed0.json").read_text())
        assert doc["meta"]["done"] and doc["config"]["d_model"] == (64 if m in ("s6", "lti") else 128)
        assert [int(L) for L in doc["history"]["test"]] == [2**p for p in range(6, 13)]


@pytest.mark.gpu
@pytest.mark.parametrize("model_name", MODELS)
def test_cuda_graph_run_follows_the_eager_run_gpu(tmp_path, model_name):
    """--cuda-graph replays the same steps: its training-loss and validation curves follow the eager
    run's (same seed, same data; fp32; the loss is written without boolean indexing there, so the sums
    differ in order: a relative 1e-4)."""
    script = _script()
    docs = {}
    for graph in (False, True):
        out = tmp_path / ("graph" if graph else "eager")
        argv = ["--model", model_name, "--steps", "40", "--eval-every", "20", "--log-every", "10"]
        argv += ["--max-test-length", "64", "--test-size", "8", "--no-progress", "--device", "cuda"]
        argv += ["--out", str(out), *(["--cuda-graph"] if graph else [])]
        assert script.main(argv) == 0
        docs[graph] = json.loads((out / f"synthetic_induction256_{model_name}_seed0.json").read_text())
    eager, graphed = docs[False]["history"], docs[True]["history"]
    assert docs[True]["meta"]["invocations"][0]["cuda_graph"] is True
    assert eager["step"] == graphed["step"]
    for a, b in zip(eager["loss"] + eager["val_loss"], graphed["loss"] + graphed["val_loss"]):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (a, b)


@pytest.mark.gpu
@pytest.mark.parametrize("model_name", MODELS)
def test_one_million_tokens_gpu(tmp_path, model_name):
    """One sequence of 2^20 tokens per model at paper width (untrained): the recurrent ones through their
    cache in fp32, attention through fused SDPA in bf16 (flash attention); an out-of-memory error there is
    what the script records."""
    import argparse  # noqa: PLC0415

    script = _script()
    family, d = script.MODELS[model_name]
    torch.manual_seed(0)
    model = build(make_config(family, 16, d, 2, max_len=2**20)).cuda()
    args = argparse.Namespace(test_size=1, test_tokens=2**22, test_chunk=2**16, seed=0, test_seconds=600.0)
    if model_name == "transformer":
        ctx = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
    else:
        ctx = contextlib.nullcontext
    try:
        r = script.accuracy_at_length(model, model_name, 2**20, args, torch.device("cuda"), ctx)
    except (torch.OutOfMemoryError, RuntimeError) as e:
        assert model_name == "transformer" and script._is_oom(e), e
        pytest.skip(f"attention at 2^20 ran out of memory: {e}")
    print(model_name, r)
    assert r["n"] == 1 and r["accuracy"] in (0.0, 1.0)


# ------------------------------------------------------------------------------ scripts/probe_induction_long.py


def _probe():
    return load_script("probe_induction_long")


def test_probe_computations_agree_and_needle_moves(tmp_path):
    probe = _probe()
    out = tmp_path / "probe.json"
    argv = ["--L", "300", "--n", "6", "--batch", "3", "--chunk", "128", "--json", str(out)]
    assert probe.main([*argv, "--computations", "chunked,sequential,fp64"]) == 0
    r = json.loads(out.read_text())
    accs = {c: v["accuracy"] for c, v in r["computations"].items()}
    assert len(set(accs.values())) == 1 and accs["chunked"] == 1.0  # the trained model at L = 300
    for c in ("sequential", "fp64"):
        assert r["computations"][c]["answers_differing_from_chunked"] == 0
        assert r["computations"][c]["max_abs_logit_diff_vs_chunked"] < 1e-3
    # the test set is the budget run's: the same draws as run_synthetic.py's _extrapolate at L = 300
    b = probe.test_set(300, 0, 6)
    first = [row.index(15) for row in b.inputs.tolist()]  # the needle's special token
    assert [s["distance"] for s in r["per_sequence"]] == [300 - 1 - q for q in first]
    want = induction_heads_set(300)
    assert torch.equal(b.inputs, want.inputs[:6])
    moved = probe.move_needle(b, 5, 15, 0)
    for row, target in zip(moved.inputs.tolist(), moved.targets[:, -1].tolist()):
        where = [i for i, t in enumerate(row) if t == 15]
        assert len(where) == 2 and 300 - 2 - 5 <= where[0] <= 300 - 3 and row[where[0] + 1] == target
    with pytest.raises(SystemExit):
        probe.main([*argv, "--computations", "cuda-magic"])


def induction_heads_set(L: int):
    from minimamba.tasks import induction_heads  # noqa: PLC0415

    return induction_heads(256, L, 16, generator=torch.Generator().manual_seed(L))
