"""An LSTM language model (Hochreiter & Schmidhuber 1997), the recurrent baseline of the
language-modelling and synthetic-task comparisons.

Mamba is a recurrence too: its state h_t is a fixed-size summary of the past, updated once per token. The
LSTM is the classic recurrence with a *nonlinear*, input-dependent update, which is why it cannot be
computed with a parallel scan (Mamba §2, §3.3: the selective SSM keeps the recurrence linear in h so that
it can). Per layer, with x_t the input and (h_{t-1}, c_{t-1}) the state (PyTorch's ``nn.LSTM``):

    i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate
    f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)   candidate
    o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t,   h_t = o_t ⊙ tanh(c_t)

The model: embedding (d_embed) → ``nn.LSTM`` with n_layer layers of width d_model → linear head. The head
reuses the embedding matrix when d_embed == d_model (tied, Press & Wolf 2017), else it is its own matrix.
No dropout (the comparison trains every family without it). It has :class:`minimamba.model.MambaLM`'s
generation interface (``init_cache``, ``forward(ids, cache=..., num_last_tokens=...)``, ``step``,
``config.vocab_size``), so :func:`minimamba.generate.generate` drives it; the cache is (h, c) per layer,
constant in the context length like Mamba's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from minimamba.config import pad_vocab

__all__ = ["LSTMCache", "LSTMConfig", "LSTMLM", "lstm_param_count"]


def _check_pos_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"LSTMConfig.{name} must be an int >= 1, got {value!r}")


@dataclass
class LSTMConfig:
    """Sizes of :class:`LSTMLM`. ``d_embed=None`` means d_model (and then the head is tied)."""

    vocab_size: int  # tokens the tokenizer can produce; padded for the embedding as MambaConfig does
    d_model: int = 256  # hidden size of every LSTM layer (h_t, c_t are d_model wide)
    n_layer: int = 2  # stacked LSTM layers
    d_embed: int | None = None  # embedding width; None -> d_model
    pad_vocab_size_multiple: int = 8  # embedding rows rounded up to a multiple of this

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layer", "pad_vocab_size_multiple"):
            _check_pos_int(name, getattr(self, name))
        if self.d_embed is None:
            self.d_embed = self.d_model
        _check_pos_int("d_embed", self.d_embed)

    @property
    def tie_embeddings(self) -> bool:
        """The head reuses the embedding when its input (h_t, d_model wide) has the embedding's width."""
        return self.d_embed == self.d_model

    @property
    def padded_vocab_size(self) -> int:
        return pad_vocab(self.vocab_size, self.pad_vocab_size_multiple)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LSTMCache:
    """The state of every layer: h, c (n_layer, batch, d_model), updated in place; tokens seen."""

    h: torch.Tensor
    c: torch.Tensor
    seqlen: int = 0

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the cache holds (what a CUDA graph of ``step`` reads and writes)."""
        return [self.h, self.c]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())


class LSTMLM(nn.Module):
    """input_ids (batch, L) -> logits (batch, L, padded_vocab_size), through an n_layer ``nn.LSTM``."""

    def __init__(self, config: LSTMConfig):
        super().__init__()
        if not isinstance(config, LSTMConfig):
            raise TypeError(f"config must be an LSTMConfig, got {type(config).__name__}")
        self.config = config
        self.embedding = nn.Embedding(config.padded_vocab_size, config.d_embed)
        self.lstm = nn.LSTM(config.d_embed, config.d_model, num_layers=config.n_layer, batch_first=True)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        with torch.no_grad():  # ±0.1 as in Zaremba et al. 2014 / Press & Wolf 2017; LSTM: PyTorch's U(±1/√H)
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if config.tie_embeddings:
            self.lm_head.weight = self.embedding.weight

    def _check_ids(self, input_ids, ndim: int, shape: str) -> None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.int64, torch.int32):
            got = getattr(input_ids, "dtype", type(input_ids).__name__)
            raise TypeError(f"input_ids must be an int64 tensor of shape {shape}, got {got}")
        if input_ids.dim() != ndim or input_ids.shape[-1] < 1:
            raise ValueError(f"input_ids must have shape {shape}, got {tuple(input_ids.shape)}")

    def init_cache(self, batch_size: int, dtype: torch.dtype | None = None, device=None) -> LSTMCache:
        """Zero (h, c) for ``batch_size`` sequences, in the parameters' dtype and device unless told."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        w = self.embedding.weight
        shape = (self.config.n_layer, batch_size, self.config.d_model)
        zeros = lambda: torch.zeros(shape, dtype=dtype or w.dtype, device=device or w.device)
        return LSTMCache(zeros(), zeros())

    def forward(
        self, input_ids: torch.Tensor, cache: LSTMCache | None = None, num_last_tokens: int = 0
    ) -> torch.Tensor:
        """input_ids (batch, L) -> logits (batch, L, padded_vocab_size), or of the last ``num_last_tokens``
        positions only. With ``cache``, starts from its (h, c) and leaves the state after the last token."""
        self._check_ids(input_ids, 2, "(batch, L)")
        if isinstance(num_last_tokens, bool) or not isinstance(num_last_tokens, int) or num_last_tokens < 0:
            raise ValueError(
                f"num_last_tokens must be an int >= 0 (0 = every position), got {num_last_tokens!r}"
            )
        x = self.embedding(input_ids)  # (batch, L, d_embed)
        if cache is None:
            out, _ = self._lstm(x, None)  # (batch, L, d_model)
        else:
            out = self._run_cached(x, cache)
            cache.seqlen += input_ids.shape[1]
        if num_last_tokens:
            out = out[:, -num_last_tokens:]
        return self.lm_head(out)  # (batch, L, padded_vocab)

    #: The most time steps one ``nn.LSTM`` call takes: cuDNN's LSTM fails with CUDNN_STATUS_NOT_SUPPORTED
    #: from 65,536 steps (pytorch/pytorch#133751); longer sequences go through in pieces, the state carried.
    MAX_STEPS_PER_CALL = 65_535

    def _lstm(self, x: torch.Tensor, state):
        """``self.lstm(x, state)`` for any length: pieces of at most ``MAX_STEPS_PER_CALL`` steps, each
        starting from the last one's (h, c). The recurrence is sequential anyway, so the pieces cost
        nothing but a few launches."""
        if x.shape[1] <= self.MAX_STEPS_PER_CALL:
            return self.lstm(x, state)
        outs = []
        for start in range(0, x.shape[1], self.MAX_STEPS_PER_CALL):
            out, state = self.lstm(x[:, start : start + self.MAX_STEPS_PER_CALL], state)
            outs.append(out)
        return torch.cat(outs, dim=1), state

    def _run_cached(self, x: torch.Tensor, cache: LSTMCache) -> torch.Tensor:
        if not isinstance(cache, LSTMCache):
            raise TypeError(f"cache must be an LSTMCache (from init_cache), got {type(cache).__name__}")
        if cache.h.shape[1] != x.shape[0]:
            raise ValueError(
                f"input_ids has batch {x.shape[0]} but the cache was made for {cache.h.shape[1]}"
            )
        out, (h, c) = self._lstm(x, (cache.h.to(x.dtype), cache.c.to(x.dtype)))  # (batch, L, d_model)
        cache.h.copy_(h)  # in place: the cache's tensors never move (a CUDA graph can replay a step)
        cache.c.copy_(c)
        return out

    def step(self, input_ids: torch.Tensor, cache: LSTMCache) -> torch.Tensor:
        """One token per sequence: input_ids (batch,) -> logits (batch, padded_vocab_size); updates cache."""
        self._check_ids(input_ids, 1, "(batch,)")
        out = self._run_cached(self.embedding(input_ids[:, None]), cache)  # (batch, 1, d_model)
        cache.seqlen += 1
        return self.lm_head(out[:, 0])  # (batch, padded_vocab)

    def num_params(self) -> int:
        """Number of distinct parameters (the tied LM head counted once)."""
        return sum(p.numel() for p in self.parameters())


def lstm_param_count(config: LSTMConfig) -> int:
    """The parameter count of ``LSTMLM(config)`` in closed form.

    With V the padded vocabulary, E = d_embed, H = d_model: embedding V·E; layer 1 4H·(E + H) weights and
    two biases 4H + 4H (PyTorch keeps b_ih and b_hh apart); each further layer 4H·(H + H) + 8H; the head
    V·H unless tied.
    """
    if not isinstance(config, LSTMConfig):
        raise TypeError(f"config must be an LSTMConfig, got {type(config).__name__}")
    v, e, h, n = config.padded_vocab_size, config.d_embed, config.d_model, config.n_layer
    total = v * e + 4 * h * (e + h) + 8 * h + (n - 1) * (4 * h * 2 * h + 8 * h)
    return total if config.tie_embeddings else total + v * h
