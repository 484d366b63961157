"""The four families of "does it model language?" at matched parameter counts, and their training recipe.

Families (``FAMILIES``): ``mamba`` (:class:`~minimamba.model.MambaLM`), ``mamba-lti`` (the same with
``selective=False``: Δ, B, C learned constants, the S4D-like ablation of Table 1), ``transformer++``
(:class:`~minimamba.transformer.TransformerPP`) and ``lstm`` (:class:`~minimamba.lstm.LSTMLM`).

Matching (:func:`family_config`): each family has a preferred depth per size (``DEPTHS``; Mamba has
twice the Transformer's layers as in the paper's pairs: §3.4 uses two Mamba blocks for the 12D² parameters of
one attention + MLP layer); the width (a multiple of 8) and a depth within ±25 %
of the preferred one are picked to land closest to the target count. The counts come from the closed
forms (``param_count``, ``tpp_param_count``, ``lstm_param_count``), no model is built. At a character
vocabulary the embedding is under 2 % of any of these models, so the matched counts are those of the
sequence mixers. The Transformer++'s SwiGLU width is 8/3 · d_model rounded up to a multiple of 8 (Llama
rounds to 256, which at d_model ~ 100 would nearly double the MLP) and its head dim is 32 below d_model
256, else 64.

Schedule (:func:`lr_at`): the paper's "improved recipe" (App. E.2) scaled down: AdamW with β = (0.9, 0.95),
weight decay 0.1, gradient clipping at 1.0, linear warm-up then cosine decay; here to 10 % of the peak
(the paper decays to 1e-5) over a few million characters instead of billions of tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from minimamba.config import MambaConfig
from minimamba.lstm import LSTMLM, LSTMConfig, lstm_param_count
from minimamba.model import MambaLM, param_count
from minimamba.transformer import TransformerPP, TransformerPPConfig, tpp_param_count

__all__ = [
    "DEPTHS",
    "FAMILIES",
    "SIZES",
    "build",
    "count",
    "family_config",
    "lr_at",
    "param_groups",
    "sample",
    "sweep_edge",
]

FAMILIES = ("mamba", "mamba-lti", "transformer++", "lstm")
#: target parameter counts (the names are what result files and figures show)
SIZES = {"0.5M": 500_000, "2M": 2_000_000, "6M": 6_000_000, "20M": 20_000_000}
#: preferred depth per family and size (Transformer++ layers ≈ half of Mamba's, as in the paper)
DEPTHS = {
    "mamba": {"0.5M": 8, "2M": 12, "6M": 16, "20M": 20},
    "mamba-lti": {"0.5M": 8, "2M": 12, "6M": 16, "20M": 20},
    "transformer++": {"0.5M": 4, "2M": 6, "6M": 8, "20M": 10},
    "lstm": {"0.5M": 2, "2M": 2, "6M": 3, "20M": 3},
}


def _tpp_config(vocab_size: int, d_model: int, n_layer: int, max_len: int) -> TransformerPPConfig:
    head_dim = 32 if d_model < 256 else 64
    n_head = max(1, d_model // head_dim)
    while d_model % n_head or (d_model // n_head) % 2:  # RoPE needs an even head dim dividing d_model
        n_head -= 1
    d_mlp = -(-int(8 * d_model / 3) // 8) * 8
    return TransformerPPConfig(
        vocab_size=vocab_size, d_model=d_model, n_layer=n_layer, n_head=n_head, d_mlp=d_mlp, max_len=max_len
    )


def make_config(family: str, vocab_size: int, d_model: int, n_layer: int, max_len: int = 2048):
    """The config of ``family`` at this width and depth (max_len: the Transformer++'s longest context)."""
    if family == "mamba":
        return MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=vocab_size)
    if family == "mamba-lti":
        return MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=vocab_size, selective=False)
    if family == "transformer++":
        return _tpp_config(vocab_size, d_model, n_layer, max_len)
    if family == "lstm":
        return LSTMConfig(vocab_size=vocab_size, d_model=d_model, n_layer=n_layer)
    raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


def count(config) -> int:
    """Parameters of the model ``config`` describes, in closed form."""
    if isinstance(config, MambaConfig):
        return param_count(config)
    if isinstance(config, TransformerPPConfig):
        return tpp_param_count(config)
    if isinstance(config, LSTMConfig):
        return lstm_param_count(config)
    raise TypeError(f"config must be a MambaConfig, TransformerPPConfig or LSTMConfig, got {type(config)}")


def build(config) -> nn.Module:
    """The model of a config from :func:`make_config`."""
    if isinstance(config, MambaConfig):
        return MambaLM(config)
    if isinstance(config, TransformerPPConfig):
        return TransformerPP(config)
    if isinstance(config, LSTMConfig):
        return LSTMLM(config)
    raise TypeError(f"config must be a MambaConfig, TransformerPPConfig or LSTMConfig, got {type(config)}")


def family_config(family: str, size: str, vocab_size: int, max_len: int = 2048):
    """The config of ``family`` closest to ``SIZES[size]`` parameters (see the module docstring).

    Depths within ±25 % of ``DEPTHS[family][size]`` and widths in multiples of 8 are tried; the score is the
    relative count error plus 1 % per layer of distance from the preferred depth, so the preferred depth
    wins unless another is clearly closer.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
    target, d0 = SIZES[size], DEPTHS[family][size]
    best = None
    for depth in range(max(1, math.floor(d0 * 0.75)), math.ceil(d0 * 1.25) + 1):
        for width in range(8, 4097, 8):
            config = make_config(family, vocab_size, width, depth, max_len)
            n = count(config)
            score = abs(n - target) / target + 0.01 * abs(depth - d0)
            if best is None or score < best[0]:
                best = (score, config)
            if n > target:
                break
    return best[1]


def lr_at(step: int, steps: int, peak: float, warmup: int, final_frac: float = 0.1) -> float:
    """The learning rate of step ``step`` (1-based): linear warm-up over ``warmup`` steps to ``peak``, then
    cosine decay to ``final_frac · peak`` at step ``steps``."""
    if step <= warmup:
        return peak * step / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def sweep_edge(finals: dict[float, float]) -> float | None:
    """The best learning rate if it is the smallest or largest of three or more tried, else None: a sweep
    whose best sits at its edge has not bracketed the optimum.

    ``finals``: {learning rate: final validation loss} of one family at one size.
    """
    if len(finals) < 3:
        return None
    best = min(finals, key=finals.get)
    return best if best in (min(finals), max(finals)) else None


#: parameters never decayed besides biases and norm weights: the SSM's own (mamba_ssm marks A_log and D
#: ``_no_weight_decay``; Δ's bias and the LTI model's B, C play the same role)
_NO_DECAY = ("A_log", "D", "dt_bias", "B", "C")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices (embedding and LSTM weights included), none on vectors
    (biases, norms) or on the SSM parameters in ``_NO_DECAY``."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.dim() < 2 or name.rsplit(".", 1)[-1] in _NO_DECAY else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Mean cross-entropy in nats over the first ``vocab_size`` logits (the padded rows are no token)."""
    return nn.functional.cross_entropy(logits[..., :vocab_size].float().flatten(0, 1), targets.flatten())


@torch.no_grad()
def sample(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    n: int,
    vocab_size: int,
    context: int,
    temperature: float = 0.8,
    seed: int = 0,
) -> torch.Tensor:
    """``n`` characters drawn after ``prompt_ids`` (1-D ids), each from the logits of a full forward pass over
    the last ``context`` ids at ``temperature`` (the same code for every family: no cache needed at these
    sizes). Deterministic for a seed. Returns the new ids (n,) on the CPU."""
    if prompt_ids.dim() != 1 or len(prompt_ids) == 0:
        raise ValueError(
            f"prompt_ids must be a non-empty 1-D tensor of ids, got shape {tuple(prompt_ids.shape)}"
        )
    if n < 0 or context < 1:
        raise ValueError(f"n must be >= 0 and context >= 1, got n={n}, context={context}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    ids = prompt_ids.to(device)
    new = []
    for _ in range(n):
        logits = model(ids[-context:][None])[0, -1, :vocab_size].float().cpu()
        nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=g)
        new.append(nxt)
        ids = torch.cat([ids, nxt.to(device)])
    model.train(was_training)
    return torch.cat(new) if new else torch.zeros(0, dtype=torch.long)
