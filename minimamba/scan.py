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

``selective_scan_ref`` is the sequential reference (a Python loop over L). ``selective_scan(...,
backend=...)`` dispatches to a faster implementation with the same signature and semantics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "BACKENDS",  # noqa: F822  (computed lazily by __getattr__)
    "backend_report",
    "check_scan_args",
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


def _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, h0):
    """Shared pre- and post-processing of every PyTorch backend (upcast, Δ, groups)."""
    batch, d_inner, L, N = check_scan_args(u, delta, A, B, C, D, z, delta_bias, h0)
    ct = _compute_dtype(u)
    delta = delta.to(ct)
    if delta_bias is not None:
        delta = delta + delta_bias.to(ct)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
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
    for t in range(L):
        h = dA[:, :, t] * h + dBu[:, :, t]  # (batch, d_inner, N)
        if C.dim() == 3:
            ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
        else:
            ys.append(torch.einsum("bdn,bdn->bd", h, C[:, :, :, t]))
    y = torch.stack(ys, dim=2) if L > 0 else uc.new_zeros(batch, d_inner, 0)
    out = _finish(y, u, D, z, dtype_in)
    return (out, h) if return_last_state else out


# --------------------------------------------------------------------------------------------------------
# Dispatch. Each backend has the signature of selective_scan_ref.


def _triton_fn() -> tuple[Callable | None, str]:
    from minimamba import env

    status = env.triton_status()
    if not status.usable:
        return None, status.reason
    try:
        from minimamba.kernels.selective_scan import selective_scan_fn
    except ImportError as e:
        return None, f"the Triton kernel could not be imported ({e})"
    return selective_scan_fn, status.reason


def _pytorch_backends() -> dict[str, Callable]:
    return {"ref": selective_scan_ref}


def backend_report() -> dict[str, tuple[bool, str]]:
    """For every known backend: (available here, why / why not)."""
    report = {name: (True, "PyTorch, any device") for name in _pytorch_backends()}
    report["ref"] = (True, "sequential Python loop over L (the reference)")
    fn, why = _triton_fn()
    report["triton"] = (fn is not None, why)
    return report


def __getattr__(name: str):
    if name == "BACKENDS":
        return tuple(k for k, (ok, _) in backend_report().items() if ok)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _auto_backend(u: torch.Tensor) -> str:
    if u.is_cuda:
        fn, _ = _triton_fn()
        if fn is not None:
            return "triton"
    return "ref"


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
