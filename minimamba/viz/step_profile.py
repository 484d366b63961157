"""Where the time of a training step goes: the GPU kernels of ``scripts/profile_training.py``, grouped.

The profile lists every CUDA kernel of one step (forward, cross-entropy, backward) by name. A kernel's name
says what it does, whoever wrote it: cuBLAS's matrix products are named after their tile shapes, PyTorch's
element-wise kernels after their functor, Triton's after the Python function. :func:`group_of` sorts a name
into one of :data:`GROUPS` by the first pattern it matches; :func:`group_times` adds up a step's kernels per
group; :func:`profile_table` and :func:`plot_profile` put the paths (``fused``, ``readable``, ``mamba_ssm``)
side by side.
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["GROUPS", "group_of", "group_times", "plot_profile", "profile_table"]

#: (group, pattern) in the order they are tried; the first that matches a kernel's name (case-insensitive)
#: names its group, and a name that matches none is "other element-wise".
GROUPS: tuple[tuple[str, str], ...] = (
    ("selective scan", r"selective_scan|state_update|scan_kernel|bc_layouts"),
    ("causal conv1d", r"conv(?!ert)|depthwise"),
    ("add + RMSNorm", r"rms_?norm|layer_norm"),
    ("matrix products", r"gemm|xmma|cutlass|nvjet|cublas|wgmma|splitk|sm\d\d_"),
    ("cross-entropy", r"softmax|nll_loss|cross_entropy"),
    ("copies and fills", r"copy|cat_|fill|memcpy|memset"),
)
OTHER = "other element-wise"
_COMPILED = [(g, re.compile(p, re.IGNORECASE)) for g, p in GROUPS]


def group_of(name: str) -> str:
    """The group of a kernel named ``name`` (see :data:`GROUPS`)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a kernel name (str), got {type(name).__name__}")
    return next((g for g, pattern in _COMPILED if pattern.search(name)), OTHER)


def group_times(kernels: list[dict]) -> dict[str, float]:
    """Milliseconds of GPU time per group, over a step's ``kernels`` (dicts with ``name`` and ``device_us``,
    as profile_training.py writes them), in the order of :data:`GROUPS`, then :data:`OTHER`."""
    if not isinstance(kernels, list) or not all(isinstance(k, dict) for k in kernels):
        raise TypeError("kernels must be a list of dicts with 'name' and 'device_us'")
    out = {g: 0.0 for g, _ in GROUPS} | {OTHER: 0.0}
    for k in kernels:
        if "name" not in k or "device_us" not in k:
            raise ValueError(f"kernels must be dicts with 'name' and 'device_us', got keys {sorted(k)}")
        out[group_of(k["name"])] += k["device_us"] / 1e3
    return out


def _grouped(doc: dict) -> tuple[dict[str, dict], dict[str, dict[str, float]]]:
    """(doc's results by path, their group times by path), after checking doc."""
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict) or not doc["results"]:
        raise ValueError("doc must be the JSON of scripts/profile_training.py, with a non-empty 'results'")
    missing = [p for p, r in doc["results"].items() if not r.get("kernels")]
    if missing:
        raise ValueError(f"doc has no GPU kernels for {missing}: profile it on a CUDA device")
    return doc["results"], {p: group_times(r["kernels"]) for p, r in doc["results"].items()}


def profile_table(doc: dict) -> str:
    """A text table: rows the groups (ms of GPU time in one step), then the kernels' sum, the step's wall
    time and its peak memory; one column per path."""
    results, groups = _grouped(doc)
    names = [g for g, _ in GROUPS] + [OTHER]
    width = max(len(n) for n in [*names, "step (wall clock)"]) + 2
    col = max(12, *(len(p) + 2 for p in results))  # every path's name fits its column
    lines = [f"{'ms per step':{width}}" + "".join(f"{p:>{col}}" for p in results)]
    for n in names:
        lines.append(f"{n:{width}}" + "".join(f"{groups[p][n]:{col}.1f}" for p in results))
    lines.append(f"{'all kernels':{width}}" + "".join(f"{sum(groups[p].values()):{col}.1f}" for p in results))
    lines.append(
        f"{'step (wall clock)':{width}}" + "".join(f"{r['step_ms']:{col}.1f}" for r in results.values())
    )
    peaks = [r.get("peak_memory_gib") for r in results.values()]
    if all(v is not None for v in peaks):
        lines.append(f"{'peak memory, GiB':{width}}" + "".join(f"{v:{col}.2f}" for v in peaks))
    return "\n".join(lines)


def plot_profile(doc: dict, title: str | None = None) -> Figure:
    """One horizontal bar per path: its step's GPU time stacked by group, and a tick at the step's wall
    time (the gap is time the GPU waited for the host)."""
    results, groups = _grouped(doc)
    names = [g for g, _ in GROUPS] + [OTHER]
    colors = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(results) + 1.8))
    paths = list(results)[::-1]  # first path on top
    for i, p in enumerate(paths):
        left = 0.0
        for j, n in enumerate(names):
            ax.barh(i, groups[p][n], left=left, color=colors[j % 10], label=n if i == 0 else None)
            left += groups[p][n]
        ax.plot([results[p]["step_ms"]] * 2, [i - 0.4, i + 0.4], color="black", lw=2,
                label="step, wall clock" if i == 0 else None)  # fmt: skip
    ax.set_yticks(range(len(paths)), paths, fontsize=9)
    ax.set_xlabel("milliseconds per training step", fontsize=9)
    ax.tick_params(labelsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
    fig.tight_layout()
    return fig
