"""Transformer++, the paper's strong Transformer baseline (Mamba §4.2.1: rotary embeddings, SwiGLU, RMSNorm,
no biases), with a KV cache; notebooks 09 and 10 compare it with Mamba (§4.5, Figure 8).

It has the generation interface of :class:`minimamba.model.MambaLM` (``init_cache``, ``forward(ids,
cache=..., num_last_tokens=...)``, ``step(ids, cache)``, ``config.vocab_size``), so
:func:`minimamba.generate.generate` drives both. The difference that matters: a KV cache keeps every past
key and value, 2 · n_layer · d_model numbers per token, and each new token attends over all of them. The
``StaticKVCache`` is allocated once for the whole generation and filled in place, as inference engines do.
``matched_pairs`` gives the paper's parameter-matched (MambaConfig, TransformerPPConfig) sizes, counted
without building them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from minimamba.config import MambaConfig, pad_vocab
from minimamba.model import RMSNorm, param_count

__all__ = [
    "MatchedPair",
    "StaticKVCache",
    "TransformerPP",
    "TransformerPPConfig",
    "matched_pairs",
    "tpp_param_count",
]


def _llama_d_mlp(d_model: int, multiple_of: int = 256) -> int:
    """SwiGLU width of Llama's reference code: int(2/3 · 4·d_model), rounded up to a multiple of 256.

    2/3 of the usual 4·d_model keeps the SwiGLU MLP (three matrices) at the parameter count of a GELU MLP
    (two matrices); the rounding keeps the matmuls tensor-core friendly. 768 -> 2048, 1024 -> 2816.
    """
    hidden = int(2 * 4 * d_model / 3)
    return -(-hidden // multiple_of) * multiple_of


def _check_pos_int(cls: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{cls}.{name} must be an int >= 1, got {value!r}")


@dataclass
class TransformerPPConfig:
    """Sizes of :class:`TransformerPP`. ``d_mlp=None`` becomes Llama's SwiGLU width (see ``_llama_d_mlp``)."""

    vocab_size: int  # tokens the tokenizer can produce (50277 for GPT-NeoX); padded for the embedding
    d_model: int = 64  # width of the residual stream
    n_layer: int = 2  # attention + MLP blocks (one such block ~ two Mamba blocks in parameters)
    n_head: int = 4  # attention heads; d_model / n_head (the head dim) must be even for RoPE
    d_mlp: int | None = None  # SwiGLU hidden width; None -> int(8/3 · d_model) rounded up to 256
    max_len: int = 2048  # longest context (the paper trains at 2048), and the default KV cache length
    rope_base: float = 10000.0  # RoPE: pair i of a head rotates by position · rope_base^(-2i / head_dim)
    tie_embeddings: bool = True  # the LM head reuses the embedding matrix
    pad_vocab_size_multiple: int = 8  # embedding rows rounded up as MambaConfig does (50277 -> 50280)
    norm_eps: float = 1e-5  # RMSNorm epsilon

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layer", "n_head", "max_len", "pad_vocab_size_multiple"):
            _check_pos_int("TransformerPPConfig", name, getattr(self, name))
        if self.d_mlp is None:
            self.d_mlp = _llama_d_mlp(self.d_model)
        _check_pos_int("TransformerPPConfig", "d_mlp", self.d_mlp)
        if self.d_model % self.n_head:
            raise ValueError(
                f"TransformerPPConfig.d_model={self.d_model} must be divisible by n_head={self.n_head}"
            )
        if (self.d_model // self.n_head) % 2:
            raise ValueError(
                f"TransformerPPConfig.n_head={self.n_head}: the head dim d_model / n_head = "
                f"{self.d_model // self.n_head} must be even (RoPE rotates pairs of channels)"
            )
        for name in ("rope_base", "norm_eps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"TransformerPPConfig.{name} must be a finite number > 0, got {v!r}")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(
                f"TransformerPPConfig.tie_embeddings must be a bool, got {self.tie_embeddings!r}"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def padded_vocab_size(self) -> int:
        """vocab_size rounded up to a multiple of pad_vocab_size_multiple: the embedding's and logits' size."""
        return pad_vocab(self.vocab_size, self.pad_vocab_size_multiple)


def tpp_param_count(config: TransformerPPConfig) -> int:
    """The parameter count of ``TransformerPP(config)`` in closed form, without building it.

    Per layer, with D = d_model, F = d_mlp: attention W_q, W_k, W_v, W_o 4·D²; SwiGLU W_gate, W_up, W_down
    3·D·F; two RMSNorm weights 2·D (no biases anywhere). Plus the embedding V·D (V padded), the final
    norm D, and the LM head V·D unless tied.
    """
    if not isinstance(config, TransformerPPConfig):
        raise TypeError(f"config must be a TransformerPPConfig, got {type(config).__name__}")
    d, f, v = config.d_model, config.d_mlp, config.padded_vocab_size
    total = config.n_layer * (4 * d * d + 3 * d * f + 2 * d) + v * d + d
    return total if config.tie_embeddings else total + v * d


@dataclass
class StaticKVCache:
    """Keys and values allocated once: per layer (batch, n_head, max_len, head_dim) each.

    ``forward(..., cache)`` and ``step`` write the new tokens' keys and values at positions
    ``seqlen .. seqlen + L - 1`` in place and attend over ``[:seqlen + L]``; nothing is reallocated, so the
    memory is paid up front (2 · n_layer · d_model numbers per token of ``max_len``).
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    seqlen: int = 0  # positions filled so far (prompt + generated)
    #: seqlen again, as a (1,) int64 tensor on the cache's device: ``step`` reads its position from here, not
    #: from the host, so that one step can be captured in a CUDA graph and replayed (generate.GraphedStep)
    pos: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.pos is None:
            self.pos = torch.full((1,), self.seqlen, dtype=torch.long, device=self.keys[0].device)

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the cache holds (what a CUDA graph of ``step`` reads and writes)."""
        return [*self.keys, *self.values, self.pos]

    @property
    def max_len(self) -> int:
        return self.keys[0].shape[2]

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    def nbytes(self) -> int:
        """Bytes held: fixed at allocation, whatever seqlen is."""
        return sum(t.numel() * t.element_size() for t in [*self.keys, *self.values])


def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float, dtype: torch.dtype):
    """positions (L,) -> cos, sin (L, head_dim // 2): the angle of pair i at position p is p · base^(-2i/hd).

    Angles are computed in float64 and then cast, so that large positions keep their precision in fp32.
    """
    inv_freq = base ** (
        -torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim
    )
    angles = positions.double()[:, None] * inv_freq[None, :]  # (L, head_dim // 2)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (batch, n_head, L, head_dim) -> x rotated; channel i pairs with i + head_dim/2 (GPT-NeoX, Llama)."""
    x1, x2 = x.chunk(2, dim=-1)  # (batch, n_head, L, head_dim // 2) each
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class _PPLayer(nn.Module):
    """x (batch, L, d_model) -> x + attn(norm(x)), then + SwiGLU(norm(x)); no biases."""

    def __init__(self, c: TransformerPPConfig):
        super().__init__()
        self.n_head, self.head_dim, self.rope_base = c.n_head, c.head_dim, c.rope_base
        self.attn_norm = RMSNorm(c.d_model, eps=c.norm_eps)
        self.wqkv = nn.Linear(c.d_model, 3 * c.d_model, bias=False)  # d_model -> q, k, v
        self.wo = nn.Linear(c.d_model, c.d_model, bias=False)
        self.mlp_norm = RMSNorm(c.d_model, eps=c.norm_eps)
        self.w_gate = nn.Linear(c.d_model, c.d_mlp, bias=False)
        self.w_up = nn.Linear(c.d_model, c.d_mlp, bias=False)
        self.w_down = nn.Linear(c.d_mlp, c.d_model, bias=False)

    def forward(
        self, x: torch.Tensor, cos, sin, cache: StaticKVCache | None, i: int, step: bool = False
    ) -> torch.Tensor:
        batch, L, d = x.shape
        q, k, v = self.wqkv(self.attn_norm(x)).split(d, dim=-1)  # (batch, L, d_model) each
        q, k, v = (t.view(batch, L, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # (batch, n_head, L, head_dim)
        if cache is not None and L == 1 and step:
            return self._attend_step(x, q, k, v, cache, i)
        start = 0
        if cache is not None:
            start = cache.seqlen
            cache.keys[i][:, :, start : start + L] = k  # written in place: the buffer never moves
            cache.values[i][:, :, start : start + L] = v
            # (batch, n_head, start + L, head_dim): a view, no copy, unless init_cache was given another dtype
            k = cache.keys[i][:, :, : start + L].to(q.dtype)
            v = cache.values[i][:, :, : start + L].to(q.dtype)
        if start == 0:  # a fresh sequence: the plain causal mask (lets PyTorch pick a fused kernel)
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (batch, n_head, L, head_dim)
        elif L == 1:  # one new token: it may attend to every filled position
            att = F.scaled_dot_product_attention(q, k, v)
        else:  # query t (absolute position start + t) may attend to keys 0 .. start + t
            # is_causal would align the mask top-left (query t sees keys 0..t), wrong with a prefix
            mask = torch.ones(L, start + L, dtype=torch.bool, device=x.device).tril(diagonal=start)
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self._out(x, att)

    def _attend_step(self, x, q, k, v, cache: StaticKVCache, i: int) -> torch.Tensor:
        """One token at the position held in ``cache.pos`` (a device tensor): write its key and value there,
        attend over the whole buffer with the unfilled tail masked out. No host value decides a shape or an
        index, so the step can be replayed from a CUDA graph; the price is attention over ``max_len``
        positions instead of the filled ones (a generation allocates only what it fills)."""
        cache.keys[i].index_copy_(2, cache.pos, k.to(cache.keys[i].dtype))  # (batch, n_head, max_len, hd)
        cache.values[i].index_copy_(2, cache.pos, v.to(cache.values[i].dtype))
        filled = (torch.arange(cache.max_len, device=x.device) <= cache.pos)[None]  # (1, max_len) bool
        k_all, v_all = cache.keys[i].to(q.dtype), cache.values[i].to(q.dtype)
        return self._out(x, F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=filled))

    def _out(self, x: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        """att (batch, n_head, L, head_dim) -> x + wo(att), then the SwiGLU MLP with its residual."""
        batch, L, d = x.shape
        x = x + self.wo(att.transpose(1, 2).reshape(batch, L, d))
        h = self.mlp_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))  # SwiGLU (Shazeer 2020)


class TransformerPP(nn.Module):
    """Transformer++: input_ids (batch, L) -> logits (batch, L, padded_vocab_size).

    Same generation interface as :class:`minimamba.model.MambaLM` (``init_cache``, ``forward(ids,
    cache=...)``, ``step(ids (batch,), cache) -> (batch, padded_vocab)``), so ``generate`` drives both.
    """

    def __init__(self, config: TransformerPPConfig):
        super().__init__()
        if not isinstance(config, TransformerPPConfig):
            raise TypeError(f"config must be a TransformerPPConfig, got {type(config).__name__}")
        self.config = config
        self.embedding = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.layers = nn.ModuleList(_PPLayer(config) for _ in range(config.n_layer))
        self.norm_f = RMSNorm(config.d_model, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        with torch.no_grad():  # GPT-2's init: N(0, 0.02²); residual outputs scaled by 1/sqrt(2·n_layer)
            nn.init.normal_(self.embedding.weight, std=0.02)
            for layer in self.layers:
                layer.wo.weight /= math.sqrt(2 * config.n_layer)
                layer.w_down.weight /= math.sqrt(2 * config.n_layer)
        if config.tie_embeddings:
            self.lm_head.weight = self.embedding.weight

    def init_cache(
        self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None, device=None
    ) -> StaticKVCache:
        """Zero keys and values for ``batch_size`` sequences of up to ``max_len`` (default config.max_len)
        tokens: per layer (batch, n_head, max_len, head_dim), in the parameters' dtype and device unless told."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        c = self.config
        max_len = c.max_len if max_len is None else max_len
        if isinstance(max_len, bool) or not isinstance(max_len, int) or not 1 <= max_len <= c.max_len:
            raise ValueError(f"max_len must be an int in [1, config.max_len={c.max_len}], got {max_len!r}")
        w = self.embedding.weight
        shape = (batch_size, c.n_head, max_len, c.head_dim)
        zeros = lambda: torch.zeros(shape, dtype=dtype or w.dtype, device=device or w.device)
        return StaticKVCache(keys=[zeros() for _ in self.layers], values=[zeros() for _ in self.layers])

    def forward(
        self, input_ids: torch.Tensor, cache: StaticKVCache | None = None, num_last_tokens: int = 0
    ) -> torch.Tensor:
        """input_ids: (batch, L) -> logits (batch, L, padded_vocab_size); with ``num_last_tokens`` > 0 only
        the last positions' logits (a prefill needs one: the full (batch, L, vocab) tensor can be larger
        than the model).

        With ``cache`` (from :meth:`init_cache`), continues at position ``cache.seqlen`` and writes the L new
        keys and values into it; raises ValueError when they do not fit.
        """
        if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.int64, torch.int32):
            got = getattr(input_ids, "dtype", type(input_ids).__name__)
            raise TypeError(f"input_ids must be an int64 tensor of shape (batch, L), got {got}")
        if input_ids.dim() != 2 or input_ids.shape[1] < 1:
            raise ValueError(
                f"input_ids must have shape (batch, L) with L >= 1, got {tuple(input_ids.shape)}"
            )
        batch, L = input_ids.shape
        start = 0
        if cache is not None:
            if not isinstance(cache, StaticKVCache):
                raise TypeError(
                    f"cache must be a StaticKVCache (from init_cache), got {type(cache).__name__}"
                )
            if cache.batch_size != batch:
                raise ValueError(f"input_ids has batch {batch} but the cache was made for {cache.batch_size}")
            start = cache.seqlen
            if start + L > cache.max_len:
                raise ValueError(
                    f"KV cache full: it holds {start} of max_len={cache.max_len} positions, cannot take {L} "
                    f"more; allocate a longer one with init_cache(batch_size, max_len=...)"
                )
        elif L > self.config.max_len:
            raise ValueError(
                f"input_ids length {L} exceeds TransformerPPConfig.max_len={self.config.max_len}"
            )
        return self._run(input_ids, cache, start, step=False, num_last_tokens=num_last_tokens)

    def _run(
        self, input_ids: torch.Tensor, cache: StaticKVCache | None, start: int, step: bool, num_last_tokens=0
    ):
        x = self.embedding(input_ids)  # (batch, L, d_model)
        L = input_ids.shape[1]
        if step:  # the position from the device: nothing on the host changes from one step to the next
            pos = cache.pos
        else:
            pos = torch.arange(start, start + L, device=input_ids.device)
        cos, sin = rope_cos_sin(pos, self.config.head_dim, self.config.rope_base, x.dtype)  # (L, hd/2)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, cache, i, step=step)
        if cache is not None:
            cache.seqlen += L
            cache.pos.add_(L)
        return self.lm_head(self.norm_f(_last(x, num_last_tokens)))  # (batch, L, padded_vocab)

    def step(self, input_ids: torch.Tensor, cache: StaticKVCache) -> torch.Tensor:
        """One token per sequence: input_ids (batch,) -> logits (batch, padded_vocab_size); fills one slot."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 1:
            raise ValueError(
                f"input_ids must have shape (batch,), got {getattr(input_ids, 'shape', input_ids)}"
            )
        if not isinstance(cache, StaticKVCache):
            raise TypeError(f"cache must be a StaticKVCache (from init_cache), got {type(cache).__name__}")
        if cache.batch_size != input_ids.shape[0]:
            raise ValueError(
                f"input_ids has batch {input_ids.shape[0]} but the cache was made for {cache.batch_size}"
            )
        if cache.seqlen >= cache.max_len:
            raise ValueError(
                f"KV cache full: it holds {cache.seqlen} of max_len={cache.max_len} positions, cannot take 1 "
                f"more; allocate a longer one with init_cache(batch_size, max_len=...)"
            )
        return self._run(input_ids[:, None], cache, cache.seqlen, step=True)[:, 0]

    def num_params(self) -> int:
        """Number of distinct parameters (the tied LM head counted once)."""
        return sum(p.numel() for p in self.parameters())


def _last(x: torch.Tensor, n: int) -> torch.Tensor:
    """x (batch, L, d) -> its last n positions (all of them for n = 0)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"num_last_tokens must be an int >= 0 (0 = every position), got {n!r}")
    return x[:, -n:] if n else x


class MatchedPair(NamedTuple):
    """A Mamba and a Transformer++ of (nearly) the same parameter count, as the paper pairs them (§4.2)."""

    mamba_name: str
    mamba: MambaConfig
    transformer_name: str
    transformer: TransformerPPConfig

    def counts(self) -> tuple[int, int]:
        """(Mamba parameters, Transformer++ parameters), from the configs alone."""
        return param_count(self.mamba), tpp_param_count(self.transformer)


# The paper's sizes follow GPT-3 (Brown et al. 2020): two Mamba blocks (~6·D² each) replace one attention +
# MLP block (4·D² + 3·D·d_mlp ~ 12·D²), hence twice the layers. Heads as in the Mamba paper's table of
# model sizes (App. E.2.1): 64-dim heads, except 16 heads of 96 at d_model 1536; they do not change the
# count. d_mlp is Llama's rule (_llama_d_mlp). Mamba comes out 2.7-4.8 % larger, as the names say.
_PAPER_SIZES = [  # (Mamba name, n_layer, Transformer++ name, n_layer, d_model, n_head)
    ("mamba-130m", 24, "transformer++-125m", 12, 768, 12),
    ("mamba-370m", 48, "transformer++-350m", 24, 1024, 16),
    ("mamba-790m", 48, "transformer++-760m", 24, 1536, 16),
    ("mamba-1.4b", 48, "transformer++-1.3b", 24, 2048, 32),
]


def matched_pairs(vocab_size: int = 50277, max_len: int = 2048) -> list[MatchedPair]:
    """The paper's four parameter-matched (Mamba, Transformer++) sizes, GPT-NeoX vocabulary (padded to 50280)."""
    return [
        MatchedPair(
            m_name,
            MambaConfig(d_model=d, n_layer=m_layers, vocab_size=vocab_size),
            t_name,
            TransformerPPConfig(
                vocab_size=vocab_size, d_model=d, n_layer=t_layers, n_head=h, max_len=max_len
            ),
        )
        for m_name, m_layers, t_name, t_layers, d, h in _PAPER_SIZES
    ]
