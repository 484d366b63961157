"""Plots and widget builders for the notebooks, so that a notebook cell stays one or two lines.

One submodule per notebook topic (``minimamba.viz.<topic>``); each keeps its figures pure (a function that
takes parameters and returns a matplotlib Figure, or the data it plots) and its widgets thin (sliders wired
to those functions), so that pytest can call a widget's update with parameter values and check the data.

``make figures`` runs ``python -m minimamba.viz figures/``: every function registered with ``@figure(name)``
in any submodule is called with no arguments and saved as ``figures/<name>.png``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

__all__ = ["FIGURES", "figure", "load_all", "show"]

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
