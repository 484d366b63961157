"""Every widget in a committed notebook also leaves a static figure: a reader who does not run the notebook
(a static renderer, a PDF) sees the figure at the widget's default settings, not an empty output."""

import json
import pathlib
import re

import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# A cell creates a widget when it calls a `*_widget(...)` builder, uses ipywidgets or interact, or shows one.
CREATES_WIDGET = re.compile(r"\w_widget\(|\bwidgets\.\w|\binteract(ive)?(_manual)?\(")
# tqdm's notebook progress bar is a widget too, with no figure to show: its text ("S6:  40%|####  | 120/300")
PROGRESS_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+")

#: Notebooks whose committed outputs predate `minimamba.viz.with_static` (their widget builders already
#: carry the PNG; re-executing the notebook commits it). Strict xfail: empty this set once they are re-run.
NOT_YET_REEXECUTED: set[str] = set()


def widget_cells(nb: dict) -> list[tuple[int, dict]]:
    """(index, cell) of the code cells that create a widget, by their source or their outputs."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        shows = any(
            WIDGET_VIEW in data and not PROGRESS_BAR.search("".join(data.get("text/plain", "")))
            for data in (o.get("data") or {} for o in cell.get("outputs", []))
        )
        if shows or CREATES_WIDGET.search(source):
            found.append((i, cell))
    return found


def missing_png(nb: dict) -> list[int]:
    """Indices of widget cells with no image/png output."""
    return [
        i
        for i, cell in widget_cells(nb)
        if not any("image/png" in (o.get("data") or {}) for o in cell.get("outputs", []))
    ]


def _params():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        marks = (
            [pytest.mark.xfail(strict=True, reason="not re-executed yet")]
            if path.name in NOT_YET_REEXECUTED
            else []
        )
        yield pytest.param(path, id=path.stem.split("_")[0], marks=marks)


@pytest.mark.parametrize("path", list(_params()))
def test_every_widget_cell_has_a_static_figure(path):
    nb = json.loads(path.read_text())
    assert missing_png(nb) == [], f"{path.name}: widget cells without an image/png output (cell indices)"


def _nb(*cells):
    return {"cells": list(cells)}


def _code(source, *outputs):
    return {"cell_type": "code", "source": source, "outputs": list(outputs)}


def test_the_check_itself():
    view = {"output_type": "display_data", "data": {WIDGET_VIEW: {"model_id": "x"}, "text/plain": "VBox()"}}
    with_png = {"output_type": "display_data", "data": {WIDGET_VIEW: {"model_id": "x"}, "image/png": "iVBO"}}
    plot = {"output_type": "display_data", "data": {"image/png": "iVBO"}}
    nb = _nb(
        _code("vc.response_widget()", view),  # 0: a builder, no PNG
        _code("vc.response_widget()", with_png),  # 1: fine
        _code("x = 1"),  # 2: no widget
        _code("w = widgets.IntSlider()"),  # 3: ipywidgets, never run
        _code("interact(f, x=1)", plot),  # 4: a PNG from the function: fine
        _code("something()", view),  # 5: shows a widget
        _code(
            "train()", {"data": {WIDGET_VIEW: {}, "text/plain": ["S6:   0%|     | 0/300 [00:00<?, ?it/s]"]}}
        ),
        {"cell_type": "markdown", "source": "a `_widget(` in prose"},
    )
    assert [i for i, _ in widget_cells(nb)] == [0, 1, 3, 4, 5]
    assert missing_png(nb) == [0, 3, 5]
