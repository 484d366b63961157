"""Every formula in the notebooks' markdown is typeset as LaTeX (`$...$` or `$$...$$`), as notebooks 01 and 02
were from the start. Outside math spans, code spans, fenced code blocks and link targets, the prose must not
contain what only makes sense as raw LaTeX or as a subscript written by hand: `_{`, `^{`, a letter followed by
`_` and a letter or digit (`h_t`, `x_1`, `τ_Δ`, or a Python name such as d_inner that belongs in backticks), or a
caret between two symbols (`2^20`, `e^x`)."""

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))

# Removed, in this order, before the prose is checked (each is replaced by a space).
_FENCED = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\n[ \t]*\n).)+?\1", re.S)  # no blank line inside
_ESCAPED_DOLLAR = re.compile(r"\\\$")
_DISPLAY_MATH = re.compile(r"\$\$.+?\$\$", re.S)
_INLINE_MATH = re.compile(r"\$(?:\\.|[^$\\])+?\$", re.S)
_LINK_TARGET = re.compile(r"\]\([^)\s]*(?:\s+\"[^\"]*\")?\)")
_AUTOLINK = re.compile(r"<[a-z]+://[^>]*>|\b[a-z]+://\S+", re.I)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")

# What untypeset mathematics looks like.
_UNTYPESET = re.compile(
    r"_\{"  # LaTeX subscript group
    r"|\^\{"  # LaTeX superscript group
    r"|[^\W\d_]_[^\W_]"  # a letter, then _ and a letter or digit: h_t, x_1, τ_Δ, d_inner
    r"|(?:[^\W_]|[)\]])\^(?:[^\W_]|[(−-])"  # a caret between two symbols: 2^20, e^x, (…)^2
)


def prose(markdown: str) -> str:
    """The markdown with math spans, code spans, fenced code blocks and link targets blanked out."""
    text = _FENCED.sub(" ", markdown)
    text = _CODE_SPAN.sub(" ", text)
    text = _ESCAPED_DOLLAR.sub(" ", text)
    text = _DISPLAY_MATH.sub(" ", text)
    text = _INLINE_MATH.sub(" ", text)
    text = _LINK_TARGET.sub("]", text)
    text = _AUTOLINK.sub(" ", text)
    return _HTML_TAG.sub(" ", text)


def untypeset(markdown: str) -> list[str]:
    """The stretches of prose around each piece of untypeset mathematics (empty: everything is typeset)."""
    text = prose(markdown)
    return [text[max(0, m.start() - 25) : m.end() + 25].replace("\n", " ") for m in _UNTYPESET.finditer(text)]


# ------------------------------------------------------------------------------------ the detector itself


@pytest.mark.parametrize(
    "raw",
    [
        "the state h_t of Eq. (2a)",
        "h_k = Σ_{j=0}^{k} Ā^{k−j} B̄ u_j",
        "with x_1 and x_2",
        "τ_Δ = softplus",
        "s_B(x) = Linear_N(x)",
        "a (batch, d_inner, L) tensor",
        "decays as e^{−Δ}",
        "lengths up to 2^20",
        "the bound e^x",
        "it grows like (ΔA)^2",
        "$h_t$ is fine but h_t is not",
        "`code` and then K_{k−j}",
    ],
)
def test_detector_flags_untypeset_math(raw):
    assert untypeset(raw), raw


@pytest.mark.parametrize(
    "clean",
    [
        "the state $h_t$ of Eq. (2a)",
        "$$h_k = \\sum_{j=0}^{k} \\bar A^{k-j} \\bar B u_j$$",
        "two lines of display math:\n$$\na_{t}\n= b^{2}\n$$\nand prose after it",
        "inline math over a line break, $h_t = a_t\nh_{t-1}$, is one span",
        "a (batch, `d_inner`, L) tensor and ``x_1`` in a double-backtick span",
        "```python\nh_t = a_t * h_prev  # x_1^{2}\n```",
        "a [link to mamba#114](https://github.com/state-spaces/mamba/issues/114) and https://a.org/x_y",
        "costs \\$5 and $e^{x}$",
        "plain prose: N = 16 states, Δ = 0.1, the S4D-Real matrix, snake-case-free, 3 × 4",
        "markdown emphasis _like this_ and **bold_**",
    ],
)
def test_detector_passes_typeset_math(clean):
    assert untypeset(clean) == [], untypeset(clean)


def test_detector_names_the_offending_text():
    (hit,) = untypeset("Typeset $h_t$ here, but the output y_t is raw.")
    assert "y_t" in hit and "h_t" not in hit


# ------------------------------------------------------------------------------------------ the notebooks


def _cases():
    return [pytest.param(nb, id=nb.stem) for nb in NOTEBOOKS]


@pytest.mark.parametrize("notebook", _cases())
def test_markdown_math_is_typeset(notebook):
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    problems = [
        f"{notebook.name}, cell {i}: …{hit}…"
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "markdown"
        for hit in untypeset("".join(cell["source"]))
    ]
    assert not problems, f"{len(problems)} untypeset formulas:\n" + "\n".join(problems)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 9
