"""The committed results the notebooks plot, found in a source checkout and in an installed package alike.

The repository keeps GPU runs in ``results/`` and the scan benchmark in
``kernels/selective_scan/results.json``; ``pyproject.toml`` ships both inside the package (``minimamba/results/``
and ``minimamba/kernels/selective_scan/``). A notebook opened alone (Colab, or a copy outside the
repository) therefore reads them from the installed package, never from ``../results``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RESULTS", "copy_bandwidth", "kernel_results", "results_file", "results_folder"]

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


def results_folder(name: str) -> Path:
    """The path of the folder ``results/<name>/`` (``language``: the JSON of ``scripts/run_language.py``);
    FileNotFoundError that says how it is made if it is missing."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"name must be the name of a folder in results/ (e.g. 'language'), got {name!r}")
    path = RESULTS / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"{name}/ is not in {RESULTS}: the scripts in scripts/ write it on a GPU "
            f"(for language: scripts/run_language.py --out results/{name})"
        )
    return path


def kernel_results(op: str = "selective_scan") -> Path:
    """``results.json`` of a kernel folder (written by its ``bench.py`` on a GPU). Finds the folder without
    importing the op (importing a kernel module loads Triton)."""
    import importlib.util  # noqa: PLC0415

    if not isinstance(op, str) or not op.isidentifier():
        raise ValueError(f"op must be the name of a folder in kernels/ (e.g. 'selective_scan'), got {op!r}")
    spec = importlib.util.find_spec(f"minimamba.kernels.{op}")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"op must be a kernel folder of minimamba.kernels, got {op!r}: no such package"
        )
    path = Path(spec.origin).parent / "results.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: `python -m minimamba.kernels.{op}.bench` writes it on a GPU"
        )
    return path


def copy_bandwidth(op: str = "selective_scan") -> float:
    """The device-to-device copy bandwidth (bytes/s) that ``op``'s benchmark measured on its GPU, in the same
    run as its timings (``copy_bytes_per_s`` in its ``results.json``): the memory roofline of that GPU."""
    import json  # noqa: PLC0415

    doc = json.loads(kernel_results(op).read_text())
    if "copy_bytes_per_s" not in doc:
        raise KeyError(f"{kernel_results(op)} has no copy_bytes_per_s: re-run the benchmark that writes it")
    return float(doc["copy_bytes_per_s"])
