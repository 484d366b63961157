"""Triton kernels, one folder per op: ``selective_scan`` (the fused scan), ``causal_conv1d`` and ``rmsnorm``
(training, forward and backward, and one decoding step), ``state_update`` (one decoding step), ``teaching``
(notebook 06's first kernels).

Their source lives in the repository's top-level ``kernels/`` folder; ``pyproject.toml`` installs each op's
folder as a subpackage of this one. ``kernels/`` has no ``__init__.py`` of its own: a Python started at the
repository root (``python``, ``python -m pytest``) puts the root on ``sys.path``, and a top-level package
named ``kernels`` there would hide Hugging Face's ``kernels``, which transformers imports by that name.

Import ``minimamba`` first (importing this package does so): with no GPU it switches Triton to its CPU
interpreter before ``triton`` is imported.
"""

from pathlib import Path

# A source checkout on PYTHONPATH, without `pip install`, has no mapping from minimamba.kernels.<op> to
# kernels/<op>: look in the checkout's kernels/ folder too. (An installed wheel holds the ops in this folder;
# an editable install maps each op to its folder.)
_checkout = Path(__file__).resolve().parents[2] / "kernels"
if (_checkout / "selective_scan" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821  (a package's __path__ is defined by the import system)
