"""A tiny GPT-style Transformer with a KV cache: the baseline of notebook 09 (Mamba §4.5, Fig. 8).

It has the generation interface of :class:`minimamba.model.MambaLM` (``init_cache``, ``forward(ids,
cache=...)``, ``step(ids, cache)``, ``config.vocab_size``), so :func:`minimamba.generate.generate` drives
both. The difference that matters: its cache keeps every past key and value, so it grows linearly with the
context (2 · n_layer · d_model numbers per token), and each new token attends over all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GPT", "GPTConfig", "KVCache"]


@dataclass
class GPTConfig:
    vocab_size: int  # tokens
    d_model: int = 64  # width of the residual stream
    n_layer: int = 2  # attention + MLP blocks
    n_head: int = 4  # attention heads; d_model must divide by it
    max_len: int = 4096  # learned positions: the longest context

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layer", "n_head", "max_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GPTConfig.{name} must be an int >= 1, got {v!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"GPTConfig.d_model={self.d_model} must be divisible by n_head={self.n_head}")


@dataclass
class KVCache:
    """Per layer, the keys and values of every token so far: (batch, n_head, seqlen, head_dim) each."""

    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)
    seqlen: int = 0

    def nbytes(self) -> int:
        """Bytes held: grows linearly with the context length."""
        return sum(t.numel() * t.element_size() for t in [*self.keys, *self.values] if t is not None)


class _Layer(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.n_head = c.n_head
        self.ln1, self.ln2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)  # d_model -> q, k, v
        self.proj = nn.Linear(c.d_model, c.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(c.d_model, 4 * c.d_model), nn.GELU(), nn.Linear(4 * c.d_model, c.d_model)
        )

    def forward(self, x: torch.Tensor, cache: KVCache | None, i: int) -> torch.Tensor:
        batch, L, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)  # (batch, L, d_model) each
        q, k, v = (t.view(batch, L, self.n_head, d // self.n_head).transpose(1, 2) for t in (q, k, v))
        past = 0
        if cache is not None:
            if cache.keys[i] is not None:
                past = cache.keys[i].shape[2]
                k = torch.cat(
                    [cache.keys[i], k], dim=2
                )  # (batch, n_head, past + L, head_dim): the cache grows
                v = torch.cat([cache.values[i], v], dim=2)
            cache.keys[i], cache.values[i] = k, v
        if past == 0:  # a fresh sequence: the usual causal mask (lets PyTorch pick a fused kernel)
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (batch, n_head, L, head_dim)
        elif L == 1:  # one new token: it may attend to every cached key
            att = F.scaled_dot_product_attention(q, k, v)
        else:  # query t (absolute position past + t) may attend to keys 0..past + t
            mask = torch.ones(L, past + L, dtype=torch.bool, device=x.device).tril(diagonal=past)
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(att.transpose(1, 2).reshape(batch, L, d))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """input_ids (batch, L) -> logits (batch, L, vocab_size); pre-LayerNorm blocks, learned positions."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position = nn.Embedding(config.max_len, config.d_model)
        self.layers = nn.ModuleList(_Layer(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.embedding.weight  # tied, as in GPT-2

    def init_cache(self, batch_size: int) -> KVCache:
        n = self.config.n_layer
        return KVCache(keys=[None] * n, values=[None] * n)

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must have shape (batch, L), got {getattr(input_ids, 'shape', input_ids)}"
            )
        start = 0 if cache is None else cache.seqlen
        L = input_ids.shape[1]
        if start + L > self.config.max_len:
            raise ValueError(f"context {start + L} exceeds GPTConfig.max_len={self.config.max_len}")
        pos = torch.arange(start, start + L, device=input_ids.device)
        x = self.embedding(input_ids) + self.position(pos)  # (batch, L, d_model)
        for i, layer in enumerate(self.layers):
            x = layer(x, cache, i)
        if cache is not None:
            cache.seqlen += L
        return self.lm_head(self.ln_f(x))  # (batch, L, vocab)

    def step(self, input_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """input_ids (batch,) -> logits (batch, vocab); appends this token's keys and values to the cache."""
        return self.forward(input_ids[:, None], cache)[:, 0]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
