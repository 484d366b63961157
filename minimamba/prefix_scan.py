"""The first-order linear recurrence ``h_t = a_t ⊙ h_{t-1} + b_t`` on plain tensors, four ways (notebook 05).

``scan_sequential`` (L steps), ``scan_hillis_steele`` (log2 L steps, L log L work), ``scan_blelloch``
(2 log2 L steps, O(L) work, any L) and ``scan_chunked`` (a loop inside chunks run for all chunks at once,
plus a short loop across chunks). All take ``a, b: (..., L, ...)`` with time at ``dim`` (default -2, i.e.
``(..., L, N)`` like the ``(batch, d_inner, L, N)`` tensors exp(ΔA) and ΔBu), an optional initial state
``h0`` (a's shape without ``dim``), and return every state h, shaped like b. They rest on one associative
combine, (a1, b1) ∘ (a2, b2) = (a1 a2, a2 b1 + b2) ("first 1, then 2").

Internally every scan works "time-first": a, b: (L, *rest), so that a[t] is one contiguous block. The
time-first cores (``_seq_tf``, ``_hillis_steele_tf``, ``_blelloch_tf``, ``_ChunkedScan``) are what the
selective-scan backends of :mod:`minimamba.selective_scan_pytorch` run on exp(ΔA) and ΔBu.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["combine", "scan_blelloch", "scan_chunked", "scan_hillis_steele", "scan_sequential"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def combine(a1: torch.Tensor, b1: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor):
    """The associative operator of the scan: apply step 1, then step 2.

    h ↦ a2 (a1 h + b1) + b2 = (a1 a2) h + (a2 b1 + b2), so (a1, b1) ∘ (a2, b2) = (a1 a2, a2 b1 + b2).
    Associative (any bracketing of a sequence gives the same pair) but not commutative: order matters.
    """
    return a1 * a2, torch.addcmul(b2, a2, b1)


def _check_pair(a, b, h0, dim: int) -> int:
    """Validate the arguments of the scan_* functions; return ``dim`` as a non-negative index."""
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if a.dim() == 0 or not -a.dim() <= dim < a.dim():
        raise ValueError(f"dim must index a dimension of a (shape {_shape(a)}), got dim={dim}")
    if _shape(b) != _shape(a):
        raise ValueError(f"b must have the shape of a {_shape(a)}, got {_shape(b)}")
    if b.dtype != a.dtype:
        raise TypeError(f"b must have the dtype of a ({a.dtype}), got {b.dtype}")
    if b.device != a.device:
        raise ValueError(f"b is on {b.device}, expected the device of a ({a.device})")
    dim = dim % a.dim()
    if h0 is not None:
        if not isinstance(h0, torch.Tensor):
            raise TypeError(f"h0 must be a torch.Tensor or None, got {type(h0).__name__}")
        want = _shape(a)[:dim] + _shape(a)[dim + 1 :]
        if _shape(h0) != want:
            raise ValueError(f"h0 must have the shape of a without dim {dim}, {want}, got {_shape(h0)}")
        if h0.dtype != a.dtype:
            raise TypeError(f"h0 must have the dtype of a ({a.dtype}), got {h0.dtype}")
        if h0.device != a.device:
            raise ValueError(f"h0 is on {h0.device}, expected the device of a ({a.device})")
    return dim


def _fold_h0(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """Absorb the initial state into the first step: b_0 ← a_0 h0 + b_0 (then h0 = 0)."""
    if h0 is None:
        return b
    return torch.cat([torch.addcmul(b[:1], a[:1], h0[None]), b[1:]])


def _seq_tf(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    # unbind once: indexing a[t] in the loop would cost a full-size zero gradient per step in backward
    h, hs = h0, []
    for a_t, b_t in zip(a.unbind(0), b.unbind(0)):
        h = b_t if h is None else torch.addcmul(b_t, a_t, h)  # (*rest)
        hs.append(h)
    return torch.stack(hs)


def _hillis_steele_tf(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    b = _fold_h0(a, b, h0)
    L, offset = a.shape[0], 1
    while offset < L:
        # position t absorbs the prefix ending at t - offset: (a, b)[t - offset] ∘ (a, b)[t]
        b = torch.cat([b[:offset], torch.addcmul(b[offset:], a[offset:], b[:-offset])])
        if 2 * offset < L:  # the last round needs no products of a
            a = torch.cat([a[:offset], a[offset:] * a[:-offset]])
        offset *= 2
    return b


def _blelloch_tf(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Blelloch's work-efficient scan as a recursion: combine neighbours (up-sweep), scan the half-length
    sequence of pairs, then fill in the positions in between (down-sweep). Any L, no padding."""
    L = a.shape[0]
    if L == 1:
        return b
    m = L // 2
    a_even, a_odd = a[0 : 2 * m : 2], a[1 : 2 * m : 2]
    b_even, b_odd = b[0 : 2 * m : 2], b[1 : 2 * m : 2]
    # up-sweep: pair k is (a, b)[2k] ∘ (a, b)[2k+1]; its scan is h at the odd positions 1, 3, 5, ...
    h_odd = _blelloch_tf(a_even * a_odd, torch.addcmul(b_odd, a_odd, b_even))
    # down-sweep: h[2k] = a[2k] h[2k-1] + b[2k] for k >= 1, and h[0] = b[0]
    h_even = torch.cat([b[:1], torch.addcmul(b[2::2], a[2::2], h_odd[: (L - 1) // 2])])
    h = torch.stack([h_even[:m], h_odd], dim=1).reshape(2 * m, *a.shape[1:])  # interleave
    return torch.cat([h, h_even[m:]]) if L % 2 else h


def _chunked_core(
    T: int,
    a_at: Callable[[int], torch.Tensor],
    b_at: Callable[[int], torch.Tensor],
    decay: torch.Tensor,
    h0: torch.Tensor | None,
    emit: Callable[[torch.Tensor, int], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked scan, recorded by autograd step by step (for a, b made one step at a time).
    Step t of *every* chunk at once: ``a_at(t)``, ``b_at(t)``: (n_chunks, *rest).

    1. Each chunk's end state from a zero start (T steps, all chunks at once).
    2. The true state entering each chunk: a scan over the n_chunks (decay, end state) pairs from h0,
       where ``decay`` (n_chunks, *rest) is the product of a over each chunk.
    3. Each chunk again from its true start (T steps, all chunks at once), emitting ``emit(h, t)``.

    Only multiplications and additions: no division by a cumulative product, so a_t that underflow to 0
    are harmless. Returns (outputs: (T, n_chunks, ...), h after the last step: (*rest)).
    """
    h = b_at(0)
    for t in range(1, T):
        h = torch.addcmul(b_at(t), a_at(t), h)  # (n_chunks, *rest)
    ends = _seq_tf(decay, h, h0)  # the state after each chunk
    zero = torch.zeros_like(ends[:1]) if h0 is None else h0[None]
    h = torch.cat([zero, ends[:-1]])  # the state entering each chunk
    outs = []
    for t in range(T):
        h = torch.addcmul(b_at(t), a_at(t), h)
        outs.append(emit(h, t))
    return torch.stack(outs), ends[-1]


class _ChunkedScan(torch.autograd.Function):
    """The chunked scan of materialized a, b with a hand-written backward, so that autograd records one node
    instead of a few per step. a, b: (T, n_chunks, *rest), step t of every chunk; returns every state h
    (T, n_chunks, *rest) and the last one (*rest).

    Backward is the same recurrence run backwards in time, G_t = dL/dh_t + a_{t+1} G_{t+1}, computed
    chunk by chunk like the forward; then dL/db_t = G_t, dL/da_t = G_t h_{t-1}, dL/dh0 = a_0 G_0.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None):
        T, n_chunks = a.shape[:2]
        # 1. each chunk's end state from a zero start (in place: nothing here is recorded)
        h = b[0].clone()
        for t in range(1, T):
            h.mul_(a[t]).add_(b[t])  # (n_chunks, *rest)
        # 2. the state entering each chunk, from h0
        decay = a.prod(dim=0)  # ∏ a over each chunk: (n_chunks, *rest)
        starts = torch.empty_like(h)
        state = torch.zeros_like(h[0]) if h0 is None else h0.clone()
        for c in range(n_chunks):
            starts[c] = state
            state = torch.addcmul(h[c], decay[c], state)
        # 3. every chunk again from its true start
        hs = torch.empty(a.shape, dtype=a.dtype, device=a.device)
        prev = starts
        for t in range(T):
            prev = torch.addcmul(b[t], a[t], prev, out=hs[t])
        ctx.save_for_backward(a, hs, starts)
        ctx.has_h0 = h0 is not None
        return hs, state

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_hs: torch.Tensor | None, g_last: torch.Tensor | None):
        a, hs, starts = ctx.saved_tensors
        T, n_chunks = a.shape[:2]
        if g_hs is None:
            g_hs = torch.zeros_like(hs)
        # 1. G at each chunk's first step, counting only gradients from inside the chunk
        G = g_hs[T - 1].clone()
        for t in range(T - 2, -1, -1):
            G.mul_(a[t + 1]).add_(g_hs[t])  # (n_chunks, *rest)
        # 2. E_c, the gradient reaching the last step of chunk c from later chunks (and from h_last)
        tail = a[1:].prod(dim=0)  # ∏ a over steps 1..T-1 of each chunk (no division by a[0])
        E = torch.empty_like(G)
        e = torch.zeros_like(G[0]) if g_last is None else g_last.clone()
        for c in range(n_chunks - 1, -1, -1):
            E[c] = e
            e = a[0, c] * torch.addcmul(G[c], tail[c], e)  # a_0 · (full G at the chunk's first step)
        # 3. every chunk again, backwards, from its true incoming gradient: db = G
        db = torch.empty_like(hs)
        nxt = torch.add(g_hs[T - 1], E, out=db[T - 1])
        for t in range(T - 2, -1, -1):
            nxt = torch.addcmul(g_hs[t], a[t + 1], nxt, out=db[t])
        da = torch.empty_like(hs)
        torch.mul(db[1:], hs[:-1], out=da[1:])  # dL/da_t = G_t h_{t-1}
        torch.mul(db[0], starts, out=da[0])
        return da, db, (e if ctx.has_h0 else None)


def _pick_chunk(L: int) -> int:
    """About sqrt(L), a power of 2 in [8, 128]: T steps inside chunks plus L/T across them."""
    return int(min(128, max(8, 2 ** round(math.log2(max(L, 1)) / 2))))


def _chunked_tf(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, chunk: int) -> torch.Tensor:
    L, rest = a.shape[0], a.shape[1:]
    T = min(chunk, L)
    n_chunks = -(-L // T)
    pad = n_chunks * T - L
    if pad:  # a = 1, b = 0 leaves the state unchanged
        a = torch.cat([a, a.new_ones(pad, *rest)])
        b = torch.cat([b, b.new_zeros(pad, *rest)])
    # (L, *rest) -> (n_chunks, T, *rest) -> (T, n_chunks, *rest): a view, step t of every chunk
    a = a.reshape(n_chunks, T, *rest).transpose(0, 1)
    b = b.reshape(n_chunks, T, *rest).transpose(0, 1)
    hs, _ = _ChunkedScan.apply(a, b, h0)
    return hs.transpose(0, 1).reshape(n_chunks * T, *rest)[:L]


def _public_scan(fn: Callable, a, b, h0, dim: int, **kw) -> torch.Tensor:
    dim = _check_pair(a, b, h0, dim)
    if a.shape[dim] == 0:
        return b.clone()
    a_tf, b_tf = a.movedim(dim, 0), b.movedim(dim, 0)  # (L, *rest), views
    return fn(a_tf, b_tf, h0, **kw).movedim(0, dim)


def scan_sequential(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, dim: int = -2):
    """h_t = a_t ⊙ h_{t-1} + b_t, one step at a time (L sequential steps).

    Args:
        a, b: (..., L, ...) with time at ``dim`` (default -2: ``(..., L, N)``), same shape, dtype, device.
        h0: the state before step 0, a's shape without ``dim`` (zeros when None).
    Returns:
        h: shaped like b, every state h_0 … h_{L-1}. Differentiable with respect to a, b and h0.
    """
    return _public_scan(_seq_tf, a, b, h0, dim)


def scan_hillis_steele(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, dim: int = -2):
    """The same recurrence as :func:`scan_sequential` by Hillis & Steele (1986): ceil(log2 L) rounds, in
    round k every position combines with the one 2^k before it. Few steps but L log2 L work."""
    return _public_scan(lambda a, b, h0: _hillis_steele_tf(a, b, h0), a, b, h0, dim)


def scan_blelloch(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, dim: int = -2):
    """The same recurrence as :func:`scan_sequential` by Blelloch (1990): an up-sweep that combines
    neighbours, a recursive scan of half the length, a down-sweep that fills in the gaps. O(L) work,
    2 log2 L rounds; any L (odd lengths carry their last element down), no padding to a power of 2."""
    return _public_scan(lambda a, b, h0: _blelloch_tf(a, _fold_h0(a, b, h0)), a, b, h0, dim)


def scan_chunked(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, dim: int = -2, chunk: int | None = None
):
    """The same recurrence as :func:`scan_sequential`, chunk by chunk: split L into chunks of ``chunk``
    steps; run step t of *every* chunk at once (``chunk`` steps), link the chunks with a short scan over
    their end states (L / chunk steps), then re-run each chunk from its true start state. About
    2 sqrt(L) sequential steps of wide tensor operations, O(L) work, no division (safe when a underflows
    to 0). ``chunk`` defaults to about sqrt(L)."""
    if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1):
        raise ValueError(f"chunk must be a positive int or None, got {chunk!r}")
    dim = _check_pair(a, b, h0, dim)
    T = chunk if chunk is not None else _pick_chunk(a.shape[dim])
    return _public_scan(_chunked_tf, a, b, h0, dim, chunk=T)
