"""The repository speaks for itself: no tracked text file points at material a reader does not have (files
outside the repository, machine paths, private notes) or reads as a development log.

Every tracked file that decodes as UTF-8 is scanned; in notebooks, the sources, text outputs and metadata
(images and other binary outputs are left out: base64 can spell anything).
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
THIS = pathlib.Path(__file__).relative_to(ROOT).as_posix()  # the one file that must spell the patterns

#: (name, pattern): what must not appear. Each is tested below on a fake file that contains it.
PATTERNS = [
    ("a folder outside the repository (shared/)", re.compile(r"(?<![\w/.-])shared/")),
    (
        "an anchors file",
        re.compile(r"\banchors\b|\banchor (?:files?|sizes?|shapes?|figures?|floors?)\b", re.I),
    ),
    ("research notes", re.compile(r"\bresearch notes?\b", re.I)),
    ("a git-ignored .dev/ folder", re.compile(r"(?<![\w.])\.dev/")),
    ("a machine path", re.compile(r"(?<![\w.~])/(?:tmp|work|root)/|(?<![\w.])/home/[a-z_][\w.-]*/")),
    ("a work session", re.compile(r"(?<!study\s)\bsessions?\b", re.I)),
    ("a device-call log", re.compile(r"\bdevice calls?\b", re.I)),
    ("a development diary", re.compile(r"\bwe (?:tried|then tried|gave up)\b", re.I)),
    ("a dated log heading", re.compile(r"^#+ .*\b20\d\d-[01]\d-[0-3]\d\b", re.M)),
]


def _binary_key(key: str) -> bool:
    return key.startswith(("image/", "application/pdf", "video/", "audio/"))


def _strip_binary(node):
    """``node`` (parsed notebook JSON) without image and other binary outputs, anywhere (widget state too)."""
    if isinstance(node, dict):
        return {k: _strip_binary(v) for k, v in node.items() if not _binary_key(k)}
    if isinstance(node, list):
        return [_strip_binary(v) for v in node]
    return node


def _texts(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _texts(v)
    elif isinstance(node, list):
        if node and all(isinstance(v, str) for v in node):  # a notebook's multi-line string
            yield "".join(node)
        else:
            for v in node:
                yield from _texts(v)
    elif isinstance(node, str):
        yield node


def scan_text(name: str, text: str) -> list[str]:
    """``name:line: what (the match)`` for every pattern match in ``text`` (a notebook's JSON or plain text)."""
    if name.endswith(".ipynb"):
        chunks = [
            (f"{name} cell {i}", t)
            for i, cell in enumerate(json.loads(text).get("cells", []))
            for t in _texts(_strip_binary(cell))
        ]
        chunks += [
            (f"{name} metadata", t) for t in _texts(_strip_binary(json.loads(text).get("metadata", {})))
        ]
    else:
        chunks = [(name, text)]
    hits = []
    for where, chunk in chunks:
        for what, pattern in PATTERNS:
            for m in pattern.finditer(chunk):
                line = chunk.count("\n", 0, m.start()) + 1
                hits.append(f"{where}:{line}: {what} ({m.group(0)!r})")
    return hits


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def scan_repository() -> list[str]:
    hits = []
    for name in tracked_files():
        path = ROOT / name
        if name == THIS or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (figures, weights)
        hits += scan_text(name, text)
    return hits


def test_the_repository_speaks_for_itself():
    try:
        hits = scan_repository()
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"not a git checkout: {e}")
    assert hits == [], "references to material outside the repository:\n" + "\n".join(hits)


# ---------------------------------------------------------------------------------- the scanner itself

BAD = {
    "a folder outside the repository (shared/)": "see shared/TOOLCHAIN.md",
    "an anchors file": "inputs as in the anchors file",
    "research notes": "item 5 of our research notes",
    "a git-ignored .dev/ folder": "scripts in the git-ignored `.dev/probe/`",
    "a machine path": "written to /tmp/out.json",
    "a work session": "measured in the fifth session",
    "a device-call log": "Device calls (26 of 30 minutes)",
    "a development diary": "we tried a log-space scan first",
    "a dated log heading": "## 2026-12-01: what changed",
}

GOOD = """\
import matplotlib.pyplot as plt
ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))  # a legend's anchor point
## Questions for the study session
see https://pkg.go.dev/strings and the library's shared memory; /usr/share/doc; ~/tmp/x
A helper returns the final state. Released 2026-12-01 (a date outside a heading).
"""


@pytest.mark.parametrize("what", list(BAD))
def test_the_scanner_catches_each_pattern(what):
    hits = scan_text("fake.md", f"line one\n{BAD[what]}\n")
    assert [h.split(": ", 1)[1].rsplit(" (", 1)[0] for h in hits] == [what], hits
    assert hits[0].startswith("fake.md:2: ")


def test_the_scanner_catches_machine_paths():
    for text in ("/work/main/.venv/bin/python", "cd /root/x", "/home/alice/minimamba"):
        assert scan_text("a.py", text), text


def test_the_scanner_leaves_ordinary_text_alone():
    assert scan_text("fake.py", GOOD) == []


def test_the_scanner_reads_notebooks_but_not_their_images():
    cell = {
        "cell_type": "code",
        "source": ["x = 1\n", "# from the anchors file\n"],
        "outputs": [
            {"output_type": "stream", "name": "stderr", "text": ["warning in /work/x.py\n"]},
            {
                "output_type": "display_data",
                "data": {"image/png": "AAAA/tmp/BBBB session", "text/plain": "ok"},
            },
        ],
    }
    nb = {"cells": [{"cell_type": "markdown", "source": "fine"}, cell], "metadata": {"note": "shared/x"}}
    hits = scan_text("n.ipynb", json.dumps(nb))
    assert hits == [
        "n.ipynb cell 1:2: an anchors file ('anchors')",
        "n.ipynb cell 1:1: a machine path ('/work/')",
        "n.ipynb metadata:1: a folder outside the repository (shared/) ('shared/')",
    ]
