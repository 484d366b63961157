"""The decoding-step kernels (causal conv1d update, residual add + RMSNorm) against float64 loops written
here; under Triton's interpreter on CPU (tiny shapes) and on a GPU (real shapes, marked gpu)."""

from __future__ import annotations

import math

import pytest
import torch
from minimamba.kernels.causal_conv1d import causal_conv1d_update, causal_conv1d_update_ref
from minimamba.kernels.rmsnorm import add_rms_norm, add_rms_norm_ref

from minimamba.testing import check_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
#: (rtol, atol) of each input dtype against the float64 loop: fp32 arithmetic; bf16 output rounding (2^-8)
TOL = {torch.float32: (1e-5, 1e-6), torch.bfloat16: (1e-2, 1e-2)}


def conv_loop(window, x, w, b, silu):
    """float64: shift x into the window, then out_d = Σ_k window[d, k] w[d, k] + b_d, then SiLU."""
    batch, d_inner, d_conv = window.shape
    new = window.double().clone()
    out = torch.zeros(batch, d_inner, dtype=torch.float64)
    for i in range(batch):
        for d in range(d_inner):
            for k in range(d_conv - 1):
                new[i, d, k] = window[i, d, k + 1].double()
            new[i, d, d_conv - 1] = x[i, d].double()
            acc = sum(new[i, d, k] * w[d, k].double() for k in range(d_conv))
            acc = acc + (b[d].double() if b is not None else 0.0)
            out[i, d] = acc / (1 + math.exp(-acc)) if silu else acc
    return new, out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("batch", "d_inner", "d_conv", "bias", "silu"),
    [
        (1, 1, 4, True, True),
        (3, 5, 4, False, True),
        (2, 300, 2, True, False),
        (1, 7, 3, True, True),
    ],
)
def test_conv_update_equals_loop(dtype, batch, d_inner, d_conv, bias, silu):
    g = torch.Generator().manual_seed(batch * 100 + d_inner)
    state = torch.randn(batch, d_inner, d_conv, generator=g).to(dtype)
    x = torch.randn(batch, d_inner, generator=g).to(dtype)
    w = torch.randn(d_inner, d_conv, generator=g)
    b = torch.randn(d_inner, generator=g) if bias else None
    new_ref, out_ref = conv_loop(state, x, w, b, silu)
    s, s2 = state.clone().to(DEVICE), state.clone()  # two copies: each update works in place
    out = causal_conv1d_update(s, x.to(DEVICE), w.to(DEVICE), None if b is None else b.to(DEVICE), silu=silu)
    rtol, atol = TOL[dtype]
    assert out.dtype == dtype and out.shape == (batch, d_inner)
    check_close("conv out", out_ref, out.cpu().double(), rtol=rtol, atol=atol)
    assert torch.equal(s.cpu(), new_ref.to(dtype))  # the window is a shift: exact in any dtype
    check_close(
        "PyTorch ref",
        out.cpu().double(),
        causal_conv1d_update_ref(s2, x, w, b, silu).double(),
        rtol=rtol,
        atol=atol,
    )
    assert torch.equal(s2, s.cpu())


def test_conv_update_bad_input():
    state, x, w = torch.zeros(2, 4, 4), torch.zeros(2, 4), torch.zeros(4, 4)
    with pytest.raises(ValueError, match="x must be"):
        causal_conv1d_update(state, torch.zeros(2, 5), w)
    with pytest.raises(ValueError, match="weight must be"):
        causal_conv1d_update(state, x, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="conv_state must be"):
        causal_conv1d_update(torch.zeros(2, 4), x, w)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        causal_conv1d_update(state, x.long(), w)
    with pytest.raises(ValueError, match="bias must be"):
        causal_conv1d_update(state, x, w, torch.zeros(3))


def norm_loop(x, residual, weight, eps):
    """float64 rows: r = x + residual; out = r / sqrt(mean(r²) + eps) · weight."""
    r = x.double().reshape(-1, x.shape[-1]).clone()
    if residual is not None:
        r += residual.double().reshape(r.shape)
    out = torch.empty_like(r)
    for i in range(r.shape[0]):
        ms = sum(v * v for v in r[i].tolist()) / r.shape[1]
        out[i] = r[i] / math.sqrt(ms + eps) * weight.double()
    return out.reshape(x.shape), r.reshape(x.shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("shape", "with_res", "res_fp32"),
    [
        ((1, 1), False, False),
        ((3, 5), True, False),
        ((2, 3, 96), True, True),
        ((4, 768), True, True),
    ],
)
def test_add_rms_norm_equals_loop(dtype, shape, with_res, res_fp32):
    g = torch.Generator().manual_seed(shape[-1])
    x = torch.randn(*shape, generator=g).to(dtype)
    res = torch.randn(*shape, generator=g).to(dtype) if with_res else None
    w = (1 + 0.5 * torch.randn(shape[-1], generator=g)).to(dtype)
    out_ref, r_ref = norm_loop(x, res, w, 1e-5)
    out, r = add_rms_norm(x.to(DEVICE), None if res is None else res.to(DEVICE), w.to(DEVICE), 1e-5, res_fp32)
    rtol, atol = TOL[dtype]
    assert out.dtype == dtype and r.dtype == (torch.float32 if res_fp32 else dtype)
    check_close("RMSNorm out", out_ref, out.cpu().double(), rtol=rtol, atol=atol)
    check_close("residual", r_ref, r.cpu().double(), rtol=rtol, atol=atol)
    out2, r2 = add_rms_norm_ref(x, res, w, 1e-5, res_fp32)
    assert out2.dtype == out.dtype and r2.dtype == r.dtype
    check_close("PyTorch ref", out2.double(), out.cpu().double(), rtol=rtol, atol=atol)


def test_add_rms_norm_bad_input():
    x = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="weight must have shape"):
        add_rms_norm(x, None, torch.ones(3))
    with pytest.raises(ValueError, match="residual must be"):
        add_rms_norm(x, torch.zeros(2, 3), torch.ones(4))
    with pytest.raises(ValueError, match="eps must be"):
        add_rms_norm(x, None, torch.ones(4), eps=0.0)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        add_rms_norm(x.long(), None, torch.ones(4))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batch", [1, 64])
def test_step_kernels_real_shapes_on_gpu(dtype, batch):
    """Mamba-130M's shapes (d_model 768, d_inner 1536, d_conv 4) against the PyTorch versions."""
    g = torch.Generator(device="cuda").manual_seed(batch)
    state = torch.randn(batch, 1536, 4, device="cuda", generator=g).to(dtype)
    x = torch.randn(batch, 1536, device="cuda", generator=g).to(dtype)
    w, b = torch.randn(1536, 4, device="cuda", generator=g), torch.randn(1536, device="cuda", generator=g)
    s_ref = state.clone()
    rtol, atol = TOL[dtype]
    check_close(
        "conv",
        causal_conv1d_update_ref(s_ref, x, w, b).float(),
        causal_conv1d_update(state, x, w, b).float(),
        rtol=rtol,
        atol=atol,
    )
    assert torch.equal(state, s_ref)
    h, r = (torch.randn(batch, 768, device="cuda", generator=g).to(dtype) for _ in range(2))
    wn = torch.randn(768, device="cuda", generator=g).to(dtype)
    for a, c in zip(add_rms_norm(h, r, wn, 1e-5, True), add_rms_norm_ref(h, r, wn, 1e-5, True)):
        check_close("add+norm", c.float(), a.float(), rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------ the fused step in the model


def _set_fused(model, choice):
    for m in model.modules():
        if hasattr(m, "fused_step"):
            m.fused_step = choice


@pytest.mark.parametrize("residual_in_fp32", [False, True])
def test_fused_model_step_equals_pytorch_step(residual_in_fp32):
    """MambaLM.step through the three Triton kernels (interpreted on CPU) = the PyTorch step, token by token,
    and both leave the same cache."""
    from minimamba.config import MambaConfig
    from minimamba.model import MambaLM

    torch.manual_seed(0)
    cfg = MambaConfig(d_model=8, n_layer=2, vocab_size=11, d_state=3, residual_in_fp32=residual_in_fp32)
    model = MambaLM(cfg).to(DEVICE).eval()
    ids = torch.randint(0, 11, (2, 4), device=DEVICE)
    caches, logits = {}, {}
    for fused in (False, True):
        _set_fused(model, fused)
        cache = model.init_cache(2)
        with torch.no_grad():
            model(ids[:, :2], cache=cache)
            logits[fused] = torch.stack([model.step(ids[:, t], cache) for t in range(2, 4)])
        caches[fused] = cache
    check_close("logits", logits[False].double(), logits[True].double(), rtol=1e-5, atol=1e-5)
    for a, b in zip(caches[False].layers, caches[True].layers):
        # the fused add + RMSNorm rounds once (fp32), the PyTorch one after each op: equal to rounding
        check_close("conv_state", a.conv_state.double(), b.conv_state.double(), rtol=1e-5, atol=1e-6)
        check_close("ssm_state", a.ssm_state.double(), b.ssm_state.double(), rtol=1e-5, atol=1e-6)


def test_fused_step_is_chosen_on_cuda_only():
    from minimamba.block import fused_step_here

    x = torch.zeros(2, 3)
    assert fused_step_here(None, x) is False  # a CPU tensor: the PyTorch ops
    assert fused_step_here(True, x) is True and fused_step_here(False, x) is False
    if torch.cuda.is_available():
        assert fused_step_here(None, x.cuda()) and not fused_step_here(None, x.double().cuda())
