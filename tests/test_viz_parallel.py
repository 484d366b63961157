"""minimamba.viz.parallel: scan schedules against a float64 loop written here, work/depth against closed
forms, the byte counter against tensors of known size, the IO table against hand-counted bytes."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import pytest
import torch

from minimamba.viz import parallel as vp


def loop(a, b):
    h, out = torch.zeros_like(b[0]), []
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        out.append(h)
    return torch.stack(out)


@pytest.mark.parametrize("L", [1, 2, 3, 7, 8, 13, 16, 33, 100])
def test_schedules_compute_the_scan(L):
    a = torch.rand(L, 3, dtype=torch.float64)
    b = torch.randn(L, 3, dtype=torch.float64)
    ref = loop(a, b)
    for make in (vp.hillis_steele_levels, vp.blelloch_levels):
        h = vp.run_schedule(make(L), a, b)
        assert torch.allclose(h, ref, rtol=1e-12, atol=1e-12), make.__name__


@pytest.mark.parametrize("L", [2, 8, 64, 1024])
def test_work_and_depth_closed_forms(L):
    k = int(math.log2(L))
    wd = vp.work_depth(L)
    assert wd["sequential"] == (L - 1, L - 1)
    assert wd["hillis_steele"] == (L * k - (L - 1), k)  # Σ_j (L - 2^j)
    assert wd["blelloch"] == (2 * L - 2 - k, max(2 * k - 1, 1))  # (L-1) up + (L-1-k) down
    work, depth = wd["chunked"]
    assert L - 1 <= work <= 3 * L and depth < L or L <= 2


def test_run_schedule_rejects_bad_levels():
    a = torch.ones(4)
    with pytest.raises(ValueError, match="at most once"):
        vp.run_schedule([[(0, 1), (0, 1)]], a, a)
    with pytest.raises(ValueError, match="same shape"):
        vp.run_schedule([], a, torch.ones(3))
    with pytest.raises(TypeError, match="L must be an int"):
        vp.hillis_steele_levels(2.0)
    with pytest.raises(ValueError, match="L must be >= 1"):
        vp.blelloch_levels(0)


def test_live_bytes_counts_known_allocations():
    x = torch.randn(1000)  # outside: not counted
    with vp.LiveBytes() as m:
        y = x * 2  # 4000 bytes
        z = y + 1  # 4000 bytes
        del y  # freed
        v = z.view(10, 100)  # a view: nothing new
        z.add_(1)  # in place: nothing new
        w = torch.empty(500, dtype=torch.float64)  # 4000 bytes
    assert (m.total, m.peak, m.live) == (12000, 8000, 8000)
    del v, w


def test_io_table_by_hand():
    rows = vp.io_table(batch=8, L=2048, N=16, dtype_bytes=2)
    assert [r["model"] for r in rows] == list(vp.MAMBA_SIZES)
    r = rows[0]
    b, d, L, N = 8, 1536, 2048, 16
    big, x, bc = b * d * L * N * 4, b * d * L * 2, b * N * L * 2
    assert r["state_tensor"] == big
    # unfused: Ā written and read, B̄u written and read, h written and read, plus the small tensors
    assert r["unfused"] == 6 * big + 8 * x + 2 * bc + d * N * 4 + d * 4
    assert r["fused"] == 4 * x + 2 * bc + (d * N + 2 * d) * 4
    assert 45 < r["ratio"] < 50


def test_bench_reading(tmp_path):
    result = {
        "rows": [
            {"batch": 2, "d_inner": 64, "N": 16, "L": 256, "mode": "fwd", "impl": "ref", "seconds": 0.5},
            {"batch": 2, "d_inner": 64, "N": 16, "L": 256, "mode": "fwd", "impl": "chunked", "seconds": 0.1},
            {"batch": 2, "d_inner": 64, "N": 16, "L": 256, "mode": "fwd", "impl": "mambapy", "seconds": None},
            {"batch": 2, "d_inner": 64, "N": 16, "L": 256, "mode": "fwd+bwd", "impl": "ref", "seconds": 1.0},
        ]
    }
    p = tmp_path / "scan_cpu.json"
    p.write_text(json.dumps(result))
    assert vp.load_bench(p) == result
    assert vp.load_bench(tmp_path / "missing.json") is None
    assert vp.bench_table(result) == {(2, 64, 16): {256: {"ref": 0.5, "chunked": 0.1}}}


def test_dataflow_figure():
    fig = vp.plot_dataflow(8)
    assert [ax.get_title() for ax in fig.axes] == [
        "Hillis–Steele: depth 3, work 17",
        "Blelloch (up-sweep, down-sweep): depth 5, work 11",
    ]
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    plt.close(fig)
