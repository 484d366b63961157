"""Generation as a recurrence (Mamba §3.4, §4.5): a fixed-size cache per layer, one step per token.

A Transformer must keep every past key and value (its cache grows with the context); a Mamba layer keeps
two small tensors whatever the context length:

    conv_state: (batch, d_inner, d_conv)   the last d_conv inputs of the causal conv1d
    ssm_state:  (batch, d_inner, N)        the SSM state h_t (fp32)

``generate`` prefills the cache with one parallel ``forward`` over the prompt (the scan returns its last
state) and then calls ``step`` once per new token. It is duck-typed: any model with ``init_cache``,
``forward(input_ids, cache=..., num_last_tokens=...)`` and ``step(token_ids, cache)`` works (``MambaLM`` and the Transformer
baseline of ``minimamba.transformer``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["GraphedStep", "InferenceCache", "LayerCache", "generate", "init_cache", "sample_next"]


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


class GraphedStep:
    """``model.step`` for one cache, captured once in a CUDA graph and replayed for every token.

    A decoding step launches a few small kernels per layer; at batch 1 each finishes in microseconds, so
    the host's launch time, not the GPU, sets the pace. A CUDA graph records the launches once and replays
    them in one go (mamba_ssm's generation does the same). This works because ``step`` is shape-static:
    it reads the token from the same input tensor and updates the same cache tensors in place every time.
    A model whose step depends on host state (a growing Python-side position) cannot be captured; the
    Transformer++ of ``minimamba.transformer`` keeps its position in a device tensor for this reason.

    ``graphed = GraphedStep(model, cache)`` then ``logits = graphed(token_ids)`` (batch,) -> (batch, vocab);
    the cache advances as with ``model.step``.
    """

    def __init__(self, model, cache, warmup: int = 2):
        if not torch.cuda.is_available():
            raise RuntimeError("GraphedStep needs a CUDA GPU (CUDA graphs); use model.step on the CPU")
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"the model must be on a CUDA device to capture its step, got {device}")
        self.model, self.cache = model, cache
        self.batch = _cache_batch(cache)
        self.token = torch.zeros(self.batch, dtype=torch.long, device=device)  # the graph's input
        saved = _snapshot(cache)  # warm-up and capture run the step: put the cache back afterwards
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm up on a side stream (lazy init, autotuning) before capture
            for _ in range(warmup):
                model.step(self.token, cache)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = model.step(self.token, cache)  # (batch, vocab): the graph's output
        _restore(cache, saved)

    def __call__(self, token_ids: torch.Tensor) -> torch.Tensor:
        if token_ids.shape != (self.batch,):
            raise ValueError(f"token_ids must have shape ({self.batch},), got {tuple(token_ids.shape)}")
        max_len = getattr(self.cache, "max_len", None)  # a KV cache: the graph would write past its end
        if max_len is not None and self.cache.seqlen >= max_len:
            raise ValueError(f"KV cache full: it holds {self.cache.seqlen} of max_len={max_len} positions")
        self.token.copy_(token_ids)
        self.graph.replay()
        self.cache.seqlen += 1  # host-side bookkeeping the graph does not replay
        return self.logits


def _cache_batch(cache) -> int:
    return next(t for t in _cache_tensors(cache)).shape[0]


def _cache_tensors(cache) -> list[torch.Tensor]:
    """Every tensor a cache holds (Mamba's conv and SSM states, a Transformer's keys, values, position)."""
    if hasattr(cache, "tensors"):
        return list(cache.tensors())
    return [t for layer in cache.layers for t in (layer.conv_state, layer.ssm_state)]


def _snapshot(cache) -> tuple[list[torch.Tensor], int]:
    return [t.clone() for t in _cache_tensors(cache)], cache.seqlen


def _restore(cache, saved) -> None:
    tensors, seqlen = saved
    for t, s in zip(_cache_tensors(cache), tensors):
        t.copy_(s)
    cache.seqlen = seqlen


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
    cuda_graph: bool = False,
) -> torch.Tensor:
    """Continue ``input_ids`` (batch, L) (or (L,)) by ``max_new_tokens`` tokens -> (batch, L + new).

    Prefill: one parallel ``model.forward(input_ids, cache=cache)`` fills the cache. Then one
    ``model.step`` per token, replayed from a CUDA graph with ``cuda_graph=True`` (:class:`GraphedStep`; a
    GPU only). Sampling over the first ``model.config.vocab_size`` logits (the padded rows of the embedding
    are never sampled). Stops early when every row has produced ``eos_token_id``.
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
    if not isinstance(cuda_graph, bool):
        raise TypeError(f"cuda_graph must be a bool, got {cuda_graph!r}")
    vocab = model.config.vocab_size
    ids = ids.long()
    # positions the cache must hold: the prompt and every generated token but the last (never fed back)
    total_len = ids.shape[1] + max(max_new_tokens - 1, 0)
    graphed = None
    if cuda_graph and max_new_tokens > 1:
        graphed = _graphed_step(model, ids.shape[0], total_len)
        cache = graphed.cache
    else:
        cache = init_cache(model, ids.shape[0], total_len)
    logits = model(ids, cache=cache, num_last_tokens=1)[
        :, -1, :vocab
    ]  # (batch, vocab): prefill, fills the cache
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
        logits = (graphed(nxt) if graphed else model.step(nxt, cache))[:, :vocab]  # (batch, vocab)
    result = torch.cat(out, dim=1)
    return result[0] if squeeze else result


def _graphed_step(model, batch: int, total_len: int) -> GraphedStep:
    """The model's captured step for (batch, cache length), with its cache emptied for a new generation.

    Capturing costs a few warm-up steps and the recording: the last capture is kept on the model and
    reused while the batch, the length, the device and the dtype stay the same (as mamba_ssm's
    generation keeps its graph); anything else captures anew.
    """
    weight = next(model.parameters())
    key = (batch, total_len, weight.device, weight.dtype)
    held = model.__dict__.get("_minimamba_graphed_step")
    if held is None or held[0] != key:
        model.__dict__["_minimamba_graphed_step"] = None  # let the old graph and cache go first
        graphed = GraphedStep(model, init_cache(model, batch, total_len))
        model.__dict__["_minimamba_graphed_step"] = (key, graphed)
    graphed = model.__dict__["_minimamba_graphed_step"][1]
    for t in _cache_tensors(graphed.cache):  # a new generation starts from an empty cache
        t.zero_()
    graphed.cache.seqlen = 0
    return graphed


def init_cache(model, batch: int, total_len: int):
    """A model's empty cache; a Transformer's is preallocated for the whole generation (prompt + new)."""
    import inspect  # noqa: PLC0415

    if "max_len" in inspect.signature(model.init_cache).parameters:
        if total_len > model.config.max_len:
            raise ValueError(
                f"the prompt and max_new_tokens need {total_len} positions, more than the model's "
                f"max_len={model.config.max_len}"
            )
        return model.init_cache(batch, max_len=total_len)
    return model.init_cache(batch)
