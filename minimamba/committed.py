"""The committed results the notebooks plot, found in a source checkout and in an installed package alike.

The repository keeps GPU runs in ``results/`` and the scan benchmark in
``kernels/selective_scan/results.json``; ``pyproject.toml`` ships both inside the package (``minimamba/results/``
and ``minimamba/kernels/selective_scan/``). A notebook opened alone (Colab, or a copy outside the
repository) therefore reads them from the installed package, never from ``../results``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RESULTS", "kernel_results", "results_file"]

_PACKAGE = Path(__file__).resolve().parent

#: results/ of this installation: the checkout's folder (editable install, PYTHONPATH) or the copy in a wheel
RESULTS = next(
    (d for d in (_PACKAGE.parent / "results", _PACKAGE / "results") if d.is_dir()), _PACKAGE / "results"
)


def results_file(name: str) -> Path:
    """The path of ``results/<name>``; FileNotFoundError that says how the file is made if it is missing."""
    path = RESULTS / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} is not in {RESULTS}: it ships with minimamba (a checkout of the repository or "
            "`pip install` of it); the scripts in scripts/ write it on a GPU"
        )
    return path


def kernel_results(op: str = "selective_scan") -> Path:
    """``results.json`` of a kernel folder (written by its ``bench.py`` on a GPU)."""
    import importlib  # noqa: PLC0415  (importing the kernels configures Triton: only when asked)

    module = importlib.import_module(f"minimamba.kernels.{op}")
    path = Path(module.__file__).parent / "results.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: `python -m minimamba.kernels.{op}.bench` writes it on a GPU"
        )
    return path
