"""The data behind notebook 07's and 09's figures and widgets, against closed forms and the real models."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from minimamba.config import MambaConfig
from minimamba.model import MambaLM, param_count
from minimamba.transformer import TransformerPP, TransformerPPConfig, matched_pairs
from minimamba.viz import block as vb
from minimamba.viz import inference as vi


@pytest.mark.parametrize("dt_min, dt_max", [(1e-3, 1e-1), (1e-2, 2e-2), (0.05, 0.05)])
def test_dt_init_update(dt_min, dt_max):
    d = vb.dt_init_update(dt_min, dt_max, n=4000)
    assert d["in_range"] == 1.0
    # the bug gives ≈ dt²: compare with the square of the right Δ, channel by channel
    np.testing.assert_allclose(d["dt_bug"], d["dt"] ** 2, rtol=0.1)
    if dt_max < 0.5:
        assert d["bug_in_range"] < 0.5
    with pytest.raises(ValueError, match="dt_min"):
        vb.dt_init_update(0.1, 0.01)


def test_decay_update():
    d = vb.decay_update(delta=0.02, N=5, L=50)
    n = np.arange(1, 6)[:, None]
    np.testing.assert_allclose(d["decay"], np.exp(-0.02 * n * np.arange(50)[None, :]), rtol=1e-12)
    np.testing.assert_allclose(d["half_life"], math.log(2) / (0.02 * n[:, 0]))
    with pytest.raises(ValueError, match="delta"):
        vb.decay_update(delta=0.0)


@pytest.mark.parametrize("selective, tie", [(True, True), (False, True), (True, False)])
def test_param_breakdown_sums(selective, tie):
    cfg = MambaConfig(
        d_model=24, n_layer=3, vocab_size=50, selective=selective, tie_embeddings=tie, bias=True
    )
    parts = vb.param_breakdown(cfg)
    assert sum(parts.values()) == param_count(cfg) == MambaLM(cfg).num_params()


def test_paper_sizes_param_counts():
    """Rounded totals of the five pretrained sizes (the names are rounded counts)."""
    got = {
        k: param_count(MambaConfig(d_model=d, n_layer=n, vocab_size=50277))
        for k, (d, n) in vb.PAPER_SIZES.items()
    }
    for name, count in got.items():
        want = float(name[:-1]) * (1e6 if name.endswith("M") else 1e9)
        assert abs(count - want) / want < 0.08, (name, count)


def test_cache_size_matches_models():
    cfg = MambaConfig(d_model=16, n_layer=3, vocab_size=30, d_state=5, d_conv=3)
    m = MambaLM(cfg)
    d = vi.cache_size_update(16, 3, context=7, batch=2, bytes_per_element=2, d_state=5, d_conv=3)
    assert m.init_cache(2, dtype=torch.bfloat16).nbytes() == d["mamba"]
    tpp = TransformerPP(TransformerPPConfig(vocab_size=30, d_model=16, n_layer=3, n_head=2, max_len=16))
    d4 = vi.cache_size_update(16, 6, context=7, batch=2, bytes_per_element=4)  # 6 Mamba blocks ~ 3 layers
    assert tpp.init_cache(2, max_len=7).nbytes() == d4["transformer"]
    assert d["transformer"] == 2 * 1 * 2 * 7 * 16 * 2  # 3 Mamba blocks: a 1-layer Transformer
    pair = matched_pairs()[0]  # mamba-130m and its Transformer++: same width, half the layers
    assert pair.transformer.n_layer == vi.cache_size_update(768, 24)["transformer"] // (2 * 2048 * 768 * 2)
    with pytest.raises(ValueError, match="context"):
        vi.cache_size_update(context=0)


def test_measure_generation_tiny():
    d = vi.measure_generation((4, 8, 16), d_model=16, n_layer=2, n_steps=2)
    assert len(set(d["mamba_bytes"].tolist())) == 1
    # the KV cache is allocated for the context and the steps: k and v, 1 layer, d_model 16, fp32
    np.testing.assert_array_equal(d["transformer_bytes"], 2 * 1 * 16 * (np.array([4, 8, 16]) + 2) * 4)
    assert np.all(d["mamba_ms"] > 0) and np.all(d["transformer_ms"] > 0)
    assert d["mamba_params"] == MambaLM(MambaConfig(d_model=16, n_layer=2, vocab_size=256)).num_params()
    with pytest.raises(ValueError, match="contexts"):
        vi.measure_generation((0,))


def test_figures_and_widgets_build():
    for fig in (
        vb.plot_block_diagram(),
        vb.plot_dt_init(),
        vb.plot_decay(),
        vb.plot_param_breakdown(),
        vi.plot_cache_size(),
    ):
        assert isinstance(fig, Figure)
        for ax in fig.axes:
            if ax.axison:
                assert ax.get_xlabel() and ax.get_ylabel()
    fig = vi.plot_generation(vi.measure_generation((4, 8), d_model=16, n_layer=1, n_steps=1))
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    assert vb.dt_init_widget().children and vi.cache_widget().children


def test_dt_init_widget_keeps_dt_min_below_dt_max():
    """dt_init_update refuses dt_max < dt_min; the widget's sliders never hand it that order."""
    with pytest.raises(ValueError, match="dt_min <= dt_max"):
        vb.dt_init_update(1e-2, 1e-3)
    w = vb.dt_init_widget()
    lo, hi = w.children[:2]
    hi.value = 1e-4  # below dt_min = 1e-3: dt_min follows it down
    assert lo.value == hi.value == pytest.approx(1e-4)
    lo.value = 0.5  # above dt_max: dt_max follows it up
    assert lo.value == hi.value == pytest.approx(0.5)
    hi.value = 0.8  # the right order is left alone
    assert (lo.value, hi.value) == (pytest.approx(0.5), pytest.approx(0.8))
    d = vb.dt_init_update(lo.value, hi.value, n=500)
    assert d["in_range"] == 1.0 and d["dt_min"] <= d["dt_max"]


def test_block_diagram_text_is_readable_at_notebook_width():
    """Shown 800 px wide (8 inches at 100 dpi), every label of the block diagram is at least 9 pt."""
    fig = vb.plot_block_diagram()
    scale = vb.NOTEBOOK_WIDTH_IN / fig.get_figwidth()
    texts = [t for ax in fig.axes for t in ax.texts] + [fig.axes[0].title]
    assert len(texts) > 15
    small = [
        (t.get_text(), t.get_fontsize() * scale)
        for t in texts
        if t.get_text() and t.get_fontsize() * scale < 9
    ]
    assert not small, small
