"""Figures of notebook 10 (Mamba against the Transformer, measured): the committed GPU runs of
``scripts/bench_generation.py`` (``results/generation_*.json``) and small live versions that run on a CPU.

- ``plot_scan_vs_attention``: Figure 8 (left) — the selective scan against causal attention, time vs L;
- ``plot_throughput``: Figure 8 (right) — generation throughput against batch size, matched pairs;
- ``plot_step_vs_context``: time and memory of one decoding step against the context length;
- ``crossover``: the first length at which one method is faster than another (and stays so).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import partial

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from minimamba import committed
from minimamba.transformer import matched_pairs
from minimamba.viz import show, with_static

__all__ = [
    "best_ratio",
    "crossover",
    "measure_throughput",
    "step_bytes",
    "load_generation",
    "measure_scan_vs_attention",
    "plot_scan_vs_attention",
    "plot_step_vs_context",
    "plot_throughput",
    "ratio_at",
    "series",
    "throughput_widget",
]

OURS = "selective scan (ours, Triton)"
FLASH = "attention (SDPA, FlashAttention)"


def load_generation(name: str) -> dict:
    """The committed ``results/generation_<name>.json`` (name: throughput, context, scan or peer)."""
    return json.loads(committed.results_file(f"generation_{name}.json").read_text())


def series(rows: Sequence[dict], x: str, y: str, **match) -> tuple[np.ndarray, np.ndarray]:
    """(x values, y values) of the rows that match every ``key=value`` and have ``y`` (no out-of-memory)."""
    pts = [
        (r[x], r[y]) for r in rows if all(r.get(k) == v for k, v in match.items()) and r.get(y) is not None
    ]
    pts.sort()
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts], dtype=float)


def crossover(rows: Sequence[dict], fast: str, slow: str, mode: str) -> int | None:
    """The smallest L from which ``fast`` takes less time than ``slow`` at every measured L where both ran
    (None if it never does)."""
    L1, t1 = series(rows, "L", "ms", method=fast, mode=mode)
    L2, t2 = series(rows, "L", "ms", method=slow, mode=mode)
    common = sorted(set(L1.tolist()) & set(L2.tolist()))
    faster = {L: t1[L1.tolist().index(L)] < t2[L2.tolist().index(L)] for L in common}
    for i, L in enumerate(common):
        if all(faster[M] for M in common[i:]):
            return L
    return None


def ratio_at(rows: Sequence[dict], num: str, den: str, mode: str, L: int) -> float | None:
    """time(num) / time(den) at length L, or None where either did not run."""
    a = [r["ms"] for r in rows if r["method"] == num and r["mode"] == mode and r["L"] == L and "ms" in r]
    b = [r["ms"] for r in rows if r["method"] == den and r["mode"] == mode and r["L"] == L and "ms" in r]
    return a[0] / b[0] if a and b else None


_STYLE = {
    OURS: dict(color="tab:red", marker="o"),
    "selective scan (PyTorch chunked)": dict(color="tab:orange", marker="v", ls="--"),
    FLASH: dict(color="tab:blue", marker="s"),
    "attention (naive, L x L matrix)": dict(color="tab:cyan", marker="^", ls="--"),
}


def plot_scan_vs_attention(doc: dict, title: str | None = None) -> Figure:
    """Figure 8 (left): time against L, one panel per mode measured (forward, forward + backward), one line per
    method; an × marks the first length where a method ran out of memory."""
    rows = doc["rows"]
    modes = [m for m in ("fwd", "fwd+bwd") if any(r["mode"] == m for r in rows)]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(
        1, len(modes), figsize=(5 * len(modes), 3.8), layout="constrained", squeeze=False
    )
    for ax, mode in zip(axes[0], modes):
        for method in methods:
            style = _STYLE.get(method) or (_STYLE[FLASH] if method.startswith("attention (SDPA") else {})
            L, ms = series(rows, "L", "ms", method=method, mode=mode)
            if len(L):
                ax.loglog(L, ms, label=method, **style)
            oom = [r["L"] for r in rows if r["method"] == method and r["mode"] == mode and r.get("oom")]
            if oom and len(L):
                ax.plot([min(oom)], [ms[-1]], "x", color=style.get("color"), ms=9, mew=2)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length L")
        ax.set_title(mode)
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("time (ms, median)")
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title or f"batch {doc['batch']}, width {doc['width']}, N = {doc['N']}, {doc['dtype']}")
    return fig


_VSTYLE = {
    "Mamba, PyTorch step": dict(color="tab:red", ls=":", marker="."),
    "Mamba, fused step": dict(color="tab:red", ls="--", marker="v"),
    "Mamba, fused step + CUDA graph": dict(color="tab:red", marker="o"),
    "Transformer++, eager": dict(color="tab:blue", ls="--", marker="v"),
    "Transformer++, CUDA graph": dict(color="tab:blue", marker="s"),
}


def plot_throughput(doc: dict, pairs: Sequence[str] | None = None) -> Figure:
    """Figure 8 (right): tokens per second against batch size, one panel per matched pair; × = out of memory."""
    rows = doc["rows"]
    pairs = list(pairs or dict.fromkeys(r["pair"] for r in rows))
    fig, axes = plt.subplots(
        1, len(pairs), figsize=(5 * len(pairs), 3.8), layout="constrained", squeeze=False
    )
    for ax, pair in zip(axes[0], pairs):
        for variant, style in _VSTYLE.items():
            b, tps = series(rows, "batch", "tokens_per_s", pair=pair, variant=variant)
            if len(b):
                ax.loglog(b, tps, label=variant, **style)
            oom = [r["batch"] for r in rows if r["pair"] == pair and r["variant"] == variant and r.get("oom")]
            if oom and len(b):
                ax.plot([min(oom)], [tps[-1]], "x", color=style["color"], ms=9, mew=2)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("generated tokens / s")
        n_m, n_t = next(p.counts() for p in matched_pairs() if p.mamba_name == pair)
        families = {r["model"] for r in rows if r["pair"] == pair and "tokens_per_s" in r}
        note = (
            "" if families == {"mamba", "transformer"} else "\n(run incomplete: not every variant measured)"
        )
        ax.set_title(f"{pair} ({n_m / 1e6:.0f}M) vs Transformer++ ({n_t / 1e6:.0f}M){note}", fontsize=10)

        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"prompt {doc['prompt']}, {doc['generated']} generated tokens, {doc['dtype']}, greedy")
    return fig


def best_ratio(doc: dict, pair: str) -> dict:
    """Per batch: Mamba's best throughput / the Transformer++'s best, where both ran."""
    rows = [r for r in doc["rows"] if r["pair"] == pair and "tokens_per_s" in r]
    out = {}
    for b in sorted({r["batch"] for r in rows}):
        m = [r["tokens_per_s"] for r in rows if r["batch"] == b and r["model"] == "mamba"]
        t = [r["tokens_per_s"] for r in rows if r["batch"] == b and r["model"] == "transformer"]
        if m and t:
            out[b] = max(m) / max(t)
    return out


def plot_step_vs_context(doc: dict) -> Figure:
    """Time per decoding step (CUDA graph) and cache memory against the context, batch 1 and 16."""
    rows = doc["rows"]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    for model, color in (("mamba", "tab:red"), ("transformer", "tab:blue")):
        for batch, ls in ((1, "-"), (16, "--")):
            c, ms = series(rows, "context", "ms_per_step", model=model, batch=batch)
            label = f"{'Mamba' if model == 'mamba' else 'Transformer++'}, batch {batch}"
            if len(c):
                ax0.semilogx(c, ms, ls, color=color, marker="o", label=label)
                c2, gib = series(rows, "context", "cache_gib", model=model, batch=batch)
                ax1.loglog(c2, gib, ls, color=color, marker="o", label=label)
    ax0.set_ylim(bottom=0)
    for ax, ylabel in ((ax0, "time per step (ms)"), (ax1, "cache (GiB)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    ax0.legend(fontsize=8)
    fig.suptitle(doc.get("pair", ""))
    return fig


def throughput_widget(doc: dict) -> widgets.interactive:
    """A batch slider over the measured throughputs: the bar chart of every variant at that batch size."""
    rows = doc["rows"]
    batches = sorted({r["batch"] for r in rows})
    pairs = list(dict.fromkeys(r["pair"] for r in rows))

    def draw(pair, batch) -> Figure:
        fig, ax = plt.subplots(figsize=(7, 2.8), layout="constrained")
        names, values = [], []
        for variant in _VSTYLE:
            hit = [r for r in rows if r["pair"] == pair and r["variant"] == variant and r["batch"] == batch]
            if hit:
                names.append(variant)
                values.append(hit[0].get("tokens_per_s", 0.0))
        ax.barh(names, values, color=[_VSTYLE[n]["color"] for n in names])
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.0f}" if v else " out of memory", va="center", fontsize=8)
        ax.set_xlabel("generated tokens / s")
        ax.set_title(f"{pair}, batch {batch}")
        return fig

    w = widgets.interactive(
        lambda pair, batch: show(draw(pair, batch)),
        pair=widgets.Dropdown(options=pairs, value=pairs[0], description="pair"),
        batch=widgets.SelectionSlider(options=batches, value=batches[0], description="batch"),
    )
    return with_static(w, lambda: draw(**w.kwargs))


def step_bytes(pair, context: int, batch: int, weight_bytes: int = 2) -> dict:
    """The fewest bytes one decoding step must move through GPU memory, for a matched ``pair``
    (``minimamba.transformer.MatchedPair``): every weight once (``weight_bytes`` each, bf16 by default), plus
    Mamba's state read and written (conv window in bf16, SSM state in fp32) or the Transformer's whole KV cache
    read (``context`` positions, bf16) and one new key and value written. A step at small batch is bound by
    these bytes, not by arithmetic, so bytes / bandwidth is its floor."""
    m, t = pair.mamba, pair.transformer
    n_m, n_t = pair.counts()
    mamba_state = m.n_layer * batch * m.d_inner * (m.d_conv * 2 + m.d_state * 4)
    kv = 2 * t.n_layer * batch * t.d_model * 2  # one position's keys and values, bf16
    return {
        "mamba": n_m * weight_bytes + 2 * mamba_state,
        "transformer": n_t * weight_bytes + kv * context + kv,
    }


# ---------------------------------------------------------------------------------------------------- live


@torch.no_grad()
def measure_scan_vs_attention(
    lengths: Sequence[int] = (256, 1024, 4096), width: int = 64, N: int = 16, heads: int = 4, reps: int = 3
) -> dict:
    """A CPU-sized Figure 8 (left), forward only, fp32: the PyTorch chunked selective scan against causal
    attention (SDPA and the naive L × L version) of the same width; the fastest of ``reps`` calls each."""
    from minimamba.scan import selective_scan  # noqa: PLC0415

    if width % heads:
        raise ValueError(f"width={width} must be divisible by heads={heads}")
    rows = []
    g = torch.Generator().manual_seed(0)
    for L in lengths:
        u, delta = torch.randn(1, width, L, generator=g), torch.randn(1, width, L, generator=g)
        A = -torch.arange(1, N + 1.0).repeat(width, 1)
        B, C = torch.randn(1, N, L, generator=g), torch.randn(1, N, L, generator=g)
        q, k, v = (torch.randn(1, heads, L, width // heads, generator=g) for _ in range(3))
        methods = {
            "selective scan (PyTorch chunked)": partial(
                selective_scan, u, delta, A, B, C, delta_softplus=True, backend="chunked"
            ),
            "attention (SDPA)": partial(F.scaled_dot_product_attention, q, k, v, is_causal=True),
            "attention (naive, L x L matrix)": partial(naive_attention, q, k, v),
        }
        for name, fn in methods.items():
            fn()  # warm-up
            best = min(_seconds(fn) for _ in range(reps))
            rows.append({"method": name, "mode": "fwd", "L": L, "ms": 1e3 * best})
    return {"batch": 1, "width": width, "N": N, "dtype": "fp32", "rows": rows}


@torch.no_grad()
def measure_throughput(
    batches: Sequence[int] = (1, 4, 16), d_model: int = 128, n_layer: int = 4, prompt: int = 64, gen: int = 16
) -> dict:
    """A CPU-sized Figure 8 (right): a random Mamba LM (``n_layer`` blocks) and the matched Transformer++
    (n_layer // 2 layers, the same width), fp32, greedy ``generate``; tokens per second = batch · gen / time."""
    from minimamba.config import MambaConfig  # noqa: PLC0415
    from minimamba.generate import generate  # noqa: PLC0415
    from minimamba.model import MambaLM  # noqa: PLC0415
    from minimamba.transformer import TransformerPP, TransformerPPConfig  # noqa: PLC0415

    torch.manual_seed(0)
    vocab = 256
    models = {
        "mamba": MambaLM(MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=vocab)).eval(),
        "transformer": TransformerPP(
            TransformerPPConfig(
                vocab_size=vocab,
                d_model=d_model,
                n_layer=max(1, n_layer // 2),
                n_head=4,
                max_len=prompt + gen,
            )
        ).eval(),
    }
    rows = []
    for batch in batches:
        ids = torch.randint(0, vocab, (batch, prompt))
        for name, model in models.items():
            generate(model, ids, 2, temperature=0)  # warm-up
            seconds = _seconds(partial(generate, model, ids, gen, temperature=0))
            rows.append({"model": name, "batch": batch, "tokens_per_s": batch * gen / seconds})
    params = {name: m.num_params() for name, m in models.items()}
    return {"prompt": prompt, "generated": gen, "params": params, "rows": rows}


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention that writes the whole (batch, heads, L, L) score matrix, as FlashAttention never does."""
    L, hd = q.shape[-2], q.shape[-1]
    s = (q @ k.transpose(-1, -2)) * hd**-0.5  # (batch, heads, L, L)
    s = s.masked_fill(torch.ones(L, L, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return s.softmax(-1) @ v


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
