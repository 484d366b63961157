"""minimamba.viz.selection: the data behind notebook 04's figures, against independent references (float64
loops written here, the closed forms of Theorem 1, direct sums for the convolution)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from minimamba.tasks import selective_copying
from minimamba.testing import check_close
from minimamba.viz import selection as vs


def test_kernel_demands_by_brute_force():
    """The least-squares kernel against torch.linalg.lstsq on the explicit demand equations."""
    k = 3
    inputs = selective_copying(5, 12, k=k, generator=torch.Generator().manual_seed(0)).inputs
    d = vs.kernel_demands(inputs, k)
    L, T = 12, 12 + k
    rows, rhs = [], []
    for row in inputs:
        pos = [p for p in range(L) if row[p] != 0]
        for i in range(k):
            for j in range(k):
                e = torch.zeros(T, dtype=torch.float64)
                e[L + j - pos[i]] = 1.0
                rows.append(e)
                rhs.append(float(i == j))
    M, y = torch.stack(rows), torch.tensor(rhs, dtype=torch.float64)
    K = torch.linalg.lstsq(M, y[:, None], driver="gelsd").solution[:, 0]
    check_close("least-squares kernel", K, d["K"], rtol=1e-9, atol=1e-9)
    check_close(
        "residual",
        ((M @ K - y) ** 2).sum(),
        torch.tensor(d["residual"], dtype=torch.float64),
        rtol=1e-9,
        atol=1e-9,
    )
    assert d["residual"] > 0 and d["conflicts"]  # five random layouts cannot share one kernel


def test_kernel_solving_one_layout_copies_it():
    k = 3
    inputs = selective_copying(2, 16, k=k, generator=torch.Generator().manual_seed(3)).inputs
    dA = vs.kernel_demands(inputs[:1], k)
    assert dA["residual"] == 0
    out = vs.fixed_kernel_outputs(dA["K"], inputs, k)
    check_close("sequence A copied", out["targets"][0], out["answers"][0], rtol=1e-12, atol=1e-12)
    assert (out["answers"][1] - out["targets"][1]).abs().max() > 1  # and B is not
    # the convolution itself, as a direct sum
    u, K = out["u"][1], dA["K"]
    direct = torch.tensor([sum(K[t - s] * u[s] for s in range(t + 1)) for t in range(len(u))])
    check_close("K * u", direct, out["y"][1], rtol=1e-12, atol=1e-12)


def test_kernel_demands_bad_input():
    with pytest.raises(ValueError, match="int64"):
        vs.kernel_demands(torch.zeros(2, 5), 2)
    with pytest.raises(ValueError, match="k must be"):
        vs.kernel_demands(torch.zeros(2, 5, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="exactly k = 2"):
        vs.kernel_demands(torch.zeros(2, 5, dtype=torch.long), 2)


def test_theorem1_against_closed_forms():
    x = torch.randn(30, dtype=torch.float64)
    w, b = 1.7, -0.4
    d = vs.theorem1(x, w, b)
    z = w * x + b
    g = 1 / (1 + torch.exp(-z))
    check_close("A_bar = 1 - σ(z)", 1 - g, d["A_bar"], rtol=1e-12, atol=1e-14)
    check_close("B_bar (ZOH) = σ(z)", g, d["B_bar_zoh"], rtol=1e-12, atol=1e-14)
    h, ref = 0.0, []
    for t in range(30):
        h = (1 - g[t].item()) * h + g[t].item() * x[t].item()
        ref.append(h)
    ref = torch.tensor(ref, dtype=torch.float64)
    check_close("ZOH scan = gated RNN", ref, d["h_zoh"], rtol=1e-10, atol=1e-12)
    dt, hm, refm = torch.log1p(torch.exp(z)), 0.0, []
    for t in range(30):
        hm = math.exp(-dt[t].item()) * hm + dt[t].item() * x[t].item()
        refm.append(hm)
    refm = torch.tensor(refm, dtype=torch.float64)
    check_close("Euler scan", refm, d["h_mamba"], rtol=1e-10, atol=1e-12)
    assert d["rel_error_mamba"] == pytest.approx(((refm - ref).norm() / ref.norm()).item(), rel=1e-9)


def test_theorem1_sweep_error_shrinks_with_delta():
    s = vs.theorem1_sweep([-8.0, -4.0, 0.0], L=100)
    assert np.all(np.diff(s["mean_delta"]) > 0) and np.all(np.diff(s["rel_error"]) > 0)
    assert s["rel_error"][0] < 1e-2 < 0.5 < s["rel_error"][-1]


def test_gate_update_against_loop():
    x = [1.0, -2.0, 0.5, 3.0]
    ld = [1.0, -2.0, -3.0, 0.0]
    d = vs.gate_update(x, ld)
    h, ref = 0.0, []
    for xt, l in zip(x, ld):
        a = math.exp(-(10.0**l))
        h = a * h + (1 - a) * xt
        ref.append(h)
    check_close("gate state", np.array(ref), d["h"], rtol=1e-12, atol=1e-12)
    assert d["h"][0] == pytest.approx(1.0, abs=1e-4)  # Δ = 10 takes the token
    assert d["h"][2] == pytest.approx(d["h"][1], abs=1e-3)  # Δ = 0.001 ignores it
    with pytest.raises(ValueError, match="log10_delta must hold 4"):
        vs.gate_update(x, [0.0])
    with pytest.raises(ValueError, match="x must be"):
        vs.gate_update([], [])


def test_figures_and_widget_build():
    for fig in (vs.plot_fixed_kernel(), vs.plot_theorem1([-4.0, 0.0]), vs.plot_gate()):
        for ax in fig.axes:
            assert ax.get_xlabel() or ax.get_ylabel()
        plt.close(fig)
    w = vs.gate_widget()
    assert len(w.children[0].children) == len(vs.GATE_TOKENS)
    plt.close("all")


def _outside_math(text: str) -> str:
    """The part of a matplotlib label that mathtext does not typeset (between the $…$ pairs)."""
    return "".join(text.split("$")[::2])


def test_labels_are_typeset():
    """No literal underscore or Δ subscript outside mathtext: `Δ_t` must read $\\Delta_t$."""
    for fig in (vs.plot_fixed_kernel(), vs.plot_theorem1([-4.0, 0.0]), vs.plot_gate()):
        for ax in fig.axes:
            texts = [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
            texts += [
                ln.get_label() for ln in ax.get_lines() + ax.patches if not ln.get_label().startswith("_")
            ]
            for text in texts:
                assert text.count("$") % 2 == 0, text
                assert "_" not in _outside_math(text) and "Δ" not in _outside_math(text), text
        plt.close(fig)


def test_gate_sliders_line_up():
    sliders = vs.gate_widget().children[0].children
    assert len({s.style.description_width for s in sliders}) == 1
    assert len({s.layout.width for s in sliders}) == 1
    assert sliders[0].style.description_width not in ("", "initial")  # a fixed width, not each its own
    for i, s in enumerate(sliders):
        assert s.description.count("$") % 2 == 0 and "_" not in _outside_math(s.description)
        assert rf"\Delta_{i}" in s.description
