"""Notebook 06's figures and widgets: the pure functions behind them against independent counts and loops."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from minimamba.viz import triton as vt


@pytest.mark.parametrize("n, BLOCK", [(1, 1), (10, 4), (16, 16), (17, 16), (5, 8)])
def test_block_layout_covers_every_element_once(n, BLOCK):
    d = vt.block_layout(n, BLOCK)
    assert d["n_programs"] == -(-n // BLOCK)
    covered = d["offset"][d["mask"]]
    assert sorted(covered.tolist()) == list(range(n))  # each element loaded by exactly one lane
    for i in range(n):  # element i is handled by program i // BLOCK
        (lane,) = np.flatnonzero(d["offset"] == i)
        assert d["program"][lane] == i // BLOCK
    assert int((~d["mask"]).sum()) == d["n_programs"] * BLOCK - n


@pytest.mark.parametrize("L, BLOCK_L, decay", [(48, 16, 0.9), (7, 3, 0.5), (10, 1, 1.0), (5, 64, 0.0)])
def test_chunk_carry_matches_the_sequential_loop(L, BLOCK_L, decay):
    d = vt.chunk_carry(L, BLOCK_L, decay, seed=3)
    h, ref = 0.0, np.empty(L)
    for t in range(L):
        h = decay * h + d["b"][t]
        ref[t] = h
    np.testing.assert_allclose(d["h"], ref, rtol=1e-12, atol=1e-12)
    for s, carry in zip(d["starts"], d["carry"]):
        # the carry is the state just before the chunk
        assert carry == pytest.approx(0.0 if s == 0 else ref[s - 1], rel=1e-12, abs=1e-12)
        assert d["H"][s] == d["b"][s]  # each chunk's own scan starts from zero
        k = np.arange(s, min(s + BLOCK_L, L))
        np.testing.assert_allclose(d["A"][k], decay ** (k - s + 1.0), rtol=1e-12)


def test_io_bytes_fused_counts_every_input_once():
    """At (8, 1536, 8192, 16) fp32 the forward must read u, delta, z, B, C, A, D, delta_bias and write y."""
    batch, d_inner, L, N = 8, 1536, 8192, 16
    d = vt.io_bytes(batch, d_inner, L, N, dtype_bytes=4)
    tensors = 4 * batch * d_inner * L + 2 * batch * N * L  # u, delta, z, y and B, C
    params = d_inner * N + 2 * d_inner  # A, D, delta_bias
    assert d["fused_total"] == 4 * (tensors + params)
    assert round(d["fused_total"] / 1e6) == 1619


@pytest.mark.parametrize("N", [1, 16, 64])
@pytest.mark.parametrize("dtype_bytes", [2, 4])
def test_io_bytes_unfused_moves_the_state_tensor_six_times(N, dtype_bytes):
    batch, d_inner, L = 2, 3, 5
    d = vt.io_bytes(batch, d_inner, L, N, dtype_bytes)
    big = 4 * batch * d_inner * L * N  # fp32 (batch, d_inner, L, N)
    # written by both discretizations, read twice and written once by the scan, read by the contraction
    small = d["unfused_total"] - 6 * big
    x, bc = dtype_bytes * batch * d_inner * L, dtype_bytes * batch * N * L
    # Δ and A; Δ, u, B; C and y; y, u, z, D and y again
    assert small == (x + 4 * d_inner * N) + (2 * x + bc) + (bc + x) + (4 * x + 4 * d_inner)
    assert d["ratio"] == d["unfused_total"] / d["fused_total"]


def test_io_bytes_ratio_grows_with_N():
    """The paper's O(N) saving (§3.3.2): the unfused traffic grows with N, the fused traffic hardly at all."""
    ratios = [vt.io_bytes(1, 1024, 4096, N)["ratio"] for N in (4, 16, 64)]
    assert ratios[0] < ratios[1] < ratios[2]
    assert all(r > N for r, N in zip(ratios, (4, 16, 64)))


def test_roofline_points():
    p = vt.roofline_points(8, 1536, 8192, 16, 4)
    io = vt.io_bytes(8, 1536, 8192, 16, 4)
    assert p["flops"] == vt.SCAN_FLOPS_PER_ELEMENT * 8 * 1536 * 8192 * 16
    assert p["fused"] == p["flops"] / io["fused_total"]
    assert p["unfused"] < 1 < p["fused"] < vt.GPU["flops_per_s"] / vt.GPU["bytes_per_s"]


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: vt.block_layout(0, 4), ValueError, "n must be >= 1, got 0"),
        (lambda: vt.block_layout(3, 2.0), TypeError, "BLOCK must be an int, got float"),
        (lambda: vt.chunk_carry(8, 4, decay=1.5), ValueError, r"decay must be in \[0, 1\], got 1.5"),
        (lambda: vt.io_bytes(1, 2, 3, 4, dtype_bytes=3), ValueError, "dtype_bytes must be 2, 4 or 8, got 3"),
        (lambda: vt.io_bytes(1, 2, 0, 4), ValueError, "L must be >= 1, got 0"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize(
    "make",
    [
        vt.plot_block_layout,
        vt.plot_chunk_carry,
        vt.plot_io_bytes,
        vt.plot_roofline,
        lambda: vt.plot_benchmark(_res()),
    ],
    ids=lambda f: f.__name__,
)
def test_figures_have_labelled_axes(make):
    fig = make()
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_title()
    plt.close(fig)


@pytest.mark.parametrize("make", [vt.block_layout_widget, vt.chunk_carry_widget, vt.io_bytes_widget])
def test_widgets_build(make):
    w = make()
    assert len(w.children) >= 2  # the controls and the output
    plt.close("all")


def test_figures_are_registered():
    from minimamba.viz import FIGURES

    assert {"06_blocks", "06_chunk_carry", "06_io_bytes", "06_roofline"} <= set(FIGURES)


def _two_paragraphs():
    first = 1

    second = first + 1
    return second


def test_source_paragraph_finds_the_stage():
    from minimamba.kernels.teaching import recurrence

    assert vt.source_paragraph(_two_paragraphs, "second =") == "second = first + 1\nreturn second"
    assert "def _two_paragraphs" in vt.source_paragraph(_two_paragraphs, "first = 1")
    kernel = vt.source_paragraph(recurrence.first_order_scan_kernel, "tl.associative_scan")  # a @triton.jit
    assert "first_order_combine" in kernel
    with pytest.raises(ValueError, match="no paragraph of '_two_paragraphs' contains 'third'"):
        vt.source_paragraph(_two_paragraphs, "third")


def test_source_paragraph_until_spans_lines_and_paragraphs():
    from minimamba.kernels.teaching import recurrence

    assert (
        vt.source_paragraph(_two_paragraphs, "first = 1", until="first + 1")
        == "first = 1\n\nsecond = first + 1"
    )
    assert vt.source_paragraph(_two_paragraphs, "return", until="second") == "return second"  # the same line
    part = vt.source_paragraph(recurrence.chunked_first_order_scan_kernel, "for i_c in", until="tl.store(")
    lines = part.splitlines()
    assert lines[0].startswith("for i_c in") and lines[-1].lstrip().startswith("tl.store(")  # dedented
    assert sum("tl.store(" in line for line in lines) == 1  # stops at the first match
    with pytest.raises(ValueError, match="no line of '_two_paragraphs' contains 'third'"):
        vt.source_paragraph(_two_paragraphs, "third", until="x")
    with pytest.raises(ValueError, match="from 'second =' on contains 'first = 1'"):
        vt.source_paragraph(_two_paragraphs, "second =", until="first = 1")


def test_benchmark_rows_from_a_results_file():
    from minimamba.kernels.selective_scan import bench

    shapes = [list(s) for s in bench.SHAPES]
    res = {
        "shapes": shapes,
        "copy_bytes_per_s": 4e12,
        "times": [
            {"impl": "triton (ours)", "mode": "fwd", "dtype": "fp32", "shape": shapes[2], "ms": 2.0},
            {"impl": "triton (ours)", "mode": "fwd", "dtype": "bf16", "shape": shapes[2], "ms": None},  # OOM
            {
                "impl": "minimamba.scan[chunked]",
                "mode": "fwd",
                "dtype": "fp32",
                "shape": shapes[2],
                "ms": 50.0,
            },
            {
                "impl": "minimamba.scan[blelloch]",
                "mode": "fwd",
                "dtype": "fp32",
                "shape": shapes[2],
                "ms": 70.0,
            },
            {"impl": "mambapy pscan", "mode": "fwd", "dtype": "fp32", "shape": shapes[2], "ms": 1.0},
            {"impl": bench.MAMBA_SSM, "mode": "fwd", "dtype": "fp32", "shape": shapes[2], "ms": 3.0},
            {"impl": bench.MAMBA_SSM, "mode": "fwd", "dtype": "fp32", "shape": shapes[1], "ms": 0.5},
        ],
    }
    (row,) = vt.benchmark_rows(res)
    batch, d_inner, L, N = shapes[2]
    floor_bytes = 4 * (4 * batch * d_inner * L + 2 * batch * N * L)  # read u, delta, z, B, C; write y
    assert row["shape"] == tuple(shapes[2]) and (row["mode"], row["dtype"]) == ("fwd", "fp32")
    assert row["ours_ms"] == 2.0 and row["pytorch_ms"] == 50.0  # the fastest of the package's scans only
    assert row["mamba_ssm_ms"] == 3.0  # measured in the same run, at the same shape
    res["times"] = [t for t in res["times"] if t["impl"] != bench.MAMBA_SSM]
    assert vt.benchmark_rows(res)[0]["mamba_ssm_ms"] is None  # not measured: None
    assert row["floor_ms"] == pytest.approx(floor_bytes / 4e12 * 1e3)


def _res() -> dict:
    import json

    from minimamba import committed

    return json.loads(committed.kernel_results("selective_scan").read_text())


def test_gpu_bandwidth_is_the_measured_copy():
    """The roofline's bandwidth is the device-to-device copy of the committed benchmark, not a datasheet."""
    assert abs(vt.GPU["bytes_per_s"] / _res()["copy_bytes_per_s"] - 1) < 0.005


def test_gpu_name_is_the_committed_device():
    """The roofline names the GPU that bench.py ran on (results.json's "device", up to its first comma)."""
    device = _res()["device"]
    assert vt.GPU["name"] == device.split(",")[0] and vt.GPU["name"] and "," not in vt.GPU["name"]
    assert device.startswith(vt.GPU["name"] + ", 132 SMs")  # a Hopper card: the flops and exps constants hold
    fig = vt.plot_roofline(res=_res())
    assert fig.axes[0].get_title().startswith(f"{vt.GPU['name']}, selective-scan forward (32-bit inputs)")
    plt.close(fig)


def test_measured_roofline_points_from_a_results_file():
    res = {
        "times": [
            {"impl": "triton (ours)", "mode": "fwd", "dtype": "fp32", "shape": [1, 32, 64, 4], "ms": 2.0},
            {
                "impl": "minimamba.scan[chunked]",
                "mode": "fwd",
                "dtype": "fp32",
                "shape": [1, 32, 64, 4],
                "ms": 8.0,
            },
            {"impl": "triton (ours)", "mode": "fwd+bwd", "dtype": "fp32", "shape": [1, 32, 64, 4], "ms": 5.0},
            {"impl": "triton (ours)", "mode": "fwd", "dtype": "bf16", "shape": [1, 32, 64, 4], "ms": 1.0},
            {"impl": "mambapy pscan", "mode": "fwd", "dtype": "fp32", "shape": [1, 32, 64, 4], "ms": 9.0},
        ]
    }
    pts = vt.measured_roofline_points(res, dtype_bytes=4)
    flops = vt.SCAN_FLOPS_PER_ELEMENT * 32 * 64 * 4
    io = vt.io_bytes(1, 32, 64, 4, dtype_bytes=4)
    assert [p["impl"] for p in pts] == ["triton (ours)", "minimamba.scan[chunked]"]
    assert pts[0]["flops_per_s"] == pytest.approx(flops / 2e-3)
    assert pts[0]["intensity"] == pytest.approx(flops / io["fused_total"])
    assert pts[1]["intensity"] == pytest.approx(flops / io["unfused_total"])
    assert [p["ms"] for p in vt.measured_roofline_points(res, dtype_bytes=2)] == [1.0]


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda: vt.measured_roofline_points({"times": []}, dtype_bytes=8),
            ValueError,
            "dtype_bytes must be 2",
        ),
        (lambda: vt.measured_roofline_points([], dtype_bytes=4), TypeError, "res must be the dict"),
        (lambda: vt.plot_benchmark({"times": []}), TypeError, "res must be the dict of a results.json"),
    ],
)
def test_measured_roofline_points_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_roofline_plots_the_measured_kernels():
    fig = vt.plot_roofline(res=_res())
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("fused kernel, measured" in lab for lab in labels)
    assert any("PyTorch chunked scan, measured" in lab for lab in labels)
    plt.close(fig)


def test_block_layout_figure_stays_at_notebook_width():
    for n, block in ((40, 16), (40, 1), (10, 4)):
        fig = vt.plot_block_layout(n, block)
        assert fig.get_size_inches()[0] <= 9.0
        assert min(t.get_fontsize() for t in fig.axes[0].texts) >= 5
        plt.close(fig)


def test_gpu_bandwidth_is_the_committed_measurement():
    """The bytes floor uses the copy bandwidth that bench.py measured in the run it committed."""
    import json

    from minimamba import committed

    doc = json.loads(committed.kernel_results("selective_scan").read_text())
    assert vt.GPU["bytes_per_s"] == committed.copy_bandwidth() == doc["copy_bytes_per_s"]
    # below the datasheet's HBM bandwidth: H100 SXM 3.35 TB/s, H200 4.8 TB/s
    datasheet = 3.35e12 if "H100" in doc["device"] else 4.8e12
    assert 2e12 < vt.GPU["bytes_per_s"] < datasheet
    with pytest.raises(ValueError, match="op must be the name of a folder in kernels/"):
        committed.kernel_results("../etc")
    with pytest.raises(FileNotFoundError, match="op must be a kernel folder of minimamba.kernels"):
        committed.kernel_results("no_such_op")
