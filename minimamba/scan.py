"""The selective scan (Mamba §3.2, Algorithm 2) and the choice of how to compute it.

``selective_scan(..., backend=...)`` has the signature and semantics of :func:`selective_scan_ref`
(mamba_ssm's ``selective_scan_fn``), computed by "ref", "sequential", "hillis_steele", "blelloch",
"chunked" or "triton"; "auto" picks the fastest here. ``BACKENDS`` lists what is available,
``backend_report()`` says why.

The pieces live by job; this module re-exports their public names:

- :mod:`minimamba.prefix_scan`: the recurrence ``h_t = a_t ⊙ h_{t-1} + b_t`` on plain tensors, four ways
  (``scan_sequential``, ``scan_hillis_steele``, ``scan_blelloch``, ``scan_chunked``) and ``combine``.
- :mod:`minimamba.selective_scan_pytorch`: ``check_scan_args``, the reference ``selective_scan_ref`` and
  the PyTorch backends built on the prefix scans.
- ``minimamba.kernels.selective_scan``: the fused Triton kernel.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch

from minimamba.prefix_scan import (
    _blelloch_tf,
    _fold_h0,
    _hillis_steele_tf,
    _seq_tf,
    combine,
    scan_blelloch,
    scan_chunked,
    scan_hillis_steele,
    scan_sequential,
)
from minimamba.selective_scan_pytorch import (
    _selective_scan_chunked,
    _via_scan,
    check_scan_args,
    selective_scan_ref,
)

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


def _available_triton_fn() -> Callable:
    fn, why = _triton_fn()
    if fn is None:
        raise ValueError(f"backend 'triton' is not available here: {why}")
    return fn


def _compiled_triton_fn() -> Callable:
    """The Triton scan under ``torch.compile``, which needs Triton on a GPU itself: imported, without
    ``_triton_fn``'s questions to the environment (``importlib.util.find_spec``, which dynamo does not
    trace). "auto" is likewise Triton on a GPU and "chunked" on the CPU there, without asking."""
    from minimamba.kernels.selective_scan import selective_scan_fn  # noqa: PLC0415

    return selective_scan_fn


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
    recompute_states: bool = False,
):
    """The selective scan with the semantics of :func:`selective_scan_ref`, computed by ``backend``.

    ``backend="auto"`` picks the fastest available implementation for the device and size; see
    ``minimamba.scan.BACKENDS`` for what is available here (``python -m minimamba info`` says why).
    ``recompute_states``: the Triton scan keeps no states for the backward and recomputes them there
    (less memory, one forward more: see ``minimamba.kernels.selective_scan.selective_scan_fn``); the
    PyTorch backends keep what autograd keeps, whatever it says.
    """
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    check_scan_args(u, delta, A, B, C, D, z, delta_bias, h0)
    compiling = torch.compiler.is_compiling()  # then decided without asking the environment
    name = backend
    if backend == "auto":
        name = ("triton" if u.is_cuda else "chunked") if compiling else _auto_backend(u)
    if not isinstance(recompute_states, bool):
        raise TypeError(f"recompute_states must be True or False, got {recompute_states!r}")
    if name == "triton":
        fn = _compiled_triton_fn() if compiling else _available_triton_fn()
        if recompute_states:
            fn = functools.partial(fn, recompute_states=True)
    else:
        fns = _pytorch_backends()
        if name not in fns:
            known = ", ".join(["auto", *fns, "triton"])
            raise ValueError(f"backend must be one of {known}; got {backend!r}")
        fn = fns[name]
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, h0=h0)
