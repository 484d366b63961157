"""Notebook 10's readers of the GPU results (crossover, ratios, series) on small documents built here, the
figures from them, and the live CPU measurement."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from minimamba.viz import compare as vc

FLASH, OURS = vc.FLASH, vc.OURS


def scan_doc():
    """Ours: 1 ms at every L; FlashAttention: L / 2048 ms (faster below 2048, slower above); naive OOM at 8192."""
    rows = []
    for L in (512, 1024, 2048, 4096, 8192):
        rows.append({"method": OURS, "mode": "fwd", "L": L, "ms": 1.0})
        rows.append({"method": FLASH, "mode": "fwd", "L": L, "ms": L / 2048})
        if L < 8192:
            rows.append({"method": "attention (naive, L x L matrix)", "mode": "fwd", "L": L, "ms": L / 256})
        else:
            rows.append({"method": "attention (naive, L x L matrix)", "mode": "fwd", "L": L, "oom": True})
    return {"batch": 1, "width": 1024, "N": 16, "dtype": "bf16", "rows": rows}


def test_crossover_and_ratio():
    rows = scan_doc()["rows"]
    # at 2048 they tie (not faster), from 4096 on ours is faster at every length
    assert vc.crossover(rows, OURS, FLASH, "fwd") == 4096
    assert vc.crossover(rows, FLASH, OURS, "fwd") is None  # not faster to the end
    assert vc.ratio_at(rows, FLASH, OURS, "fwd", 8192) == pytest.approx(4.0)
    assert vc.ratio_at(rows, "attention (naive, L x L matrix)", OURS, "fwd", 8192) is None  # out of memory
    L, ms = vc.series(rows, "L", "ms", method=FLASH, mode="fwd")
    np.testing.assert_array_equal(L, [512, 1024, 2048, 4096, 8192])
    np.testing.assert_allclose(ms, L / 2048)


def throughput_doc():
    rows = []
    for b in (1, 2, 4):
        for variant, model, tps in (
            ("Mamba, fused step + CUDA graph", "mamba", 100.0 * b),
            ("Mamba, PyTorch step", "mamba", 10.0 * b),
            ("Transformer++, CUDA graph", "transformer", 50.0 * b if b < 4 else None),
        ):
            row = {"pair": "mamba-130m", "variant": variant, "model": model, "batch": b, "params": 1}
            row.update({"tokens_per_s": tps} if tps else {"oom": True})
            rows.append(row)
    return {"prompt": 2048, "generated": 128, "dtype": "bf16", "rows": rows}


def test_best_ratio_uses_each_family_at_its_best():
    assert vc.best_ratio(throughput_doc(), "mamba-130m") == {1: 2.0, 2: 2.0}  # batch 4: the Transformer OOM


def test_figures_build():
    ctx = {
        "pair": "p",
        "rows": [
            {"model": m, "batch": b, "context": c, "ms_per_step": 1.0, "cache_gib": c / 1e6}
            for m in ("mamba", "transformer")
            for b in (1, 16)
            for c in (1024, 2048)
        ],
    }
    for fig in (
        vc.plot_scan_vs_attention(scan_doc()),
        vc.plot_throughput(throughput_doc()),
        vc.plot_step_vs_context(ctx),
    ):
        assert isinstance(fig, Figure) and fig.axes
    vc.throughput_widget(throughput_doc())


def test_live_scan_vs_attention_tiny():
    d = vc.measure_scan_vs_attention((8, 16), width=8, N=2, heads=2, reps=1)
    assert {r["L"] for r in d["rows"]} == {8, 16} and all(r["ms"] > 0 for r in d["rows"])
    with pytest.raises(ValueError, match="width"):
        vc.measure_scan_vs_attention((8,), width=6, heads=4)
