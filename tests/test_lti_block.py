"""The LTI ablation's training forward (``MambaMixer(selective=False).forward`` without a cache), computed as a
convolution (Mamba Eq. 3a/3b), against the selective scan run on the same constant Δ, B, C: outputs and
gradients in float64 over a wide range of Δ, the cache path, bf16 autocast, and what the forward keeps for the
backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minimamba.block import MambaMixer
from minimamba.config import MambaConfig
from minimamba.memory import saved_for_backward
from minimamba.scan import selective_scan
from minimamba.testing import check_close, rel_error

F32, C64 = 4, 8  # bytes per float32 / complex64 element


def scan_forward(m: MambaMixer, hidden: torch.Tensor) -> torch.Tensor:
    """The whole-sequence forward through the selective scan, B and C expanded to (batch, d_inner, N, L) (one
    group per channel) from ``ssm_inputs``: the block's arithmetic without the convolution shortcut."""
    L = hidden.shape[1]
    x, z = m.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (batch, d_inner, L) each
    x = F.silu(m.conv1d(x)[..., :L])  # (batch, d_inner, L)
    delta, B, C = m.ssm_inputs(x)  # (batch, d_inner, L), (batch, d_inner, N, L) x 2
    A = -torch.exp(m.A_log.to(torch.float64 if x.dtype == torch.float64 else torch.float32))  # (d_inner, N)
    y = selective_scan(x, delta, A, B, C, m.D, z=z, delta_softplus=True, backend=m.scan_backend)
    return m.out_proj(y.transpose(1, 2))  # (batch, L, d_model)


def check_fp32(name: str, ref: torch.Tensor, out: torch.Tensor) -> None:
    """fp32 against fp32: the FFT's rounding is relative to the signal as a whole (with Δ up to 20 some outputs
    are ~1e3), so the absolute tolerance scales with the largest output."""
    check_close(name, ref, out, rtol=1e-4, atol=1e-6 * ref.abs().max().item())


def lti_mixer(d_model: int = 8, d_state: int = 4, dtype=torch.float64, seed: int = 0, **kw) -> MambaMixer:
    """An LTI mixer with every parameter random, and Δ = softplus(dt_bias) over eight decades (1e-5 .. 20)."""
    torch.manual_seed(seed)
    cfg = MambaConfig(
        d_model=d_model, n_layer=1, vocab_size=16, d_state=d_state, selective=False, bias=True, **kw
    )
    m = MambaMixer(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
        m.dt_bias.copy_(torch.linspace(-11.5, 20.0, m.d_inner)[torch.randperm(m.d_inner)])  # Δ 1e-5 .. 20
    return m.to(dtype)


@pytest.mark.parametrize("L", [1, 7, 64, 300])
def test_forward_equals_the_scan(L):
    m = lti_mixer()
    hidden = torch.randn(2, L, 8, dtype=torch.float64)
    with torch.no_grad():
        check_close(
            f"convolution vs scan, L = {L}", scan_forward(m, hidden), m(hidden), rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize("L", [1, 7, 64, 300])
def test_gradients_equal_the_scan(L):
    """Every parameter's gradient and the input's, float64."""
    m = lti_mixer(seed=1)
    hidden = torch.randn(2, L, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, L, 8, dtype=torch.float64)
    params = [hidden, *m.parameters()]
    g_conv = torch.autograd.grad((m(hidden) * w).sum(), params)
    g_scan = torch.autograd.grad((scan_forward(m, hidden) * w).sum(), params)
    names = ["hidden", *(n for n, _ in m.named_parameters())]
    for name, ref, out in zip(names, g_scan, g_conv):
        check_close(f"d{name}, L = {L}", ref, out, rtol=1e-9, atol=1e-11)


def test_cache_path_equals_the_full_forward():
    """Prefill with a cache (the scan, from the cache's state), then step: the convolution's outputs."""
    m = lti_mixer(seed=2)
    hidden = torch.randn(2, 40, 8, dtype=torch.float64)
    with torch.no_grad():
        full = m(hidden)
        cache = m.init_cache(2)
        pre = m(hidden[:, :13], cache=cache)
        pre2 = m(hidden[:, 13:30], cache=cache)  # a second prefill starts from a nonzero state
        rest = torch.stack([m.step(hidden[:, t], cache) for t in range(30, 40)], dim=1)
    check_close(
        "prefill, prefill, step vs forward", full, torch.cat([pre, pre2, rest], dim=1), rtol=1e-10, atol=1e-12
    )


def test_bf16_autocast():
    """Under bf16 autocast on the CPU the block runs, returns bf16, and lands as close to the float64 block as
    the scan path does, outputs and gradients. The tolerance is bf16's, not fp32's: in_proj, the conv, the
    SSM output and out_proj are each rounded to bf16 (8-bit significand, relative spacing 2^-8), so the two
    paths, equal to ~1e-7 in fp32, differ wherever one rounding falls the other way."""
    m = lti_mixer(d_model=32, d_state=16, dtype=torch.float32, seed=3)
    m64 = lti_mixer(d_model=32, d_state=16, dtype=torch.float64, seed=3)
    hidden = torch.randn(2, 64, 32)
    ref = m64(hidden.double())
    g_ref = torch.autograd.grad(ref.square().sum(), list(m64.parameters()))
    out, grads = {}, {}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for name, fn in (("convolution", m), ("scan", lambda h: scan_forward(m, h))):
            out[name] = fn(hidden)
            grads[name] = torch.autograd.grad(out[name].float().square().sum(), list(m.parameters()))
    assert out["convolution"].dtype == torch.bfloat16
    err = {name: rel_error(ref, y.float()) for name, y in out.items()}
    assert err["convolution"] <= 2e-2 and err["convolution"] <= 2 * err["scan"], err
    for (pname, _), r, g_conv, g_scan in zip(
        m.named_parameters(), g_ref, grads["convolution"], grads["scan"]
    ):
        e_conv, e_scan = rel_error(r, g_conv), rel_error(r, g_scan)
        assert torch.isfinite(g_conv).all() and e_conv <= 5e-2 and e_conv <= 2 * e_scan + 1e-3, (
            pname,
            e_conv,
            e_scan,
        )
    # and without autocast, fp32 against fp32: the two paths agree to fp32 rounding
    check_fp32("fp32 convolution vs scan", scan_forward(m, hidden), m(hidden))


def test_keeps_far_less_for_the_backward_than_the_scan():
    """batch 2, d_model 32 (d_inner 64), N 16, L 256, fp32. The convolution keeps the block's (batch, d_inner,
    L)-sized activations, u zero-padded to the FFT length n and its spectrum, and parameter-sized tensors (the
    kernel's exp(k Δ A), (d_inner, N, L)); the scan keeps at least exp(Δ A) and Δ B u, two (batch, d_inner,
    L, N) tensors. The bound below adds up those shapes, every storage counted whole."""
    m = lti_mixer(d_model=32, d_state=16, dtype=torch.float32, seed=4)
    hidden = torch.randn(2, 256, 32)
    conv, scan = saved_for_backward(m, hidden), saved_for_backward(lambda h: scan_forward(m, h), hidden)
    batch, L, _ = hidden.shape
    d, N, K = m.d_inner, m.d_state, m.d_conv
    n = 1 << (2 * L - 1).bit_length()  # the FFT length: a power of two >= 2L - 1
    act = batch * d * L * F32  # one (batch, d_inner, L) fp32 tensor
    bound = {
        "in_proj output xz (the conv's x, the gate's z)": 2 * act,
        "conv output with its padding (SiLU's input)": batch * d * (L + K - 1) * F32,
        "u = SiLU(conv), SiLU(z), y before the gate, y copied for out_proj": 4 * act,
        "u zero-padded to n, and its spectrum": batch * d * n * F32 + batch * d * (n // 2 + 1) * C64,
        "exp(k Δ A)": d * N * L * F32,
        "K zero-padded to n, and its spectrum": d * n * F32 + d * (n // 2 + 1) * C64,
        "(d_inner, N)-, (d_inner,)- and (L,)-sized pieces of the kernel": (8 * d * N + 2 * d + 2 * L) * F32,
    }
    scan_at_least = 2 * batch * d * L * N * F32
    assert conv.total_bytes <= sum(bound.values()), (conv.total_bytes, bound)
    assert scan.total_bytes >= scan_at_least
    assert 3 * conv.total_bytes <= scan.total_bytes, (conv.total_bytes, scan.total_bytes)
    check_fp32("fp32 convolution vs scan", scan.output, conv.output)


def test_scan_backend_is_not_used_by_the_convolution():
    """The training forward of the LTI block needs no scan; a cache still goes through ``scan_backend``."""
    m = lti_mixer()
    m.scan_backend = "no-such-scan"
    hidden = torch.randn(1, 5, 8, dtype=torch.float64)
    with torch.no_grad():
        m(hidden)
        with pytest.raises(ValueError, match="no-such-scan"):
            m(hidden, cache=m.init_cache(1))
