"""The selection mechanism (Mamba §3.2, Algorithm 2): an SSM whose Δ, B and C are computed from its input.

    A : (D, N)    ← Parameter                       one diagonal N-state SSM per channel, S4D-Real init
    B : (B, L, N) ← s_B(x)     = Linear_N(x)
    C : (B, L, N) ← s_C(x)     = Linear_N(x)
    Δ : (B, L, D) ← τ_Δ(Parameter + s_Δ(x)),   s_Δ(x) = Broadcast_D(Linear_1(x)),   τ_Δ = softplus
    A_bar, B_bar  ← discretize(Δ, A, B)          ZOH for A, Euler (ΔB) for B, as mamba_ssm's code
    y             ← SSM(A_bar, B_bar, C)(x)       time-varying: a scan, no convolution

The paper's s_Δ projects to one number and broadcasts it to the D channels; the code (and :class:`S6`)
generalizes it to a rank-``dt_rank`` projection, ``dt_proj(x_proj(x))``: with ``dt_rank = 1`` and every
``dt_proj`` weight equal to 1 it is exactly Broadcast_D(Linear_1(x)), and the ``dt_proj`` bias is the
"Parameter" of line 4. Layouts follow mamba_ssm: x, Δ, y: (batch, d_inner, L); B, C: (batch, N, L).

:func:`selective_matrix` writes the whole map from u to y as one (L, L) matrix per channel: for an LTI SSM
it is the Toeplitz matrix of the convolution kernel, for S6 its entries depend on both positions (t, s),
not only on t − s. That is why the convolution view, and the FFT, are gone.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from minimamba.block import inverse_softplus, sample_dt
from minimamba.scan import check_scan_args, selective_scan

__all__ = ["S6", "selective_matrix"]


def _check_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _fp32_or_64(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float64 else t.float()


class S6(nn.Module):
    """A selective SSM layer on ``d_inner`` channels with ``N`` states each (Algorithm 2).

    Parameters (mamba_ssm's names): ``x_proj`` (d_inner → dt_rank + 2N: the low-rank Δ input, s_B, s_C),
    ``dt_proj`` (dt_rank → d_inner, its bias is the Δ "Parameter"), ``A_log`` (d_inner, N) with
    A = −exp(A_log) = −(1, 2, …, N) at init (S4D-Real), and ``D`` (d_inner,) the skip connection.
    """

    def __init__(
        self, d_inner: int, N: int = 16, dt_rank: int = 1, dt_min: float = 1e-3, dt_max: float = 1e-1
    ):
        super().__init__()
        _check_int("d_inner", d_inner)
        _check_int("N", N)
        _check_int("dt_rank", dt_rank)
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_inner, self.N, self.dt_rank = d_inner, N, dt_rank
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * N, bias=False)  # x -> (Δ low-rank, B, C)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)  # dt_rank -> d_inner; bias = Δ's Parameter
        with torch.no_grad():
            std = dt_rank**-0.5
            self.dt_proj.weight.uniform_(-std, std)
            # softplus(bias) = Δ drawn log-uniform in [dt_min, dt_max] (§3.6; log-uniform as in mamba_ssm)
            self.dt_proj.bias.copy_(inverse_softplus(sample_dt(d_inner, dt_min, dt_max, floor=1e-4)))
        A = torch.arange(1, N + 1, dtype=torch.float32).repeat(d_inner, 1)  # (d_inner, N) = 1..N
        self.A_log = nn.Parameter(torch.log(A))  # A = −exp(A_log) stays negative while training
        self.D = nn.Parameter(torch.ones(d_inner))  # (d_inner,)

    def _check_x(self, x) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[1] != self.d_inner:
            raise ValueError(
                f"x must have shape (batch, d_inner, L) with d_inner = {self.d_inner}, got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"x must be floating point, got {x.dtype}")

    def ssm_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Δ, A, B, C for the input x: (batch, d_inner, L).

        Returns delta: (batch, d_inner, L), already through softplus (Δ > 0); A: (d_inner, N);
        B, C: (batch, N, L).
        """
        self._check_x(x)
        x_dbl = self.x_proj(x.transpose(1, 2))  # (batch, L, dt_rank + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.N, self.N], dim=-1)
        delta = nn.functional.softplus(self.dt_proj(dt)).transpose(1, 2)  # Δ: (batch, d_inner, L)
        A = -torch.exp(_fp32_or_64(self.A_log))  # (d_inner, N), exp in fp32 even for 16-bit parameters
        return delta, A, B.transpose(1, 2), C.transpose(1, 2)  # B, C: (batch, N, L)

    def forward(self, x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        """y = SSM(A_bar, B_bar, C)(x) + D x: (batch, d_inner, L), by ``minimamba.scan.selective_scan``."""
        delta, A, B, C = self.ssm_params(x)
        return selective_scan(x, delta, A, B, C, _fp32_or_64(self.D), backend=backend)


def selective_matrix(delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """The selective SSM as one lower-triangular matrix per channel: y = M u (without the D skip).

        M[t, s] = Σ_n C_{t,n} exp(A_n (Δ_{s+1} + … + Δ_t)) Δ_s B_{s,n}      for s <= t, 0 above

    Args:
        delta: Δ (batch, d_inner, L), already positive (after softplus). A: (d_inner, N).
        B, C: (batch, N, L).
    Returns:
        M: (batch, d_inner, L, L) in fp32 (fp64 for fp64 input). Memory is O(batch·d_inner·L²·N): small L.
    """
    batch, d_inner, L, N = check_scan_args(delta, delta, A, B, C)
    if B.dim() != 3 or C.dim() != 3:
        raise ValueError(f"B and C must have shape (batch, N, L), got {tuple(B.shape)} and {tuple(C.shape)}")
    ct = torch.float64 if delta.dtype == torch.float64 else torch.float32
    delta, A, B, C = delta.to(ct), A.to(ct), B.to(ct), C.to(ct)
    S = delta.cumsum(-1)  # (batch, d_inner, L): Δ_0 + … + Δ_t
    gap = S[..., :, None] - S[..., None, :]  # (batch, d_inner, t, s): Δ_{s+1} + … + Δ_t
    causal = torch.ones(L, L, dtype=torch.bool, device=delta.device).tril()  # s <= t
    gap = torch.where(causal, gap, math.inf)  # exp(A·inf) = 0 above the diagonal, no overflow
    # decay: (batch, d_inner, t, s, N) = exp(A_n · gap)
    decay = torch.exp(gap[..., None].clamp_min(0) * A[None, :, None, None, :])
    decay = torch.where(causal[..., None], decay, 0.0)
    # M[b, d, t, s] = Σ_n C[b, n, t] decay[b, d, t, s, n] Δ[b, d, s] B[b, n, s]
    return torch.einsum("bnt,bdtsn,bds,bns->bdts", C, decay, delta, B)
