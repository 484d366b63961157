"""minimamba.selection against float64 loops written here: the S6 layer (Algorithm 2) step by step, and the
selective matrix M (y = M u) against the recurrence; its LTI special case against the Toeplitz kernel."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from minimamba.selection import S6, selective_matrix
from minimamba.testing import check_close


def s6_loop(layer: S6, x: torch.Tensor) -> torch.Tensor:
    """Algorithm 2 in float64, one position at a time, from the layer's weights."""
    W_x = layer.x_proj.weight.detach().double()  # (R + 2N, d_inner)
    W_dt, b_dt = (
        layer.dt_proj.weight.detach().double(),
        layer.dt_proj.bias.detach().double(),
    )  # (d_inner, R), (d_inner,)
    A = -torch.exp(layer.A_log.detach().double())  # (d_inner, N)
    D = layer.D.detach().double()
    R, N = layer.dt_rank, layer.N
    x = x.double()
    batch, d_inner, L = x.shape
    y = torch.zeros(batch, d_inner, L, dtype=torch.float64)
    for b in range(batch):
        h = torch.zeros(d_inner, N, dtype=torch.float64)
        for t in range(L):
            xt = x[b, :, t]  # (d_inner,)
            proj = W_x @ xt
            dt_in, Bt, Ct = proj[:R], proj[R : R + N], proj[R + N :]
            delta = F.softplus(W_dt @ dt_in + b_dt)  # (d_inner,)
            for d in range(d_inner):
                for n in range(N):
                    h[d, n] = math.exp(delta[d] * A[d, n]) * h[d, n] + delta[d] * Bt[n] * xt[d]
                y[b, d, t] = (h[d] * Ct).sum() + D[d] * xt[d]
    return y


@pytest.mark.parametrize("d_inner,N,R,L", [(3, 1, 1, 7), (4, 4, 2, 1), (5, 3, 1, 9)])
def test_s6_matches_loop(d_inner, N, R, L):
    layer = S6(d_inner, N, dt_rank=R)
    x = torch.randn(2, d_inner, L)
    check_close("S6 fp32 vs float64 loop", s6_loop(layer, x), layer(x, backend="ref"), rtol=1e-4, atol=1e-5)
    check_close("S6 chunked backend", s6_loop(layer, x), layer(x, backend="chunked"), rtol=1e-4, atol=1e-5)
    layer64 = layer.double()
    check_close(
        "S6 fp64 vs loop", s6_loop(layer64, x), layer64(x.double(), backend="ref"), rtol=1e-10, atol=1e-12
    )


def test_s6_shapes_and_init():
    layer = S6(6, N=4, dt_rank=2, dt_min=1e-3, dt_max=1e-1)
    delta, A, B, C = layer.ssm_params(torch.randn(3, 6, 5))
    assert delta.shape == (3, 6, 5) and A.shape == (6, 4) and B.shape == (3, 4, 5) and C.shape == (3, 4, 5)
    assert (delta > 0).all()
    check_close("A = -(1..N)", -torch.arange(1.0, 5.0).repeat(6, 1), A)
    dt0 = F.softplus(layer.dt_proj.bias)
    assert ((dt0 >= 1e-3 * (1 - 1e-5)) & (dt0 <= 1e-1 * (1 + 1e-5))).all()


def test_s6_gradients_flow():
    layer = S6(3, N=2).double()
    x = torch.randn(1, 3, 7, dtype=torch.float64, requires_grad=True)
    layer(x, backend="ref").square().sum().backward()
    for name, p in [("x", x), *layer.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_s6_bad_input():
    with pytest.raises(TypeError, match="d_inner"):
        S6(2.5)
    with pytest.raises(ValueError, match="N must be >= 1"):
        S6(4, N=0)
    with pytest.raises(ValueError, match="dt_min"):
        S6(4, dt_min=0.1, dt_max=0.01)
    layer = S6(4)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, d_inner, L\) with d_inner = 4"):
        layer(torch.randn(2, 3, 5))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        layer([1.0, 2.0])


def recurrence_loop(delta, A, B, C, u):
    """y_t = Σ_n C_t,n h_t,n with h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t, float64, one channel at a time."""
    batch, d_inner, L = u.shape
    y = torch.zeros(batch, d_inner, L, dtype=torch.float64)
    for b in range(batch):
        for d in range(d_inner):
            h = torch.zeros(A.shape[1], dtype=torch.float64)
            for t in range(L):
                h = torch.exp(delta[b, d, t] * A[d]) * h + delta[b, d, t] * B[b, :, t] * u[b, d, t]
                y[b, d, t] = (C[b, :, t] * h).sum()
    return y


@pytest.mark.parametrize("batch,d_inner,L,N", [(1, 1, 1, 1), (2, 3, 7, 4), (1, 2, 13, 1)])
def test_selective_matrix_is_the_recurrence(batch, d_inner, L, N):
    g = torch.Generator().manual_seed(1)
    delta = F.softplus(torch.randn(batch, d_inner, L, generator=g, dtype=torch.float64))
    A = -torch.rand(d_inner, N, generator=g, dtype=torch.float64) * 3 - 0.1
    B = torch.randn(batch, N, L, generator=g, dtype=torch.float64)
    C = torch.randn(batch, N, L, generator=g, dtype=torch.float64)
    u = torch.randn(batch, d_inner, L, generator=g, dtype=torch.float64)
    M = selective_matrix(delta, A, B, C)
    assert M.shape == (batch, d_inner, L, L) and M.dtype == torch.float64
    assert (M.triu(1) == 0).all()  # causal
    y = torch.einsum("bdts,bds->bdt", M, u)
    check_close("M u vs recurrence loop", recurrence_loop(delta, A, B, C, u), y, rtol=1e-10, atol=1e-12)
    M32 = selective_matrix(delta.float(), A.float(), B.float(), C.float())
    assert M32.dtype == torch.float32
    check_close("fp32 M", M, M32, rtol=1e-4, atol=1e-6)


def test_selective_matrix_lti_case_is_toeplitz():
    """Constant Δ, B, C: M[t, s] = Σ_n C_n exp(A_n Δ)^(t-s) Δ B_n, the convolution kernel at lag t - s."""
    L, N, dt = 9, 3, 0.3
    A = -torch.tensor([[0.5, 1.0, 2.0]], dtype=torch.float64)
    Bv, Cv = (
        torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64),
        torch.tensor([0.3, 1.0, -1.0], dtype=torch.float64),
    )
    M = selective_matrix(
        torch.full((1, 1, L), dt, dtype=torch.float64),
        A,
        Bv[None, :, None].expand(1, N, L),
        Cv[None, :, None].expand(1, N, L),
    )[0, 0]
    K = torch.tensor(
        [(Cv * torch.exp(A[0] * dt) ** k * dt * Bv).sum().item() for k in range(L)], dtype=torch.float64
    )
    T = torch.stack(
        [torch.cat([K[: t + 1].flip(0), torch.zeros(L - t - 1, dtype=torch.float64)]) for t in range(L)]
    )
    check_close("LTI case: Toeplitz", T, M, rtol=1e-12, atol=1e-14)


def test_selective_matrix_bad_input():
    d, A, B = torch.rand(1, 2, 4), -torch.ones(2, 3), torch.randn(1, 3, 4)
    with pytest.raises(ValueError, match="B must have shape"):
        selective_matrix(d, A, torch.randn(1, 2, 4), B)
    with pytest.raises(ValueError, match="B and C must have shape"):
        selective_matrix(d, A, torch.randn(1, 1, 3, 4), B)
    with pytest.raises(TypeError, match="A must be a torch.Tensor"):
        selective_matrix(d, "A", B, B)
