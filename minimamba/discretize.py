"""Discretization: from the continuous SSM h' = A h + B u to the recurrence h_k = A_bar h_{k-1} + B_bar u_k.

Mamba §2, Eq. 2a and Eq. 4 (zero-order hold):

    A_bar = exp(ΔA)        B_bar = (ΔA)^{-1} (exp(ΔA) - I) · ΔB

Each rule takes ``(A, B, delta)`` and returns ``(A_bar, B_bar)`` in the layout of A:

    A : (N, N) full, or (N,) the diagonal of a diagonal matrix (real or complex)
    B : (N,)
    delta : the step Δ > 0, a Python number or a 0-d tensor

| rule                 | A_bar                        | B_bar                        | error at a fixed time  |
|----------------------|------------------------------|------------------------------|------------------------|
| ``euler``            | I + ΔA                       | ΔB                           | O(Δ)                   |
| ``bilinear``         | (I - ΔA/2)^{-1} (I + ΔA/2)   | (I - ΔA/2)^{-1} ΔB           | O(Δ²)                  |
| ``zoh``              | exp(ΔA)                      | (ΔA)^{-1} (exp(ΔA) - I) ΔB   | exact for held input   |
| ``mamba_discretize`` | exp(ΔA)                      | ΔB                           | O(Δ), from B_bar       |

``mamba_discretize`` is what mamba_ssm's code does (``selective_scan_ref``: ``deltaA = exp(delta * A)``,
``deltaB_u = delta * B * u``): ZOH for A, Euler for B. For a diagonal A its B_bar differs from ZOH's by the
factor Δa / (exp(Δa) - 1) = 1 - Δa/2 + O(Δ²), a relative difference of about Δ|a|/2 for small Δ.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch

from minimamba.ssm import check_ssm, expm

__all__ = ["METHODS", "bilinear", "discretize", "euler", "mamba_discretize", "zoh"]


def _prepare(A, B, delta) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate; return A, B in their common dtype and Δ as a 0-d tensor of the matching real dtype."""
    check_ssm(A, B)
    if isinstance(delta, torch.Tensor):
        if delta.dim() != 0:
            raise ValueError(
                f"delta must be a positive number or a 0-d tensor, got shape {tuple(delta.shape)}"
            )
        if delta.is_complex() or not delta.is_floating_point():
            raise TypeError(f"delta must be a real floating-point tensor, got {delta.dtype}")
        d = delta.item()
    elif isinstance(delta, bool) or not isinstance(delta, numbers.Real):
        raise TypeError(f"delta must be a positive number or a 0-d tensor, got {type(delta).__name__}")
    else:
        d = float(delta)
    if not (d > 0 and d < float("inf")):
        raise ValueError(f"delta must be positive and finite, got {d}")
    dtype = torch.promote_types(A.dtype, B.dtype)
    A, B = A.to(dtype), B.to(dtype)
    real = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)
    delta = (
        delta.to(device=A.device, dtype=real)
        if isinstance(delta, torch.Tensor)
        else torch.tensor(d, dtype=real)
    )
    return A, B, delta.to(A.device)


def _eye_like(A: torch.Tensor) -> torch.Tensor:
    return torch.eye(A.shape[0], dtype=A.dtype, device=A.device)


def euler(A: torch.Tensor, B: torch.Tensor, delta) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward Euler: h_k = h_{k-1} + Δ (A h_{k-1} + B u_k), so A_bar = I + ΔA, B_bar = ΔB.

    Stable only when every |1 + Δλ| < 1: for a real eigenvalue λ < 0 that means Δ|λ| < 2.
    """
    A, B, delta = _prepare(A, B, delta)
    A_bar = 1 + delta * A if A.dim() == 1 else _eye_like(A) + delta * A
    return A_bar, delta * B


def bilinear(A: torch.Tensor, B: torch.Tensor, delta) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear (Tustin, the trapezoid rule; S4's choice): A_bar = (I - ΔA/2)^{-1} (I + ΔA/2), B_bar =
    (I - ΔA/2)^{-1} ΔB. It maps the left half-plane into the unit disc, so it is stable for every Δ > 0."""
    A, B, delta = _prepare(A, B, delta)
    if A.dim() == 1:
        inv = 1 / (1 - delta / 2 * A)  # (N,)
        return inv * (1 + delta / 2 * A), inv * delta * B
    eye = _eye_like(A)
    lhs = eye - delta / 2 * A  # (N, N)
    return torch.linalg.solve(lhs, eye + delta / 2 * A), torch.linalg.solve(lhs, delta * B)


def zoh(A: torch.Tensor, B: torch.Tensor, delta) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold (Mamba Eq. 4): A_bar = exp(ΔA), B_bar = (ΔA)^{-1} (exp(ΔA) - I) ΔB.

    Exact when the input is constant over each step. Diagonal A: B_bar_n = (exp(Δa_n) - 1) / a_n · B_n,
    computed with ``expm1`` so that small Δa keeps its digits, and equal to its limit Δ B_n where a_n = 0.
    A full A must be invertible.
    """
    A, B, delta = _prepare(A, B, delta)
    if A.dim() == 1:
        dA = delta * A  # (N,)
        safe = torch.where(A == 0, torch.ones_like(A), A)
        phi = torch.where(A == 0, delta.to(A.dtype).expand_as(A), torch.expm1(dA) / safe)  # (N,)
        return torch.exp(dA), phi * B
    A_bar = expm(delta * A)  # (N, N)
    try:
        B_bar = torch.linalg.solve(A, (A_bar - _eye_like(A)) @ B)  # (ΔA)^{-1} ... ΔB: the Δs cancel
    except RuntimeError as e:  # torch.linalg.LinAlgError
        raise ValueError("A must be invertible for zoh with a full (N, N) matrix (it is singular)") from e
    return A_bar, B_bar


def mamba_discretize(A: torch.Tensor, B: torch.Tensor, delta) -> tuple[torch.Tensor, torch.Tensor]:
    """What mamba_ssm's code does: ZOH for A (A_bar = exp(ΔA)), Euler for B (B_bar = ΔB).

    Albert Gu (state-spaces/mamba#114): a mix of ZOH for A and Euler for B, simpler, and it does not change
    empirical performance. B_bar is O(Δ²) away from ZOH's, a relative difference ≈ Δ|a|/2 for small Δ.
    """
    A, B, delta = _prepare(A, B, delta)
    A_bar = torch.exp(delta * A) if A.dim() == 1 else expm(delta * A)
    return A_bar, delta * B


#: name -> rule, for ``discretize(..., method=name)``
METHODS: dict[str, Callable] = {"euler": euler, "bilinear": bilinear, "zoh": zoh, "mamba": mamba_discretize}


def discretize(
    A: torch.Tensor, B: torch.Tensor, delta, method: str = "zoh"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discretize with the rule named ``method``: "euler", "bilinear", "zoh" (default) or "mamba"."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    return METHODS[method](A, B, delta)
