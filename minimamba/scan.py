"""The selective scan (Mamba §3.2, Algorithm 2) and the ways to compute it.

For every batch b, channel d and state n, with Δ = softplus(delta + delta_bias) when ``delta_softplus``:

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t          (ZOH for A, Euler for B, as mamba_ssm's code does)
    y_t = C_t · h_t + D u_t,   then y_t ← y_t · silu(z_t)

Shapes follow mamba_ssm's ``selective_scan_fn`` / ``selective_scan_ref``:

    u, delta, z : (batch, d_inner, L)
    A           : (d_inner, N)               real; A < 0 for a stable (decaying) state
    B, C        : (batch, N, L) or (batch, groups, N, L); channel d uses group d // (d_inner // groups)
    D, delta_bias: (d_inner,)
    h0, h_last  : (batch, d_inner, N)

Three layers, from the bottom up:

1. The first-order linear recurrence ``h_t = a_t ⊙ h_{t-1} + b_t`` on plain tensors, four ways:
   ``scan_sequential`` (L steps), ``scan_hillis_steele`` (log2 L steps, L log L work),
   ``scan_blelloch`` (2 log2 L steps, O(L) work, any L) and ``scan_chunked`` (a loop inside chunks run
   for all chunks at once, plus a short loop across chunks). All take ``a, b: (..., L, ...)`` with time at
   ``dim`` (default -2, i.e. ``(..., L, N)`` like the ``(batch, d_inner, L, N)`` tensors exp(ΔA) and ΔBu),
   an optional initial state ``h0`` (a's shape without ``dim``), and return every state h, shaped like b.
   They rest on one associative combine, (a1, b1) ∘ (a2, b2) = (a1 a2, a2 b1 + b2) ("first 1, then 2").
2. ``selective_scan_ref``: the sequential reference (a Python loop over L).
3. ``selective_scan(..., backend=...)``: the same signature and semantics, computed by "ref",
   "sequential", "hillis_steele", "blelloch", "chunked" or "triton"; "auto" picks the fastest here.

The PyTorch backends materialize exp(ΔA) and ΔBu, two (batch, d_inner, L, N) tensors: that is inherent to
an unfused scan (the Triton kernel never writes them to memory). They store them time-first,
``(L, batch, d_inner, N)``, so that one time step is one contiguous block.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "BACKENDS",  # noqa: F822  (computed lazily by __getattr__)
    "backend_report",
    "check_scan_args",
    "combine",
    "scan_blelloch",
    "scan_chunked",
    "scan_hillis_steele",
    "scan_sequential",
    "selective_scan",
    "selective_scan_ref",
]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_tensor(name: str, t, ndim: tuple[int, ...] | int, device: torch.device | None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if t.dim() not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{name} must have {want} dimensions, got shape {_shape(t)} ({t.dim()} dimensions)")
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device}, expected the device of u ({device})")


def check_scan_args(u, delta, A, B, C, D=None, z=None, delta_bias=None, h0=None) -> tuple[int, int, int, int]:
    """Validate the selective-scan arguments; return ``(batch, d_inner, L, N)``.

    Raises ``TypeError`` (not a tensor, not floating point) or ``ValueError`` (rank, shape, device, groups)
    naming the argument, what was expected and what was given. Every backend calls this before computing.
    """
    _check_tensor("u", u, 3, None)
    dev = u.device
    batch, d_inner, L = _shape(u)
    _check_tensor("delta", delta, 3, dev)
    if _shape(delta) != _shape(u):
        raise ValueError(
            f"delta must have the shape of u (batch, d_inner, L) = {_shape(u)}, got {_shape(delta)}"
        )
    _check_tensor("A", A, 2, dev)
    if A.shape[0] != d_inner:
        raise ValueError(f"A must have shape (d_inner, N) with d_inner = {d_inner}, got {_shape(A)}")
    N = A.shape[1]
    if N < 1:
        raise ValueError(f"A must have at least one state (N >= 1), got shape {_shape(A)}")
    for name, t in (("B", B), ("C", C)):
        _check_tensor(name, t, (3, 4), dev)
        if t.dim() == 3 and _shape(t) != (batch, N, L):
            raise ValueError(f"{name} must have shape (batch, N, L) = {(batch, N, L)}, got {_shape(t)}")
        if t.dim() == 4:
            g = t.shape[1]
            if _shape(t) != (batch, g, N, L):
                raise ValueError(
                    f"{name} must have shape (batch, groups, N, L) = {(batch, 'groups', N, L)}, got {_shape(t)}"
                )
            if g < 1 or d_inner % g != 0:
                raise ValueError(f"{name} has {g} groups, which does not divide d_inner = {d_inner}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            _check_tensor(name, t, 1, dev)
            if _shape(t) != (d_inner,):
                raise ValueError(f"{name} must have shape (d_inner,) = {(d_inner,)}, got {_shape(t)}")
    if z is not None:
        _check_tensor("z", z, 3, dev)
        if _shape(z) != _shape(u):
            raise ValueError(f"z must have the shape of u (batch, d_inner, L) = {_shape(u)}, got {_shape(z)}")
    if h0 is not None:
        _check_tensor("h0", h0, 3, dev)
        if _shape(h0) != (batch, d_inner, N):
            raise ValueError(
                f"h0 must have shape (batch, d_inner, N) = {(batch, d_inner, N)}, got {_shape(h0)}"
            )
    return batch, d_inner, L, N


def _compute_dtype(u: torch.Tensor) -> torch.dtype:
    """fp32 for fp16/bf16/fp32 inputs, fp64 for fp64: the state never lives in a 16-bit type."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _expand_groups(X: torch.Tensor, d_inner: int) -> torch.Tensor:
    """(batch, N, L) stays; (batch, groups, N, L) -> (batch, d_inner, N, L): channel d uses group d // (d_inner/groups)."""
    if X.dim() == 3:
        return X
    return X.repeat_interleave(d_inner // X.shape[1], dim=1)


def _effective_delta(delta, delta_bias, delta_softplus: bool, ct: torch.dtype) -> torch.Tensor:
    """Δ = softplus(delta + delta_bias) (or without softplus) in the compute dtype: (batch, d_inner, L)."""
    delta = delta.to(ct)
    if delta_bias is not None:
        delta = delta + delta_bias.to(ct)[:, None]
    return F.softplus(delta) if delta_softplus else delta


def _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, h0):
    """Shared pre- and post-processing of every PyTorch backend (upcast, Δ, groups)."""
    batch, d_inner, L, N = check_scan_args(u, delta, A, B, C, D, z, delta_bias, h0)
    ct = _compute_dtype(u)
    delta = _effective_delta(delta, delta_bias, delta_softplus, ct)
    B = _expand_groups(B.to(ct), d_inner)
    C = _expand_groups(C.to(ct), d_inner)
    return ct, delta, A.to(ct), B, C


def _finish(y: torch.Tensor, u, D, z, dtype_in: torch.dtype) -> torch.Tensor:
    if D is not None:
        y = y + u.to(y.dtype) * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(dtype_in)


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    h0: torch.Tensor | None = None,
):
    """The sequential reference: one Python step per position, in fp32 (fp64 when given fp64).

    Args:
        u, delta, z: (batch, d_inner, L). A: (d_inner, N). B, C: (batch, N, L) or (batch, groups, N, L).
        D, delta_bias: (d_inner,). h0: (batch, d_inner, N) initial state (zeros when None).
    Returns:
        y: (batch, d_inner, L) in u's dtype; with ``return_last_state`` also h_last: (batch, d_inner, N) in
        the compute dtype (fp32, or fp64 for fp64 input).
    """
    dtype_in = u.dtype
    ct, delta, A, B, C = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, h0)
    batch, d_inner, L = u.shape
    uc = u.to(ct)
    # exp(Δ A): (batch, d_inner, L, N), the discretized A (ZOH)
    dA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    # Δ B u: (batch, d_inner, L, N), the discretized input (Euler for B)
    if B.dim() == 3:
        dBu = torch.einsum("bdl,bnl,bdl->bdln", delta, B, uc)
    else:
        dBu = torch.einsum("bdl,bdnl,bdl->bdln", delta, B, uc)
    h = uc.new_zeros(batch, d_inner, A.shape[1]) if h0 is None else h0.to(ct)
    ys = []
    # unbind once rather than index [t] per step: each indexing costs a full-size zero gradient in backward
    for dA_t, dBu_t, C_t in zip(dA.unbind(2), dBu.unbind(2), C.unbind(-1)):
        h = dA_t * h + dBu_t  # (batch, d_inner, N)
        if C.dim() == 3:
            ys.append(torch.einsum("bdn,bn->bd", h, C_t))
        else:
            ys.append(torch.einsum("bdn,bdn->bd", h, C_t))
    y = torch.stack(ys, dim=2) if L > 0 else uc.new_zeros(batch, d_inner, 0)
    out = _finish(y, u, D, z, dtype_in)
    return (out, h) if return_last_state else out


# --------------------------------------------------------------------------------------------------------
# The first-order linear recurrence h_t = a_t ⊙ h_{t-1} + b_t on plain tensors.
#
# Internally every scan works "time-first": a, b: (L, *rest), so that a[t] is one contiguous block.


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


#: below this many elements in (batch, d_inner, L, N), the chunked scan materializes exp(ΔA) and ΔBu
_SMALL_SCAN = 1 << 21


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


# --------------------------------------------------------------------------------------------------------
# The selective scan on top of those scans: discretize time-first, scan, contract with C.


def _discretize_tf(u, delta, A, B, delta_bias, delta_softplus):
    """exp(ΔA) and ΔBu time-first, (L, batch, d_inner, N), in the compute dtype; Δ is (L, batch, d_inner)."""
    batch, d_inner, L = u.shape
    ct = _compute_dtype(u)
    delta = _effective_delta(delta, delta_bias, delta_softplus, ct)
    delta_tf = delta.permute(2, 0, 1).contiguous()  # (L, batch, d_inner)
    du_tf = (delta * u.to(ct)).permute(2, 0, 1).contiguous()  # Δu: (L, batch, d_inner)
    dA = torch.exp(delta_tf[..., None] * A.to(ct))  # exp(ΔA): (L, batch, d_inner, N)
    B4 = B.to(ct) if B.dim() == 4 else B.to(ct)[:, None]  # (batch, groups, N, L)
    g = B4.shape[1]
    B_tf = B4.permute(3, 0, 1, 2)[:, :, :, None, :]  # (L, batch, groups, 1, N)
    # ΔBu: (L, batch, groups, d_inner/groups, N) -> (L, batch, d_inner, N)
    dBu = (du_tf.view(L, batch, g, d_inner // g)[..., None] * B_tf).view(dA.shape)
    return dA, dBu


def _contract_tf(h: torch.Tensor, C_tf: torch.Tensor) -> torch.Tensor:
    """y = C · h over N. h: (..., d_inner, N); C_tf: (..., groups, N) -> y: (..., d_inner)."""
    *lead, d_inner, N = h.shape
    g = C_tf.shape[-2]
    hg = h.reshape(*lead, g, d_inner // g, N)
    return torch.einsum("...gdn,...gn->...gd", hg, C_tf).reshape(*lead, d_inner)  # (..., d_inner)


def _C_tf(C: torch.Tensor, ct: torch.dtype) -> torch.Tensor:
    C4 = C.to(ct) if C.dim() == 4 else C.to(ct)[:, None]  # (batch, groups, N, L)
    return C4.permute(3, 0, 1, 2)  # (L, batch, groups, N)


def _via_scan(scan_tf: Callable):
    """A selective-scan backend from a time-first scan of (exp(ΔA), ΔBu)."""

    def backend(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                return_last_state=False, *, h0=None):  # fmt: skip
        check_scan_args(u, delta, A, B, C, D, z, delta_bias, h0)
        if u.shape[2] == 0:
            return selective_scan_ref(
                u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, h0=h0
            )
        ct = _compute_dtype(u)
        dA, dBu = _discretize_tf(u, delta, A, B, delta_bias, delta_softplus)
        h = scan_tf(dA, dBu, None if h0 is None else h0.to(ct))  # (L, batch, d_inner, N)
        y = _contract_tf(h, _C_tf(C, ct)).permute(1, 2, 0)  # (batch, d_inner, L)
        out = _finish(y.contiguous(), u, D, z, u.dtype)
        return (out, h[-1]) if return_last_state else out

    return backend


def _selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                            return_last_state=False, *, h0=None, chunk: int | None = None):  # fmt: skip
    """The chunked selective scan; ``chunk`` steps per chunk (default about sqrt(L), see _pick_chunk).

    Small problems (batch·d_inner·L·N <= _SMALL_SCAN) make exp(ΔA) and ΔBu whole and scan them with
    _ChunkedScan (one autograd node, a hand-written backward): per-operation overhead dominates there.
    Larger ones make exp(ΔA) and ΔBu one step (of every chunk) at a time and contract with C inside the
    second pass, so that outside autograd's saved values no (batch, d_inner, L, N) tensor exists, only
    (n_chunks, batch, d_inner, N) slabs. The threshold was chosen by timing both ways on CPU.
    Δ, u, B, C are padded to whole chunks with zeros (exp(0·A) = 1, ΔBu = 0: the state is unchanged)."""
    batch, d_inner, L, N = check_scan_args(u, delta, A, B, C, D, z, delta_bias, h0)
    if L == 0:
        return selective_scan_ref(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, h0=h0
        )
    ct = _compute_dtype(u)
    T = min(chunk or _pick_chunk(L), L)
    n_chunks = -(-L // T)
    pad = n_chunks * T - L

    def steps_first(x: torch.Tensor) -> torch.Tensor:
        """(..., L) -> (T, n_chunks, ...): pad L to n_chunks·T, then step t of every chunk."""
        x = F.pad(x, (0, pad)) if pad else x
        x = x.reshape(*x.shape[:-1], n_chunks, T)
        nd = x.dim()
        return x.permute(nd - 1, nd - 2, *range(nd - 2)).contiguous()

    delta = _effective_delta(delta, delta_bias, delta_softplus, ct)
    delta_s = steps_first(delta)[..., None]  # Δ: (T, n_chunks, batch, d_inner, 1)
    B4 = B.to(ct) if B.dim() == 4 else B.to(ct)[:, None]  # (batch, groups, N, L)
    C4 = C.to(ct) if C.dim() == 4 else C.to(ct)[:, None]
    gB = B4.shape[1]
    B_s = steps_first(B4)[:, :, :, :, None, :]  # (T, n_chunks, batch, groups, 1, N)
    C_s = steps_first(C4)  # (T, n_chunks, batch, groups, N)
    # Δu: (T, n_chunks, batch, groups, d_inner/groups, 1)
    du_s = steps_first(delta * u.to(ct)).view(T, n_chunks, batch, gB, d_inner // gB, 1)
    A = A.to(ct)
    h0 = None if h0 is None else h0.to(ct)
    shape = (T, n_chunks, batch, d_inner, N)
    if math.prod(shape) <= _SMALL_SCAN:
        # small: fewer, larger operations win (each costs ~10 µs of dispatch and autograd bookkeeping), so
        # make exp(ΔA) and ΔBu whole, scan, and contract with C once at the end
        dA = torch.exp(delta_s * A)  # exp(ΔA): (T, n_chunks, batch, d_inner, N)
        dBu = (du_s * B_s).view(shape)  # ΔBu: (T, n_chunks, batch, d_inner, N)
        hs, h_last = _ChunkedScan.apply(dA, dBu, h0)
        ys = _contract_tf(hs, C_s)  # (T, n_chunks, batch, d_inner)
    else:
        # one view per step, made once (indexing [t] in the loops would cost a full-size zero gradient
        # per step in backward)
        delta_t, du_t, B_t, C_t = (x.unbind(0) for x in (delta_s, du_s, B_s, C_s))

        def a_at(t: int) -> torch.Tensor:  # exp(Δ_t A): (n_chunks, batch, d_inner, N), made when needed
            return torch.exp(delta_t[t] * A)

        def b_at(t: int) -> torch.Tensor:  # Δ_t B_t u_t: (n_chunks, batch, d_inner, N)
            return (du_t[t] * B_t[t]).view(shape[1:])

        if torch.is_grad_enabled():
            # autograd keeps every exp(Δ_t A) anyway: make each step once, not once per pass (measured
            # 6-15% faster forward+backward); without gradients, remaking them keeps the slabs in cache
            a_at = [a_at(t) for t in range(T)].__getitem__
            b_at = [b_at(t) for t in range(T)].__getitem__
        # ∏ exp(Δ_t A) over a chunk = exp(A Σ Δ_t): (n_chunks, batch, d_inner, N)
        decay = torch.exp(delta_s.sum(0) * A)

        ys, h_last = _chunked_core(T, a_at, b_at, decay, h0, lambda h, t: _contract_tf(h, C_t[t]))
    # ys: (T, n_chunks, batch, d_inner) -> (batch, d_inner, L)
    y = ys.permute(2, 3, 1, 0).reshape(batch, d_inner, n_chunks * T)[:, :, :L]
    out = _finish(y.contiguous(), u, D, z, u.dtype)
    return (out, h_last) if return_last_state else out


# --------------------------------------------------------------------------------------------------------
# Dispatch. Each backend has the signature of selective_scan_ref.


@functools.cache
def _triton_fn() -> tuple[Callable | None, str]:
    """The Triton kernel and why it is usable here, or (None, why not). Decided once per process."""
    from minimamba import env

    status = env.triton_status()
    if not status.usable:
        return None, status.reason
    try:
        from minimamba.kernels.selective_scan import selective_scan_fn
    except ImportError as e:
        return None, f"the Triton kernel could not be imported ({e})"
    return selective_scan_fn, status.reason


_PYTORCH_WHY = {
    "ref": "sequential Python loop over L (the reference)",
    "sequential": "lean loop over L, time-first (L steps)",
    "hillis_steele": "Hillis-Steele parallel scan (log2 L steps, L log L work)",
    "blelloch": "Blelloch work-efficient parallel scan (2 log2 L steps, any L)",
    "chunked": "chunked scan, C contraction fused (about 2 sqrt(L) steps)",
}


def _pytorch_backends() -> dict[str, Callable]:
    return {
        "ref": selective_scan_ref,
        "sequential": _via_scan(_seq_tf),
        "hillis_steele": _via_scan(_hillis_steele_tf),
        "blelloch": _via_scan(lambda a, b, h0: _blelloch_tf(a, _fold_h0(a, b, h0))),
        "chunked": _selective_scan_chunked,
    }


def backend_report() -> dict[str, tuple[bool, str]]:
    """For every known backend: (available here, why / why not)."""
    report = {name: (True, f"PyTorch, any device: {why}") for name, why in _PYTORCH_WHY.items()}
    fn, why = _triton_fn()
    report["triton"] = (fn is not None, why)
    return report


def __getattr__(name: str):
    if name == "BACKENDS":
        return tuple(k for k, (ok, _) in backend_report().items() if ok)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _auto_backend(u: torch.Tensor) -> str:
    """Triton on a GPU when it is usable. Otherwise "chunked" on the CPU: `python -m minimamba.bench`
    measured it fastest, forward and forward+backward, at every benchmarked size from L = 256 to 16384
    (results/scan_cpu.json). On a GPU without Triton, "blelloch": 2 log2 L rounds of wide operations,
    where the chunked scan launches about 2 sqrt(L) rounds of kernels (not measured here)."""
    if u.is_cuda:
        fn, why = _triton_fn()
        if fn is not None:
            return "triton"
        _warn_gpu_fallback(why)
        return "blelloch"
    return "chunked"


@functools.cache
def _warn_gpu_fallback(why: str) -> None:
    # Once per process: a GPU run that silently uses a PyTorch scan is 10-100x slower than it should be.
    warnings.warn(
        f"selective_scan(backend='auto') on a GPU uses the PyTorch 'blelloch' scan: the Triton kernel is not "
        f"available ({why}). `python -m minimamba info` says more.",
        RuntimeWarning,
        stacklevel=4,
    )


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    h0: torch.Tensor | None = None,
    backend: str = "auto",
):
    """The selective scan with the semantics of :func:`selective_scan_ref`, computed by ``backend``.

    ``backend="auto"`` picks the fastest available implementation for the device and size; see
    ``minimamba.scan.BACKENDS`` for what is available here (``python -m minimamba info`` says why).
    """
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    check_scan_args(u, delta, A, B, C, D, z, delta_bias, h0)
    name = _auto_backend(u) if backend == "auto" else backend
    if name == "triton":
        fn, why = _triton_fn()
        if fn is None:
            raise ValueError(f"backend 'triton' is not available here: {why}")
    else:
        fns = _pytorch_backends()
        if name not in fns:
            known = ", ".join(["auto", *fns, "triton"])
            raise ValueError(f"backend must be one of {known}; got {backend!r}")
        fn = fns[name]
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, h0=h0)
