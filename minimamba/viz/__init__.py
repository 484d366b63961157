"""Plots and widget builders for the notebooks, so that a notebook cell stays one or two lines.

One submodule per notebook topic (``minimamba.viz.<topic>``); each keeps its figures pure (a function that
takes parameters and returns a matplotlib Figure, or the data it plots) and its widgets thin (sliders wired
to those functions), so that pytest can call a widget's update with parameter values and check the data.

Widgets carry a static figure: :func:`with_static` adds a PNG of the widget's figure (at the values its
controls hold when it is displayed) to the widget's display output, next to the interactive view. A frontend
that renders widgets picks the interactive view and ignores the PNG; a viewer that cannot (a static notebook
renderer, a PDF export) falls back to the PNG instead of showing an empty output.

``make figures`` runs ``python -m minimamba.viz figures/``: every function registered with ``@figure(name)``
in any submodule is called with no arguments and saved as ``figures/<name>.png``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

__all__ = ["FIGURES", "figure", "figure_png", "load_all", "show", "with_static"]

#: name -> function returning a matplotlib Figure (filled by the @figure decorator in submodules)
FIGURES: dict[str, Callable] = {}


def figure(name: str) -> Callable[[Callable], Callable]:
    """Register a no-argument figure function to be written to ``figures/<name>.png`` by ``make figures``."""

    def register(fn: Callable) -> Callable:
        if name in FIGURES and FIGURES[name] is not fn:
            raise ValueError(
                f"figure name {name!r} registered twice ({FIGURES[name].__module__}, {fn.__module__})"
            )
        FIGURES[name] = fn
        return fn

    return register


def load_all() -> dict[str, Callable]:
    """Import every ``minimamba.viz`` submodule so that their figures register."""
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    return FIGURES


def show(fig) -> None:
    """Display ``fig`` in the current output (a widget's Output area included), then free it."""
    import matplotlib.pyplot as plt  # noqa: PLC0415  (lazy: `python -m minimamba.viz` picks the backend first)

    plt.show()
    plt.close(fig)


def with_static(widget, draw: Callable):
    """Make ``widget`` display with a static PNG of ``draw()`` beside its interactive view; return ``widget``.

    ``draw`` takes no arguments and returns the matplotlib Figure the widget shows for its controls' current
    values (read them inside ``draw``, so that the PNG matches the widget whenever it is displayed). The PNG
    is one more MIME type in the same display output: a frontend that renders widgets (JupyterLab ranks the
    widget view above images) shows the widget alone, one that cannot shows the PNG; no figure appears twice.
    """
    import ipywidgets  # noqa: PLC0415  (lazy: keeps `import minimamba.viz` light)

    if not isinstance(widget, ipywidgets.Widget):
        raise TypeError(f"widget must be an ipywidgets.Widget, got {type(widget).__name__}")
    if not callable(draw):
        raise TypeError(f"draw must be a callable returning a matplotlib Figure, got {type(draw).__name__}")
    interactive_bundle = widget._repr_mimebundle_

    def bundle(**kwargs) -> dict:
        data = dict(interactive_bundle(**kwargs))
        data["image/png"] = figure_png(draw())
        return data

    # ipywidgets itself replaces this method on the instance (Widget.close sets it to None).
    widget._repr_mimebundle_ = bundle
    return widget


def figure_png(fig) -> str:
    """``fig`` as the base64 PNG an inline matplotlib backend would display (tight bounding box); closes it."""
    import base64  # noqa: PLC0415

    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    try:
        import io  # noqa: PLC0415

        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
        return base64.b64encode(buf.getvalue()).decode("ascii")
    finally:
        plt.close(fig)
