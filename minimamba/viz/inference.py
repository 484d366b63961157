"""Figures and widgets of notebook 09 (inference): the cache a Mamba LM and a parameter-matched Transformer
hold while they generate, in closed form (``cache_size_update``) and measured on small random models on this
machine (``measure_generation``).

Mamba keeps, per layer, conv_state (batch, d_inner, d_conv) and ssm_state (batch, d_inner, N): constant in
the context length. A Transformer keeps keys and values for every past token: 2 · n_layer · d_model numbers
per token, growing without bound, and each new token attends over all of them.

The comparison is at matched parameter counts, as the paper pairs its models (Mamba-1.4B with a 1.3B
Transformer, §4.2): a Transformer layer holds about 12 · d_model² parameters (attention 4, MLP 8), a Mamba
block about 6 · d_model² (expand 2), so at the same width the Transformer has half the layers
(``minimamba.transformer.matched_pairs``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from minimamba import env
from minimamba.config import MambaConfig
from minimamba.model import MambaLM
from minimamba.transformer import TransformerPP, TransformerPPConfig
from minimamba.viz import figure, show, with_static

__all__ = [
    "cache_size_update",
    "cache_widget",
    "measure_generation",
    "plot_cache_size",
    "plot_generation",
]


def cache_size_update(
    d_model: int = 768,
    n_layer: int = 24,
    context: int = 2048,
    batch: int = 1,
    bytes_per_element: int = 2,
    d_state: int = 16,
    d_conv: int = 4,
    expand: int = 2,
    transformer_layers: int | None = None,
) -> dict:
    """Bytes of cache at ``context`` tokens for a Mamba LM (``n_layer`` blocks of width ``d_model``) and the
    parameter-matched Transformer: the same width, ``transformer_layers`` layers (default n_layer // 2).

    Mamba: n_layer · batch · d_inner · (d_conv · bytes_per_element + N · 4) (the SSM state is fp32).
    Transformer: 2 (K and V) · transformer_layers · batch · context · d_model · bytes_per_element.
    Returns ``mamba`` and ``transformer`` (ints) and ``crossover``: the context where they are equal.
    """
    t_layers = max(1, n_layer // 2) if transformer_layers is None else transformer_layers
    for name, v in (
        ("d_model", d_model),
        ("n_layer", n_layer),
        ("context", context),
        ("batch", batch),
        ("transformer_layers", t_layers),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    d_inner = expand * d_model
    mamba = n_layer * batch * d_inner * (d_conv * bytes_per_element + d_state * 4)
    per_token = 2 * t_layers * batch * d_model * bytes_per_element
    return {"mamba": mamba, "transformer": per_token * context, "crossover": mamba / per_token}


def plot_cache_size(
    d_model: int = 768, n_layer: int = 24, batch: int = 1, max_context: int = 2**17
) -> Figure:
    """Cache bytes against context length (log–log), closed form, bf16 activations."""
    ctx = np.unique(np.logspace(0, np.log2(max_context), 60, base=2).astype(int))
    m = [cache_size_update(d_model, n_layer, int(c), batch)["mamba"] for c in ctx]
    t = [cache_size_update(d_model, n_layer, int(c), batch)["transformer"] for c in ctx]
    fig, ax = plt.subplots(figsize=(7, 3.4), layout="constrained")
    ax.loglog(ctx, np.array(t) / 2**20, label=f"Transformer KV cache ({max(1, n_layer // 2)} layers)")
    ax.loglog(ctx, np.array(m) / 2**20, label=f"Mamba conv + SSM state ({n_layer} layers)")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("cache (MiB)")
    ax.set_title(f"matched pair: width {d_model}, batch {batch}")
    ax.legend()
    ax.grid(True, which="major", alpha=0.3)
    return fig


@figure("09_cache_size")
def _plot_cache_size_default() -> Figure:
    return plot_cache_size()


def cache_widget() -> widgets.interactive:
    """Sliders for the model's width, depth and batch over :func:`plot_cache_size`."""
    w = widgets.interactive(
        lambda d_model, n_layer, batch: show(plot_cache_size(d_model, n_layer, batch)),
        d_model=widgets.IntSlider(value=768, min=256, max=4096, step=256, description="d_model"),
        n_layer=widgets.IntSlider(value=24, min=2, max=64, step=2, description="n_layer"),
        batch=widgets.IntSlider(value=1, min=1, max=64, description="batch"),
    )
    return with_static(w, lambda: plot_cache_size(**w.kwargs))


@torch.no_grad()
def measure_generation(
    contexts: Sequence[int] = (64, 256, 1024),
    d_model: int = 128,
    n_layer: int = 2,
    n_steps: int = 8,
    seed: int = 0,
) -> dict:
    """Small random models on CPU: prefill ``context`` tokens, then time ``n_steps`` single-token steps.

    The pair is matched: Mamba with ``n_layer`` blocks, the Transformer++ with n_layer // 2 layers of the same
    width, its KV cache allocated for the context and the steps. Returns ``context`` (array),
    ``mamba_bytes`` / ``transformer_bytes`` (cache bytes held, fp32), ``mamba_ms`` / ``transformer_ms``
    (milliseconds per generated token, the fastest of ``n_steps``), ``mamba_params`` / ``transformer_params``.
    """
    if not contexts or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in contexts):
        raise ValueError(f"contexts must be positive ints, got {contexts!r}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: small ops time more steadily on a shared machine
    try:
        return _measure(contexts, d_model, n_layer, n_steps, seed)
    finally:
        torch.set_num_threads(threads)


def _measure(contexts, d_model, n_layer, n_steps, seed) -> dict:
    torch.manual_seed(seed)
    vocab = 256
    mamba = MambaLM(MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=vocab)).eval()
    tpp_cfg = TransformerPPConfig(
        vocab_size=vocab,
        d_model=d_model,
        n_layer=max(1, n_layer // 2),
        n_head=4,
        max_len=max(contexts) + n_steps,
    )
    tpp = TransformerPP(tpp_cfg).eval()
    out = {k: [] for k in ("mamba_bytes", "transformer_bytes", "mamba_ms", "transformer_ms")}
    for T in contexts:
        ids = torch.randint(0, vocab, (1, T))
        for name, model in (("mamba", mamba), ("transformer", tpp)):
            cache = model.init_cache(1) if model is mamba else model.init_cache(1, max_len=T + n_steps)
            logits = model(ids, cache=cache, num_last_tokens=1)[:, -1]  # prefill
            out[f"{name}_bytes"].append(cache.nbytes())
            tok = logits.argmax(-1)
            times = []
            for _ in range(n_steps):
                start = time.perf_counter()
                tok = model.step(tok, cache).argmax(-1)
                times.append(time.perf_counter() - start)
            # the fastest step: the least disturbed by a busy machine
            out[f"{name}_ms"].append(1e3 * float(np.min(times)))
    params = {"mamba_params": mamba.num_params(), "transformer_params": tpp.num_params()}
    return {"context": np.array(contexts), **{k: np.array(v) for k, v in out.items()}, **params}


def plot_generation(data: dict) -> Figure:
    """Left: cache bytes against context. Right: time per generated token against context."""
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    c = data["context"]
    ax0.loglog(c, data["transformer_bytes"] / 2**10, "o-", label="Transformer++ (KV cache)")
    ax0.loglog(c, data["mamba_bytes"] / 2**10, "s-", label="Mamba (conv + SSM state)")
    ax0.set_xlabel("context length (tokens)")
    ax0.set_ylabel("cache (KiB)")
    ax0.legend()
    ax1.semilogx(c, data["transformer_ms"], "o-", label="Transformer++")
    ax1.semilogx(c, data["mamba_ms"], "s-", label="Mamba")
    ax1.set_xlabel("context length (tokens)")
    ax1.set_ylabel("time per new token (ms)")
    ax1.set_ylim(bottom=0)
    ax1.legend()
    for ax in (ax0, ax1):  # label the measured lengths only
        ax.set_xticks(c, [str(int(v)) for v in c])
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.suptitle(
        f"Small random models on this machine's CPU: Mamba {data['mamba_params']:,} and "
        f"Transformer++ {data['transformer_params']:,} parameters"
    )
    return fig


@figure("09_generation_measured")
def _plot_generation_default() -> Figure:
    contexts = (256, 1024, 4096, 16384) if env.FAST else (256, 1024, 4096, 16384, 32768)
    return plot_generation(measure_generation(contexts, d_model=256, n_steps=16))
