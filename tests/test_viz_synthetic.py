"""Notebook 08's tables, Δ read-out and figures, against values computed here."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minimamba.config import MambaConfig
from minimamba.model import MambaLM
from minimamba.tasks import NOISE, induction_heads, selective_copying
from minimamba.viz import load_all
from minimamba.viz.synthetic import (
    PAPER_TABLE1,
    PAPER_TABLE11,
    delta_stats,
    delta_trace,
    delta_update,
    format_table,
    plot_copying,
    plot_delta_stats,
    plot_extrapolation,
    plot_learning_curves,
    plot_sequences,
    table1_rows,
    table2_rows,
)


def doc(task, selective, acc, L=256, k=16, steps=100, test=None):
    h = {"eval_accuracy": {"train": [0.1, acc]}}
    if test is not None:
        h["test"] = test
    meta = {"task": task, "selective": selective, "train_length": L, "k": k, "steps": steps}
    return {"config": {}, "history": h, "meta": meta}


def test_table1_rows():
    docs = {
        "a": doc("selective_copying", True, 0.9412, L=1024),
        "b": doc("selective_copying", False, 0.5, L=256),
        "c": doc("selective_copying", True, 0.25, L=256),
        "d": doc("induction_heads", True, 1.0),
    }
    rows = table1_rows(docs)
    assert [(r["L"], r["layer"], r["accuracy %"]) for r in rows] == [
        (256, "S4 (LTI)", 50.0),
        (256, "S6", 25.0),
        (1024, "S6", 94.1),
    ]
    assert rows[0]["paper % (L=4096, 400K steps)"] == PAPER_TABLE1[("Mamba", "S4")] == 56.4
    assert rows[1]["paper % (L=4096, 400K steps)"] == 99.8


def test_table2_rows_and_format():
    docs = {
        "s6": doc("induction_heads", True, 1.0, test={"64": {"accuracy": 1.0}, "2048": {"accuracy": 0.5}}),
        "lti": doc("induction_heads", False, 1.0, test={"64": {"accuracy": 0.25}, "2048": {"error": "OOM"}}),
    }
    rows = table2_rows(docs)
    assert rows == [
        {"L": 64, "S6 %": 100.0, "LTI %": 25.0, "paper Mamba %": 100.0, "paper H3 %": 100},
        {"L": 2048, "S6 %": 50.0, "LTI %": None, "paper Mamba %": 100.0, "paper H3 %": 23.8},
    ]
    text = format_table(rows).splitlines()
    assert len(text) == 4 and text[0].split() == [
        "L",
        "S6",
        "%",
        "LTI",
        "%",
        "paper",
        "Mamba",
        "%",
        "paper",
        "H3",
        "%",
    ]
    assert text[3].split() == ["2048", "50.0", "–", "100.0", "23.8"]
    assert PAPER_TABLE11["MHA-Abs"][2**15] is None and len(PAPER_TABLE11["H3"]) == 15


def tiny_model(n_layer=1, selective=True):
    torch.manual_seed(0)
    return MambaLM(
        MambaConfig(d_model=8, n_layer=n_layer, vocab_size=16, d_state=4, selective=selective)
    ).eval()


def test_delta_trace_matches_the_block_pieces():
    """Δ recomputed by hand for a one-layer model: norm → in_proj → causal conv → SiLU → x_proj → dt_proj."""
    model = tiny_model()
    ids = induction_heads(3, 11, generator=torch.Generator().manual_seed(1)).inputs
    d = delta_trace(model, ids)
    mixer = model.backbone.layers[0].mixer
    with torch.no_grad():
        hidden = model.backbone.layers[0].norm(model.backbone.embedding(ids))  # (3, 11, 8)
        x = (hidden @ mixer.in_proj.weight.T)[..., : mixer.d_inner]  # (3, 11, d_inner)
        w = mixer.conv1d.weight[:, 0, :]  # (d_inner, d_conv)
        xp = F.pad(x.transpose(1, 2), (mixer.d_conv - 1, 0))  # (3, d_inner, 11 + d_conv - 1)
        conv = torch.stack([(xp[..., t : t + mixer.d_conv] * w).sum(-1) for t in range(11)], -1)
        u = F.silu(conv + mixer.conv1d.bias[:, None]).transpose(1, 2)  # (3, 11, d_inner)
        dt = (u @ mixer.x_proj.weight.T)[..., : mixer.dt_rank]
        ref = F.softplus(dt @ mixer.dt_proj.weight.T + mixer.dt_proj.bias)
    assert d.shape == (1, 3, 11, mixer.d_inner)
    torch.testing.assert_close(d[0], ref, rtol=1e-5, atol=1e-6)


def test_delta_trace_needs_a_selective_model():
    with pytest.raises(ValueError, match="delta_trace needs a selective model"):
        delta_trace(tiny_model(selective=False), torch.zeros(1, 4, dtype=torch.long))


def test_delta_update():
    model = tiny_model(n_layer=2)
    u = delta_update(model, seed=3, layer=1, L=20, k=4)
    b = selective_copying(1, 20, 4, 16, generator=torch.Generator().manual_seed(3))
    assert np.array_equal(u["inputs"], b.inputs[0].numpy())
    assert (u["data"].astype(int) + u["noise"] + u["marker"] == 1).all()  # a partition of the positions
    assert u["data"].sum() == 4 and u["marker"].sum() == 4 and (u["inputs"][u["noise"]] == NOISE).all()
    full = delta_trace(model, b.inputs)[1, 0].mean(-1).numpy()
    np.testing.assert_allclose(u["delta"], full)
    assert u["mean_data"] == pytest.approx(full[u["data"]].mean())
    assert u["mean_noise"] == pytest.approx(full[u["noise"]].mean())
    with pytest.raises(ValueError, match=r"layer must be in 0 … 1, got 2"):
        delta_update(model, 0, 2)


def test_delta_stats():
    """Every sequence's row is delta_update's trace of it; ``index`` counts the data tokens before each one."""
    model = tiny_model(n_layer=2)
    s = delta_stats(model, layer=1, n_seq=3, L=20, k=4, seed=5)
    b = selective_copying(3, 20, 4, 16, generator=torch.Generator().manual_seed(5))
    full = delta_trace(model, b.inputs)[1].mean(-1).numpy()
    np.testing.assert_allclose(s["delta"], full)
    ids = b.inputs.numpy()
    for row in range(3):
        data_positions = [t for t in range(20) if ids[row, t] != NOISE]  # before the markers: data or noise
        assert np.flatnonzero(s["data"][row]).tolist() == data_positions
        assert np.flatnonzero(s["noise"][row]).tolist() == [t for t in range(20) if ids[row, t] == NOISE]
        assert [s["index"][row, t] for t in data_positions] == [0, 1, 2, 3]
        assert (s["index"][row][~s["data"][row]] == -1).all()
    assert s["position"].tolist() == list(range(24))
    for bad, match in (
        ({"layer": 2}, r"layer must be in 0 … 1, got 2"),
        ({"n_seq": 0}, "n_seq must be an int >= 1"),
    ):
        with pytest.raises(ValueError, match=match):
            delta_stats(model, **{"layer": 1, **bad})
    fig = plot_delta_stats(model, layer=0, n_seq=4, L=20, k=4)
    assert [ax.get_xlabel() for ax in fig.axes] == ["position t", "j (the j-th data token of its sequence)"]
    plt.close(fig)


def test_plots_have_labelled_axes():
    b = selective_copying(3, 12, 3, 16, generator=torch.Generator().manual_seed(0))
    hist = {"step": [1, 2], "loss": [2.0, 1.0], "eval_step": [2], "eval_accuracy": {"32": [0.5]}}
    figs = [
        plot_sequences(b.inputs, "selective_copying", targets=b.targets),
        plot_learning_curves({"S6": hist, "LTI": hist}),
        plot_extrapolation({"S6": {"64": 1.0, "128": 0.5}}, 64),
        plot_copying({"a": doc("selective_copying", True, 0.9), "b": doc("selective_copying", False, 0.5)}),
    ]
    for fig in figs:
        for ax in fig.axes:
            if ax.has_data() or ax.images:
                assert ax.get_xlabel() and ax.get_ylabel()
        plt.close(fig)
    with pytest.raises(ValueError, match="task must be"):
        plot_sequences(b.inputs, "copy")


def test_registered_figures_draw_from_the_committed_results():
    figures = load_all()
    for name in ("08_learning_curves", "08_induction_extrapolation", "08_selective_copying", "08_delta"):
        fig = figures[name]()
        assert fig.axes and all(ax.get_xlabel() for ax in fig.axes if ax.has_data())
        plt.close(fig)
