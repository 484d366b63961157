"""Generation as a recurrence (Mamba §3.4, §4.5): a fixed-size cache per layer, one step per token.

A Transformer must keep every past key and value (its cache grows with the context); a Mamba layer keeps
two small tensors whatever the context length:

    conv_state: (batch, d_inner, d_conv)   the last d_conv inputs of the causal conv1d
    ssm_state:  (batch, d_inner, N)        the SSM state h_t (fp32)

``generate`` prefills the cache with one parallel ``forward`` over the prompt (the scan returns its last
state) and then calls ``step`` once per new token. It is duck-typed: any model with ``init_cache``,
``forward(input_ids, cache=...)`` and ``step(token_ids, cache)`` works (``MambaLM`` and the Transformer
baseline of ``minimamba.transformer``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["InferenceCache", "LayerCache", "generate", "sample_next"]


@dataclass
class LayerCache:
    """The recurrent state of one Mamba layer; updated in place by ``forward(..., cache)`` and ``step``."""

    conv_state: torch.Tensor  # (batch, d_inner, d_conv): the last d_conv conv inputs, oldest first
    ssm_state: torch.Tensor  # (batch, d_inner, N): h after the last token, fp32

    def nbytes(self) -> int:
        return self.conv_state.numel() * self.conv_state.element_size() + (
            self.ssm_state.numel() * self.ssm_state.element_size()
        )


@dataclass
class InferenceCache:
    """One :class:`LayerCache` per layer, plus how many tokens it has seen."""

    layers: list[LayerCache]
    seqlen: int = 0  # tokens consumed so far (prompt + generated)

    def nbytes(self) -> int:
        """Bytes held by the cache: constant in the context length."""
        return sum(layer.nbytes() for layer in self.layers)


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of ``logits`` (batch, vocab) -> (batch,) int64.

    temperature = 0 is greedy (argmax). Otherwise softmax(logits / temperature), restricted to the ``top_k``
    most likely tokens and/or the smallest set whose probability reaches ``top_p`` (nucleus sampling).
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError(
            f"logits must be a (batch, vocab) tensor, got {getattr(logits, 'shape', type(logits))}"
        )
    _check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature  # (batch, vocab)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (batch, 1) the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (batch, vocab)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens before it already reach top_p (the first token is always kept)
        drop = (probs.cumsum(dim=-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]  # (batch,)


def _check_sampling(temperature, top_k, top_p) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1
    ):
        raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p!r}")


@torch.no_grad()
def generate(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    eos_token_id: int | None = None,
) -> torch.Tensor:
    """Continue ``input_ids`` (batch, L) (or (L,)) by ``max_new_tokens`` tokens -> (batch, L + new).

    Prefill: one parallel ``model.forward(input_ids, cache=cache)`` fills the cache. Then one
    ``model.step`` per token. Sampling over the first ``model.config.vocab_size`` logits (the padded rows
    of the embedding are never sampled). Stops early when every row has produced ``eos_token_id``.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(
            f"input_ids must be an integer tensor, got {getattr(input_ids, 'dtype', type(input_ids))}"
        )
    squeeze = input_ids.dim() == 1
    ids = input_ids[None] if squeeze else input_ids
    if ids.dim() != 2 or ids.shape[1] < 1:
        raise ValueError(f"input_ids must have shape (batch, L) with L >= 1, got {tuple(input_ids.shape)}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    _check_sampling(temperature, top_k, top_p)
    vocab = model.config.vocab_size
    ids = ids.long()
    cache = model.init_cache(ids.shape[0])
    logits = model(ids, cache=cache)[:, -1, :vocab]  # (batch, vocab): prefill, fills the cache
    out = [ids]
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for i in range(max_new_tokens):
        nxt = sample_next(logits, temperature, top_k, top_p, generator)  # (batch,)
        if eos_token_id is not None:
            nxt = nxt.masked_fill(done, eos_token_id)
            done |= nxt == eos_token_id
        out.append(nxt[:, None])
        if (eos_token_id is not None and bool(done.all())) or i == max_new_tokens - 1:
            break
        logits = model.step(nxt, cache)[:, :vocab]  # (batch, vocab)
    result = torch.cat(out, dim=1)
    return result[0] if squeeze else result
