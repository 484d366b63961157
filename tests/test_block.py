"""The Mamba mixer: causality, initialization, step() against forward(), the LTI ablation, input checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from minimamba.block import MambaMixer, inverse_softplus, sample_dt
from minimamba.config import MambaConfig
from minimamba.generate import LayerCache
from minimamba.testing import check_close


def _mixer(selective=True, **kw):
    cfg = dict(d_model=8, n_layer=1, vocab_size=16, d_state=4, selective=selective)
    cfg.update(kw)
    return MambaMixer(MambaConfig(**cfg)).double()


def _perturb(module, scale=0.1):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def _mixer_loop(m: MambaMixer, hidden: torch.Tensor) -> torch.Tensor:
    """An independent float64 reference: the block written as a Python loop over time and channels' states."""
    batch, L, _ = hidden.shape
    xz = hidden @ m.in_proj.weight.T  # (batch, L, 2·d_inner)
    if m.in_proj.bias is not None:
        xz = xz + m.in_proj.bias
    x, z = xz[..., : m.d_inner], xz[..., m.d_inner :]
    w = m.conv1d.weight[:, 0, :]  # (d_inner, K)
    K = w.shape[1]
    A = -torch.exp(m.A_log)
    h = torch.zeros(batch, m.d_inner, m.d_state, dtype=hidden.dtype)
    out = []
    for t in range(L):
        conv = torch.zeros(batch, m.d_inner, dtype=hidden.dtype)
        for k in range(K):  # tap k looks back K-1-k positions; before the start there is nothing
            s = t - (K - 1 - k)
            if s >= 0:
                conv = conv + w[:, k] * x[:, s]
        if m.conv1d.bias is not None:
            conv = conv + m.conv1d.bias
        u = conv * torch.sigmoid(conv)  # SiLU, (batch, d_inner)
        if m.selective:
            dbc = u @ m.x_proj.weight.T
            dt, B, C = (
                dbc[:, : m.dt_rank],
                dbc[:, m.dt_rank : m.dt_rank + m.d_state],
                dbc[:, m.dt_rank + m.d_state :],
            )
            delta = torch.log1p(torch.exp(dt @ m.dt_proj.weight.T + m.dt_proj.bias))  # (batch, d_inner)
            B, C = B[:, None, :], C[:, None, :]
        else:
            delta = torch.log1p(torch.exp(m.dt_bias)).expand(batch, -1)
            B, C = m.B[None], m.C[None]
        h = torch.exp(delta[..., None] * A) * h + delta[..., None] * B * u[..., None]
        y = (h * C).sum(-1) + m.D * u
        y = y * (z[:, t] * torch.sigmoid(z[:, t]))
        out.append(y @ m.out_proj.weight.T + (m.out_proj.bias if m.out_proj.bias is not None else 0))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("selective", [True, False])
@pytest.mark.parametrize("L", [1, 7])
def test_forward_matches_loop(selective, L):
    m = _mixer(selective, bias=True)
    _perturb(m)
    hidden = torch.randn(2, L, 8, dtype=torch.float64)
    with torch.no_grad():
        check_close("mixer vs loop", _mixer_loop(m, hidden), m(hidden), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["ref", "blelloch", "triton"])
def test_scan_backend_is_the_scan_forward_calls(backend):
    """MambaMixer.scan_backend reaches selective_scan: every backend gives the loop's output (fp64; Triton
    in fp32 through its interpreter), and a name no backend has is refused by name."""
    m = _mixer(True, bias=True)
    _perturb(m)
    hidden = torch.randn(2, 7, 8, dtype=torch.float64)
    with torch.no_grad():
        ref = _mixer_loop(m, hidden)
        if backend == "triton":
            m, hidden, ref = m.float(), hidden.float(), ref.float()
        m.scan_backend = backend
        tol = dict(rtol=1e-5, atol=1e-6) if backend == "triton" else dict(rtol=1e-10, atol=1e-12)
        check_close(f"mixer ({backend} scan) vs loop", ref, m(hidden), **tol)
        m.scan_backend = "no-such-scan"
        with pytest.raises(ValueError, match="no-such-scan"):
            m(hidden)


@pytest.mark.parametrize("selective", [True, False])
def test_causal(selective):
    """Changing token t changes no output before t (the conv and the scan, or the LTI's FFT convolution)."""
    m = _mixer(selective, d_conv=4)
    _perturb(m)
    hidden = torch.randn(1, 10, 8, dtype=torch.float64)
    with torch.no_grad():
        y = m(hidden)
        for t in (0, 3, 9):
            h2 = hidden.clone()
            h2[:, t] += 1.0
            y2 = m(h2)
            if selective:
                assert torch.equal(y[:, :t], y2[:, :t]), f"output before {t} changed"
            else:  # an FFT convolution: causal in exact arithmetic, its rounding reaches every output
                assert torch.allclose(y[:, :t], y2[:, :t], rtol=0, atol=1e-13), f"output before {t} changed"
            assert not torch.allclose(y[:, t], y2[:, t]), f"output at {t} did not change"


@pytest.mark.parametrize("selective", [True, False])
@pytest.mark.parametrize("d_conv", [1, 4])
def test_step_equals_forward(selective, d_conv):
    m = _mixer(selective, d_conv=d_conv)
    _perturb(m)
    hidden = torch.randn(3, 7, 8, dtype=torch.float64)
    with torch.no_grad():
        full = m(hidden)
        cache = m.init_cache(3)
        steps = torch.stack([m.step(hidden[:, t], cache) for t in range(7)], dim=1)
        check_close("step vs forward", full, steps, rtol=1e-10, atol=1e-12)
        # prefill with forward, then step: the cache forward leaves equals the one step builds
        cache2 = m.init_cache(3)
        pre = m(hidden[:, :4], cache=cache2)
        rest = torch.stack([m.step(hidden[:, t], cache2) for t in range(4, 7)], dim=1)
        check_close("prefill + step vs forward", full, torch.cat([pre, rest], dim=1), rtol=1e-10, atol=1e-12)
        check_close("conv_state", cache.conv_state, cache2.conv_state, rtol=0, atol=1e-14)
        check_close("ssm_state", cache.ssm_state, cache2.ssm_state, rtol=1e-10, atol=1e-12)


def test_step_fp32():
    m = _mixer().float()
    _perturb(m)
    hidden = torch.randn(2, 7, 8)
    with torch.no_grad():
        full = m(hidden)
        cache = m.init_cache(2)
        assert cache.ssm_state.dtype == torch.float32
        steps = torch.stack([m.step(hidden[:, t], cache) for t in range(7)], dim=1)
    check_close("step vs forward fp32", full, steps, rtol=1e-5, atol=1e-6)


def test_init():
    cfg = MambaConfig(d_model=64, n_layer=1, vocab_size=16, d_state=5, dt_min=0.002, dt_max=0.05)
    m = MambaMixer(cfg)
    dt = F.softplus(m.dt_proj.bias.double())
    assert dt.min() >= 0.002 * (1 - 1e-5) and dt.max() <= 0.05 * (1 + 1e-5)
    A = -torch.exp(m.A_log)
    check_close("A = -(1..N)", -torch.arange(1, 6.0).expand(cfg.d_inner, 5), A, rtol=1e-6)
    check_close("D = 1", torch.ones(cfg.d_inner), m.D, rtol=0)
    bound = cfg.dt_rank**-0.5
    assert m.dt_proj.weight.abs().max() <= bound and m.dt_proj.weight.abs().max() > 0.5 * bound
    assert m.conv1d.weight.shape == (cfg.d_inner, 1, cfg.d_conv)
    assert m.x_proj.weight.shape == (cfg.dt_rank + 2 * 5, cfg.d_inner)


def test_dt_log_uniform():
    """log Δ at init is uniform on [log dt_min, log dt_max]: its mean is the midpoint (not dt², the bug)."""
    dt = sample_dt(20000, 1e-3, 1e-1, 1e-4, generator=torch.Generator().manual_seed(0)).double()
    assert abs(dt.log().mean().item() - 0.5 * (math.log(1e-3) + math.log(1e-1))) < 0.05
    check_close("softplus(inverse_softplus(dt))", dt, F.softplus(inverse_softplus(dt)), rtol=1e-6)
    assert sample_dt(100, 1e-6, 1e-5, 1e-4).min() >= 1e-4  # the floor


def test_lti_mode():
    m = _mixer(selective=False)
    names = {n for n, _ in m.named_parameters()}
    assert not any(n.startswith(("x_proj", "dt_proj")) for n in names)
    assert {"dt_bias", "B", "C", "A_log", "D"} <= names
    assert m.B.shape == m.C.shape == (m.d_inner, m.d_state)


def test_gradients_flow():
    for selective in (True, False):
        m = _mixer(selective)
        m(torch.randn(2, 5, 8, dtype=torch.float64)).square().sum().backward()
        for n, p in m.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n


def test_bad_inputs():
    m = _mixer()
    with pytest.raises(ValueError, match="hidden"):
        m(torch.randn(5, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="hidden"):
        m.step(torch.randn(1, 5, 8, dtype=torch.float64), m.init_cache(1))
    with pytest.raises(ValueError, match="conv_state"):
        m.step(torch.randn(2, 8, dtype=torch.float64), m.init_cache(1))
    with pytest.raises(TypeError, match="LayerCache"):
        m.step(torch.randn(1, 8, dtype=torch.float64), (1, 2))
    bad = LayerCache(torch.zeros(1, m.d_inner, m.d_conv), torch.zeros(1, m.d_inner, 3))
    with pytest.raises(ValueError, match="ssm_state"):
        m(torch.randn(1, 2, 8, dtype=torch.float64), cache=bad)
    with pytest.raises(TypeError, match="MambaConfig"):
        MambaMixer({"d_model": 8})


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(d_model=0), ValueError, "d_model"),
        (dict(d_model=8.0), TypeError, "d_model"),
        (dict(dt_rank="big"), ValueError, "dt_rank"),
        (dict(dt_rank=0), ValueError, "dt_rank"),
        (dict(dt_min=0.2, dt_max=0.1), ValueError, "dt_min"),
        (dict(dt_min=-1.0), ValueError, "dt_min"),
        (dict(dt_init="zeros"), ValueError, "dt_init"),
        (dict(norm_eps=0.0), ValueError, "norm_eps"),
        (dict(selective="no"), TypeError, "selective"),
        (dict(d_conv=0), ValueError, "d_conv"),
    ],
)
def test_bad_config(kw, exc, match):
    cfg = dict(d_model=8, n_layer=1, vocab_size=16)
    cfg.update(kw)
    with pytest.raises(exc, match=match):
        MambaConfig(**cfg)


def test_config_derived():
    c = MambaConfig(d_model=768, n_layer=24, vocab_size=50277)
    assert (c.d_inner, c.dt_rank, c.padded_vocab_size) == (1536, 48, 50280)
    assert MambaConfig(**c.to_dict()) == c


@pytest.mark.parametrize("selective", [True, False])
def test_odd_sizes(selective):
    """d_inner = 3, N = 1, d_conv = 2, L = 7: forward against the loop, step against forward."""
    m = _mixer(selective, d_model=1, expand=3, d_state=1, d_conv=2)
    _perturb(m)
    hidden = torch.randn(2, 7, 1, dtype=torch.float64)
    with torch.no_grad():
        full = m(hidden)
        check_close("odd sizes vs loop", _mixer_loop(m, hidden), full, rtol=1e-10, atol=1e-12)
        cache = m.init_cache(2)
        steps = torch.stack([m.step(hidden[:, t], cache) for t in range(7)], dim=1)
    check_close("odd sizes step", full, steps, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("selective", [True, False])
def test_gradients_match_loop(selective):
    """Gradients of every parameter and of the input, against autograd through the float64 loop."""
    m = _mixer(selective, bias=True)
    _perturb(m)
    hidden = torch.randn(2, 6, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 6, 8, dtype=torch.float64)
    params = [hidden, *m.parameters()]
    g_out = torch.autograd.grad((m(hidden) * w).sum(), params)
    g_ref = torch.autograd.grad((_mixer_loop(m, hidden) * w).sum(), params)
    names = ["hidden", *(n for n, _ in m.named_parameters())]
    for name, r, o in zip(names, g_ref, g_out):
        check_close(f"d{name}", r, o, rtol=1e-8, atol=1e-10)


def test_long_sequence_in_chunks():
    """L = 4097 split in two forward calls that carry the cache equals one forward (the h0 path)."""
    m = _mixer(d_model=2, d_state=2)
    hidden = torch.randn(1, 4097, 2, dtype=torch.float64)
    with torch.no_grad():
        full = m(hidden)
        cache = m.init_cache(1)
        parts = torch.cat([m(hidden[:, :2049], cache=cache), m(hidden[:, 2049:], cache=cache)], dim=1)
    check_close("two chunks vs one forward, L = 4097", full, parts, rtol=1e-9, atol=1e-11)
