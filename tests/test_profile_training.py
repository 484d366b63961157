"""scripts/profile_training.py on CPU: a tiny config, both of our paths (the fused one in Triton's
interpreter), one profiled step each; the JSON has what the GPU run will report."""

from __future__ import annotations

import json

import pytest
from script_modules import load_script


def _script():
    return load_script("profile_training")


TINY = [
    "--device",
    "cpu",
    "--d-model",
    "8",
    "--n-layer",
    "1",
    "--vocab",
    "19",
    "--batch",
    "1",
    "--seqlen",
    "6",
]


@pytest.mark.slow
def test_smoke_writes_step_times_and_top_ops(tmp_path, capsys):
    out = tmp_path / "profile.json"
    argv = ["--out", str(out), *TINY, "--steps", "1", "--warmup", "0", "--top", "5", "--autocast", "none"]
    assert _script().main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["config"]["d_model"] == 8 and doc["config"]["autocast"] == "none"
    assert doc["meta"]["command"].startswith("python scripts/profile_training.py")
    assert doc["meta"]["git"] is None or len(doc["meta"]["git"]) >= 7  # the commit profiled
    have = set(doc["results"])
    assert {"fused", "readable"} <= have
    assert ("mamba_ssm" in have) != ("mamba_ssm" in doc["skipped"])  # measured, or said why not
    for path in ("fused", "readable"):
        r = doc["results"][path]
        assert r["step_ms"] > 0 and len(r["steps_ms"]) == 1
        assert 0 < len(r["top_ops"]) <= 5 and r["kernels"] == []  # no GPU kernels on a CPU
        assert all(op["count"] >= 1 and op["self_us"] >= 0 for op in r["top_ops"])
    # the fused path's own autograd nodes appear in its profile and not in the readable one's
    names = {p: {op["name"] for op in doc["results"][p]["top_ops"]} for p in ("fused", "readable")}
    assert any("ConvXProj" in n for n in names["fused"]) and not any(
        "ConvXProj" in n for n in names["readable"]
    )
    assert "step times: fused" in capsys.readouterr().out


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(SystemExit):
        _script().main(["--out", str(tmp_path / "x.json"), "--seqlen", "0", "--device", "cpu"])
    with pytest.raises(SystemExit):
        _script().main(["--out", str(tmp_path / "x.json"), "--paths", "nope", "--device", "cpu"])
