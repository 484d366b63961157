"""Notebooks 06 and 06b print the kernels one stage at a time, found by a line the stage contains
(``show(kernel, "marker", until="...")``, i.e. :func:`minimamba.viz.triton.source_paragraph`), and call the
kernel modules' functions by name. Every such marker and name must exist in the current kernel source, so
that editing a comment or renaming a function in ``kernels/`` fails here rather than in a notebook."""

from __future__ import annotations

import ast
import json
import pathlib

import pytest
from minimamba.kernels.selective_scan import bwd, fwd, fwd_time
from minimamba.kernels.teaching import recurrence

from minimamba.viz import triton as vt

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = [ROOT / "notebooks" / "06_triton_scan.ipynb", ROOT / "notebooks" / "06b_making_it_fast.ipynb"]
#: the names the notebooks import the kernel modules under
MODULES = {"fwd": fwd, "bwd": bwd, "fwd_time": fwd_time, "recurrence": recurrence}


def _code(notebook: pathlib.Path) -> ast.Module:
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    lines = []
    for cell in cells:  # IPython magics (%pip ...) are not Python: a `pass` in their place
        for ln in "".join(cell["source"]).splitlines():
            magic = ln.lstrip().startswith("%")
            lines.append(ln[: len(ln) - len(ln.lstrip())] + "pass" if magic else ln)
    return ast.parse("\n".join(lines))


def _module_attr(node: ast.AST) -> tuple[str, str] | None:
    """``fwd.name`` -> ("fwd", "name") for the kernel modules; None for anything else."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in MODULES:
        return node.value.id, node.attr
    return None


def _stage_calls(tree: ast.Module) -> list[tuple[str, str, str, str | None]]:
    """(module, object, contains, until) for every show(...) / source_paragraph(...) of a kernel object."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if name not in ("show", "source_paragraph") or len(node.args) < 2:
            continue
        target = _module_attr(node.args[0])
        if target is None:
            continue
        strings = [a.value for a in node.args[1:] if isinstance(a, ast.Constant)]
        strings += [
            k.value.value for k in node.keywords if k.arg == "until" and isinstance(k.value, ast.Constant)
        ]
        contains, until = strings[0], (strings[1] if len(strings) > 1 else None)
        found.append((*target, contains, until))
    return found


CALLS = [(nb.name, *call) for nb in NOTEBOOKS for call in _stage_calls(_code(nb))]
NAMES = sorted(
    {
        (nb.name, *t)
        for nb in NOTEBOOKS
        for node in ast.walk(_code(nb))
        if (t := _module_attr(node)) is not None
    }
)


def test_the_notebooks_show_kernel_stages():
    assert {call[0] for call in CALLS} == {nb.name for nb in NOTEBOOKS}  # both notebooks were parsed
    assert len(CALLS) >= 15


@pytest.mark.parametrize(("notebook", "module", "obj", "contains", "until"), CALLS)
def test_every_marker_is_in_the_kernel_source(notebook, module, obj, contains, until):
    kernel = getattr(MODULES[module], obj)
    text = vt.source_paragraph(kernel, contains, until)  # raises ValueError naming the missing marker
    assert contains in text and (until is None or until in text)


@pytest.mark.parametrize(("notebook", "module", "name"), NAMES)
def test_every_name_the_notebooks_use_exists(notebook, module, name):
    assert hasattr(MODULES[module], name), (
        f"{notebook} uses {module}.{name}, which kernels/ no longer defines"
    )


def test_a_missing_marker_is_reported():
    """The check above can fail: a marker that is not in the source raises, naming it."""
    with pytest.raises(ValueError, match="no paragraph of .* contains 'no such line'"):
        vt.source_paragraph(fwd.selective_scan_fwd_kernel, "no such line")
