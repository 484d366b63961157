"""The selective scan (Mamba §3.2, Algorithm 2) in PyTorch: argument checks, the sequential reference, and
the backends built on the prefix scans of :mod:`minimamba.prefix_scan`.

For every batch b, channel d and state n, with Δ = softplus(delta + delta_bias) when ``delta_softplus``:

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t          (ZOH for A, Euler for B, as mamba_ssm's code does)
    y_t = C_t · h_t + D u_t,   then y_t ← y_t · silu(z_t)

Shapes follow mamba_ssm's ``selective_scan_fn`` / ``selective_scan_ref``:

    u, delta, z : (batch, d_inner, L)
    A           : (d_inner, N)               real; A < 0 for a stable (decaying) state
    B, C        : (batch, N, L) or (batch, groups, N, L); channel d uses group d // (d_inner // groups)
    D, delta_bias: (d_inner,)
    h0, h_last  : (batch, d_inner, N)

``selective_scan_ref`` is the sequential reference (a Python loop over L). ``_via_scan(core)`` turns a
time-first prefix scan into a backend with the same signature; ``_selective_scan_chunked`` is the chunked
backend with the contraction with C inside its second pass. Pick among them with
:func:`minimamba.scan.selective_scan`.

These backends materialize exp(ΔA) and ΔBu, two (batch, d_inner, L, N) tensors: that is inherent to an
unfused scan (the Triton kernel never writes them to memory). They store them time-first,
``(L, batch, d_inner, N)``, so that one time step is one contiguous block.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from minimamba.prefix_scan import _FLOAT_DTYPES, _chunked_core, _ChunkedScan, _pick_chunk, _shape

__all__ = ["check_scan_args", "selective_scan_ref"]


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


#: below this many elements in (batch, d_inner, L, N), the chunked scan materializes exp(ΔA) and ΔBu
_SMALL_SCAN = 1 << 21


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
