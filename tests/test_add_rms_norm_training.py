"""Residual add + RMSNorm with autograd (``add_rms_norm_fn``, kernels/rmsnorm) against the PyTorch reference
``add_rms_norm_ref`` differentiated by autograd; the reference's gradients against finite differences
(``torch.autograd.gradcheck``, float64). Under Triton's interpreter on CPU (tiny shapes) and on a GPU
(marked gpu) at the 130M model's shape.

Tolerances in fp32: sums over one row of n terms in another order (few 1e-7 relative, atol 1e-5 for
entries that cancel); dweight sums over every row (atol scaled by the row count).
"""

from __future__ import annotations

import pytest
import torch
from minimamba.kernels.rmsnorm import add_rms_norm_fn, add_rms_norm_ref

from minimamba.testing import check_close


@pytest.mark.parametrize("with_res", [True, False])
def test_reference_gradients_by_finite_differences(with_res):
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    res = torch.randn(3, 6, dtype=torch.float64, requires_grad=True) if with_res else None
    w = (1 + 0.3 * torch.randn(6, dtype=torch.float64)).requires_grad_()

    def f(x, w, *res):
        out, r = add_rms_norm_ref(x, res[0] if res else None, w, 1e-5)
        return out, r

    assert torch.autograd.gradcheck(f, (x, w, *([res] if with_res else [])))


def _leaves(shape, x_dtype, res_dtype, n):
    x = torch.randn(*shape).to(x_dtype).requires_grad_()
    res = None if res_dtype is None else torch.randn(*shape).to(res_dtype).requires_grad_()
    w = (1 + 0.5 * torch.randn(n)).requires_grad_()
    return x, res, w


def _grads(fn, x, res, w, res_fp32, dout, dres, out_dtype=None):
    leaves = [t.detach().clone().requires_grad_() for t in (x, w)]
    r_leaf = None if res is None else res.detach().clone().requires_grad_()
    out, r = fn(leaves[0], r_leaf, leaves[1], 1e-5, res_fp32, out_dtype)
    loss = (out.float() * dout).sum() + (0 if dres is None else (r.float() * dres).sum())
    inputs = leaves + ([] if r_leaf is None else [r_leaf])
    return out, r, torch.autograd.grad(loss, inputs)


def dweight_from_stored_residual(r, dout, eps=1e-5):
    """∂loss/∂weight = Σ_rows dout · r̂, with r̂ the normalized residual **as stored** (in fp64).

    The backward recomputes r̂ from the residual the forward wrote; where that is bf16
    (``residual_in_fp32=False``), r̂ carries its rounding (8 bits). Summed over the rows, that differs from
    the fp32 reference's dweight (which normalizes the unrounded x + residual) by about
    2^-8 · sqrt(rows) · |dout · r̂|: too much for a tolerance meant for fp32 accumulation at the 130M
    model's 16,384 rows, so in that mode dweight is checked against this sum instead."""
    r = r.detach().double()
    r_hat = r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + eps)
    return (dout.double() * r_hat).reshape(-1, r.shape[-1]).sum(0)


def test_dweight_with_a_bf16_residual_comes_from_the_stored_residual():
    """bf16 residual stream: dweight equals the sum over the stored (rounded) residual to fp32
    accuracy, and differs from the unrounded fp32 reference by the residual's rounding."""
    torch.manual_seed(0)
    shape = (2, 128, 96)
    x, res = torch.randn(*shape).bfloat16(), torch.randn(*shape).bfloat16()
    w = 1 + 0.5 * torch.randn(96)
    dout = torch.randn(*shape)
    _, _, grads_r = _grads(add_rms_norm_ref, x, res, w, False, dout, None)
    _, r, grads = _grads(add_rms_norm_fn, x, res, w, False, dout, None)
    want = dweight_from_stored_residual(r, dout)
    check_close("dweight", want, grads[1].double(), rtol=1e-5, atol=1e-5 * want.abs().max().item())
    rounding = (grads_r[1].double() - want).abs().max().item()
    assert 0 < rounding < 2**-8 * 256**0.5 * 4  # rows = 256; |dout · r̂| is about 1


CASES = [  # shape, x dtype, residual dtype (None: first block), residual_in_fp32, the residual used later
    ((3, 5), torch.float32, torch.float32, False, True, None),
    ((2, 3, 96), torch.float32, torch.float32, True, True, None),
    ((1, 1), torch.float32, None, False, False, None),  # the first block: no residual; the last: r unused
    ((13, 7), torch.float32, None, True, True, None),  # 13 rows over 4 programs: each walks several rows
    ((2, 5, 24), torch.bfloat16, torch.float32, True, True, None),  # bf16 autocast: h bf16, residual fp32
    ((2, 5, 24), torch.bfloat16, torch.float32, True, True, torch.bfloat16),  # out written for in_proj
]


@pytest.mark.parametrize(("shape", "x_dtype", "res_dtype", "res_fp32", "use_r", "out_dtype"), CASES)
def test_add_rms_norm_fn_equals_reference(shape, x_dtype, res_dtype, res_fp32, use_r, out_dtype):
    n = shape[-1]
    x, res, w = _leaves(shape, x_dtype, res_dtype, n)
    dout = torch.randn(*shape)
    dres = torch.randn(*shape) if use_r else None
    out_r, r_r, grads_r = _grads(add_rms_norm_ref, x, res, w, res_fp32, dout, dres, out_dtype)
    out, r, grads = _grads(add_rms_norm_fn, x, res, w, res_fp32, dout, dres, out_dtype)
    assert out.dtype == out_r.dtype == (out_dtype or w.dtype) and r.dtype == r_r.dtype
    tol = 1e-5 if x_dtype == torch.float32 else 1e-2  # a bf16 output or gradient: 8 bits
    check_close("out", out_r.float(), out.float(), rtol=tol, atol=tol)
    check_close("residual", r_r.float(), r.float(), rtol=tol, atol=tol)
    rows = x.numel() // n
    names = ("dx", "dweight", "dresidual")
    for name, gr, g in zip(names, grads_r, grads):
        assert g.dtype == gr.dtype, name
        atol = 1e-5 * rows if name == "dweight" else tol
        check_close(name, gr.float(), g.float(), rtol=tol, atol=atol)


def test_custom_ops_schema_and_fake():
    x = torch.randn(2, 3, 8)
    res = torch.randn(2, 3, 8)
    w = torch.randn(8)
    for args in ((x, res, w, 1e-5, True, None), (x.bfloat16(), None, w, 1e-5, False, torch.bfloat16)):
        torch.library.opcheck(torch.ops.minimamba.add_rms_norm_fwd.default, args)
    _, r = add_rms_norm_fn(x, res, w, 1e-5, True)
    checks = ("test_schema", "test_faketensor")
    bwd = torch.ops.minimamba.add_rms_norm_bwd.default
    torch.library.opcheck(
        bwd, (r, w, torch.randn(2, 3, 8), None, 1e-5, torch.float32, None), test_utils=checks
    )
    torch.library.opcheck(
        bwd,
        (r, w, torch.randn(2, 3, 8), torch.randn(2, 3, 8), 1e-5, torch.bfloat16, torch.float32),
        test_utils=checks,
    )


def test_bad_input_names_the_argument():
    x = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="weight must have shape"):
        add_rms_norm_fn(x, None, torch.ones(3))
    with pytest.raises(ValueError, match="residual must be"):
        add_rms_norm_fn(x, torch.zeros(2, 3), torch.ones(4))
    with pytest.raises(ValueError, match="eps must be"):
        add_rms_norm_fn(x, None, torch.ones(4), eps=-1.0)
    with pytest.raises(TypeError, match="residual_in_fp32 must be a bool"):
        add_rms_norm_fn(x, None, torch.ones(4), 1e-5, "yes")
    with pytest.raises(TypeError, match="float64"):
        add_rms_norm_fn(x.double(), None, torch.ones(4).double())
    with pytest.raises(TypeError, match="out_dtype must be"):
        add_rms_norm_fn(x, None, torch.ones(4), 1e-5, False, torch.int32)


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("x_dtype", "res_fp32"), [(torch.float32, True), (torch.bfloat16, True), (torch.bfloat16, False)]
)
def test_add_rms_norm_fn_on_gpu(x_dtype, res_fp32):
    """The 130M model's residual stream: (8, 2048, 768), h from out_proj (bf16 under autocast)."""
    shape = (8, 2048, 768)
    x = torch.randn(*shape, device="cuda").to(x_dtype)
    res = (
        torch.randn(*shape, device="cuda").float()
        if res_fp32
        else torch.randn(*shape, device="cuda").to(x_dtype)
    )
    w = 1 + 0.5 * torch.randn(768, device="cuda")
    dout, dres = torch.randn(*shape, device="cuda"), torch.randn(*shape, device="cuda")
    out_r, r_r, grads_r = _grads(add_rms_norm_ref, x, res, w, res_fp32, dout, dres)
    out, r, grads = _grads(add_rms_norm_fn, x, res, w, res_fp32, dout, dres)
    tol = 1e-5 if x_dtype == torch.float32 and res_fp32 else 1e-2
    check_close("out", out_r.float(), out.float(), rtol=tol, atol=tol)
    check_close("residual", r_r.float(), r.float(), rtol=tol, atol=tol)
    for name, gr, g in zip(("dx", "dweight", "dresidual"), grads_r, grads):
        if name == "dweight" and not res_fp32:  # the backward normalizes the stored bf16 residual
            gr = dweight_from_stored_residual(r, dout)
        atol = 1e-4 * gr.abs().max().item() if name == "dweight" else tol
        check_close(name, gr.float(), g.float(), rtol=max(tol, 1e-4), atol=atol)
