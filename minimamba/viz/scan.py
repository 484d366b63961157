"""Figures of the selective-scan benchmark (``python -m minimamba.bench``).

``plot_scan_cpu(result)`` draws time against L from the benchmark's result; the registered
``scan_cpu`` figure reads it from ``results/scan_cpu.json``, so ``make figures`` redraws it without
re-running the benchmark.
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from minimamba import committed
from minimamba.viz import figure

__all__ = ["SCAN_CPU_JSON", "plot_scan_cpu", "scan_cpu", "series"]

SCAN_CPU_JSON = committed.RESULTS / "scan_cpu.json"

#: line style per implementation: the loop dashed grey, mambapy dotted, auto thick
_STYLE = {
    "ref": {"color": "0.45", "ls": "--", "marker": "o", "label": "loop (selective_scan_ref)"},
    "sequential": {"color": "tab:brown", "ls": "--", "marker": "v", "label": "sequential (lean loop)"},
    "hillis_steele": {"color": "tab:purple", "ls": "-", "marker": "^", "label": "Hillis-Steele"},
    "blelloch": {"color": "tab:blue", "ls": "-", "marker": "s", "label": "Blelloch"},
    "chunked": {"color": "tab:green", "ls": "-", "marker": "D", "label": "chunked"},
    "auto": {"color": "black", "ls": "-", "marker": "*", "lw": 2.5, "label": "auto (selective_scan default)"},
    "mambapy": {"color": "tab:red", "ls": ":", "marker": "x", "label": "mambapy pscan"},
}


def series(result: dict, shape: tuple[int, int, int], mode: str) -> dict[str, tuple[list[int], list[float]]]:
    """{impl: (L values, seconds)} for one (batch, d_inner, N) and mode ("fwd" or "fwd+bwd"); cases that
    were skipped or not installed are left out. The roofline comes as impl "roofline"."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    roof: dict[int, float] = {}
    for r in result["rows"]:
        if (r["batch"], r["d_inner"], r["N"]) != tuple(shape) or r["mode"] != mode:
            continue
        roof[r["L"]] = r["roofline_s"]
        if r["seconds"] is None:
            continue
        Ls, ts = out.setdefault(r["impl"], ([], []))
        Ls.append(r["L"])
        ts.append(r["seconds"])
    if roof:
        Ls = sorted(roof)
        out["roofline"] = (Ls, [roof[L] for L in Ls])
    return out


def plot_scan_cpu(result: dict) -> Figure:
    """Time vs L, log-log: one panel per (batch, d_inner, N) and mode, one line per implementation."""
    shapes = sorted({(r["batch"], r["d_inner"], r["N"]) for r in result["rows"]})
    modes = ("fwd", "fwd+bwd")
    fig, axes = plt.subplots(
        len(modes), len(shapes), figsize=(5.2 * len(shapes), 4.2 * len(modes)), squeeze=False
    )
    for i, mode in enumerate(modes):
        for j, shape in enumerate(shapes):
            ax = axes[i][j]
            for impl, (Ls, ts) in series(result, shape, mode).items():
                if impl == "roofline":
                    ax.plot(Ls, ts, color="0.7", lw=4, alpha=0.6, label="memory roofline (fused kernel)")
                    continue
                style = dict(_STYLE.get(impl, {"label": impl}))
                ax.plot(Ls, ts, **style)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("sequence length L")
            ax.set_ylabel("median time (s)")
            ax.set_title(f"{mode}, (batch, d_inner, N) = {shape}")
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.suptitle(
        f"Selective scan on CPU, fp32 — {result['device']}, {result['threads']} threads, torch {result['torch']}"
    )
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    return fig


@figure("scan_cpu")
def scan_cpu() -> Figure:
    """The committed benchmark (results/scan_cpu.json) as figures/scan_cpu.png."""
    return plot_scan_cpu(json.loads(SCAN_CPU_JSON.read_text()))
