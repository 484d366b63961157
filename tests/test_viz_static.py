"""Every widget also displays a static PNG of its figure: the same pixels as the figure function drawn directly
at the widget's current control values (read through IPython's display formatter, as a notebook does)."""

import base64

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pytest
from IPython.core.formatters import DisplayFormatter

from minimamba.config import MambaConfig
from minimamba.model import MambaLM
from minimamba.viz import (
    block,
    compare,
    continuous,
    convolution,
    discretization,
    figure_png,
    inference,
    recurrences,
    selection,
    synthetic,
    triton,
    with_static,
)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tiny_model():
    torch_model = MambaLM(MambaConfig(d_model=8, n_layer=2, vocab_size=16, d_state=4))
    return torch_model.eval()


def _throughput_doc():
    rows = [
        {
            "pair": "p",
            "variant": "Mamba, PyTorch step",
            "model": "mamba",
            "batch": b,
            "tokens_per_s": 10.0 * b,
        }
        for b in (1, 2)
    ]
    return {"rows": rows}


MODEL = _tiny_model()
DOC = _throughput_doc()

# (widget builder, the figure at its default control values drawn directly with those values written out)
CASES = {
    "01": (continuous.response_widget, lambda: continuous.plot_response(-0.5, 2.0, "step")),
    "02": (discretization.trajectory_widget, lambda: discretization.plot_trajectory(0.25, "euler", "decay", "step")),
    "03": (convolution.kernel_widget, lambda: convolution.plot_kernel(0.1, 16, 64, "ones")),
    "04": (selection.gate_widget, lambda: selection.plot_gate(selection.GATE_TOKENS, [1, -2, -2, 1, -2, -2, -2, 0])),
    "06a": (triton.block_layout_widget, lambda: triton.plot_block_layout(10, 4)),
    "06b": (triton.chunk_carry_widget, lambda: triton.plot_chunk_carry(48, 16, 0.9)),
    "06c": (triton.io_bytes_widget, lambda: triton.plot_io_bytes(1, 1024, 2**15, 16, 2)),
    "07": (block.dt_init_widget, lambda: block.plot_dt_init(1e-3, 1e-1)),
    "08": (lambda: synthetic.delta_widget(MODEL, L=64, k=4), lambda: synthetic.plot_delta(MODEL, 0, 1, 64, 4)),
    "09": (inference.cache_widget, lambda: inference.plot_cache_size(768, 24, 1)),
    "10": (lambda: compare.throughput_widget(DOC), None),
    "11": (recurrences.forgetting_widget, lambda: recurrences.plot_forgetting(-1.5, 1.0, 120)),
}  # fmt: skip


def _bundle(widget) -> dict:
    data, _ = DisplayFormatter().format(widget)
    return data


def _png(data: dict) -> bytes:
    return base64.b64decode(data["image/png"])


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("name", list(CASES))
def test_widget_output_carries_the_default_figure(name):
    build, reference = CASES[name]
    w = build()
    data = _bundle(w)
    assert data[WIDGET_VIEW]["model_id"] == w.model_id  # the interactive view is still there
    png = _png(data)
    assert png.startswith(PNG_MAGIC)
    if reference is not None:
        assert png == base64.b64decode(figure_png(reference())), f"{name}: the PNG is not the default figure"


def test_the_png_follows_the_controls():
    """Displayed again after a control moved, the PNG is the figure at the new value."""
    w = continuous.response_widget()
    first = _png(_bundle(w))
    w.children[0].value = 0.3  # Re λ
    moved = _png(_bundle(w))
    assert moved != first
    assert moved == base64.b64decode(figure_png(continuous.plot_response(0.3, 2.0, "step")))

    g = selection.gate_widget()
    g.children[0].children[1].value = 1.0  # log10 Δ of token 1
    expected = selection.plot_gate(selection.GATE_TOKENS, [1, 1, -2, 1, -2, -2, -2, 0])
    assert _png(_bundle(g)) == base64.b64decode(figure_png(expected))


def test_the_static_figure_leaves_no_open_figure():
    before = plt.get_fignums()
    _bundle(inference.cache_widget())
    assert plt.get_fignums() == before


def test_bad_input():
    with pytest.raises(TypeError, match="widget must be an ipywidgets.Widget"):
        with_static("not a widget", lambda: plt.figure())
    with pytest.raises(TypeError, match="draw must be a callable"):
        with_static(widgets.IntSlider(), "not callable")
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        figure_png([1, 2])
    w = with_static(widgets.IntSlider(), lambda: None)
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure, got NoneType"):
        w._repr_mimebundle_()
