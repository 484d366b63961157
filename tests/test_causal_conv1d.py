"""The training conv (kernels/causal_conv1d/conv.py), forward and backward.

- the PyTorch reference ``causal_conv1d_ref`` against a float64 loop written here (the definition), and its
  autograd gradients against finite differences (``torch.autograd.gradcheck``, float64);
- the Triton kernels against the reference's values and autograd gradients, fp32 under Triton's interpreter
  on CPU (tiny shapes: every interpreted program costs milliseconds), and on a GPU (marked gpu) at Mamba's
  shapes, fp32 and bf16, L from 1 to 4096, strided inputs.

Tolerances in fp32: a handful of products summed in a different order (few 1e-7 relative); the weight
gradient sums batch · L terms (atol scaled by that count).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from minimamba.kernels.causal_conv1d import (
    ConvLaunch,
    causal_conv1d_bwd,
    causal_conv1d_fn,
    causal_conv1d_fwd,
    causal_conv1d_ref,
)

from minimamba.testing import check_close


def conv_loop(x, w, b, silu):
    """float64, by the definition: out[b, d, t] = act(b_d + Σ_k w[d, k] x[b, d, t − (K − 1) + k]), x < 0 = 0."""
    batch, d_inner, L = x.shape
    K = w.shape[1]
    out = torch.zeros(batch, d_inner, L, dtype=torch.float64)
    for i in range(batch):
        for d in range(d_inner):
            for t in range(L):
                acc = float(b[d]) if b is not None else 0.0
                for k in range(K):
                    s = t - (K - 1) + k
                    if s >= 0:
                        acc += float(w[d, k]) * float(x[i, d, s])
                out[i, d, t] = acc / (1 + math.exp(-acc)) if silu else acc
    return out


@pytest.mark.parametrize(
    ("K", "bias", "silu"), [(4, True, True), (3, False, True), (1, True, False), (2, False, False)]
)
def test_reference_equals_loop(K, bias, silu):
    x, w = torch.randn(2, 3, 6, dtype=torch.float64), torch.randn(3, K, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64) if bias else None
    check_close(
        "ref vs loop", conv_loop(x, w, b, silu), causal_conv1d_ref(x, w, b, silu), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(("K", "silu"), [(4, True), (2, False)])
def test_reference_gradients_by_finite_differences(K, silu):
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, K, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: causal_conv1d_ref(x, w, b, silu), (x, w, b))


def _inputs(batch, d_inner, L, K, bias, layout):
    """x as the block makes it: "contiguous" (batch, d_inner, L), or "channels_last": the first half of a
    (batch, L, 2·d_inner) projection, transposed (channel stride 1, time stride 2·d_inner)."""
    if layout == "channels_last":
        x = torch.randn(batch, L, 2 * d_inner).transpose(1, 2)[:, :d_inner]
    else:
        x = torch.randn(batch, d_inner, L)
    w = torch.randn(d_inner, K)
    b = torch.randn(d_inner) if bias else None
    return x, w, b


def _ref_grads(x, w, b, silu, g):
    leaves = [t.detach().clone().requires_grad_() for t in (x, w)] + (
        [] if b is None else [b.detach().clone().requires_grad_()]
    )
    out = causal_conv1d_ref(*leaves[:2], leaves[2] if b is not None else None, silu)
    grads = torch.autograd.grad(out, leaves, g)
    return out, grads[0], grads[1], grads[2] if b is not None else None


CASES = [  # batch, d_inner, L, K, bias, silu, layout
    (2, 3, 5, 4, True, True, "contiguous"),
    (1, 5, 70, 4, True, True, "channels_last"),  # two time blocks of 64: the halo crosses a block edge
    (2, 3, 9, 3, False, True, "channels_last"),
    (1, 2, 3, 4, True, False, "contiguous"),  # L < d_conv: every output sees the padding
    (1, 66, 4, 2, False, False, "contiguous"),  # two channel blocks of 64
    (2, 1, 1, 1, True, True, "contiguous"),
]


@pytest.mark.parametrize(("batch", "d_inner", "L", "K", "bias", "silu", "layout"), CASES)
def test_triton_conv_equals_reference(batch, d_inner, L, K, bias, silu, layout):
    x, w, b = _inputs(batch, d_inner, L, K, bias, layout)
    g = torch.randn(batch, L, d_inner).transpose(1, 2)  # a strided output gradient too
    out_ref, dx_ref, dw_ref, db_ref = _ref_grads(x, w, b, silu, g)
    out = causal_conv1d_fwd(x, w, b, silu)
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous()
    check_close("out", out_ref, out, rtol=1e-5, atol=1e-6)
    dx, dw, db = causal_conv1d_bwd(x, w, b, g, silu)
    check_close("dx", dx_ref, dx, rtol=1e-5, atol=1e-5)
    check_close("dw", dw_ref, dw, rtol=1e-5, atol=1e-6 * batch * L)
    if bias:
        check_close("dbias", db_ref, db, rtol=1e-5, atol=1e-6 * batch * L)
    else:
        assert db is None


@pytest.mark.parametrize("launch", [ConvLaunch(2, 4, 1), ConvLaunch(8, 2, 2)])
def test_other_launch_sizes_give_the_same_gradients(launch):
    """Blocks smaller than the tensor: several channel and time blocks, so the halo of every tile and
    the partial sums of dw and dbias cross block edges."""
    x, w, b = _inputs(2, 5, 11, 4, True, "channels_last")
    g = torch.randn(2, 5, 11)
    out_ref, dx_ref, dw_ref, db_ref = _ref_grads(x, w, b, True, g)
    check_close("out", out_ref, causal_conv1d_fwd(x, w, b, True, launch=launch), rtol=1e-5, atol=1e-6)
    dx, dw, db = causal_conv1d_bwd(x, w, b, g, True, launch=launch)
    for name, r, o in (("dx", dx_ref, dx), ("dw", dw_ref, dw), ("dbias", db_ref, db)):
        check_close(name, r, o, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("K", [1, 2, 3, 4])
@pytest.mark.parametrize(("bias", "silu"), [(True, True), (False, True), (True, False), (False, False)])
def test_window_backward_equals_reference(K, bias, silu):
    """The backward that loads each shifted tile of x once (taps padded in front to four): every d_conv,
    with and without bias and SiLU, across time blocks (the halo of x before and after each tile)."""
    x, w, b = _inputs(2, 5, 11, K, bias, "channels_last")
    g = torch.randn(2, 5, 11)
    _, dx_ref, dw_ref, db_ref = _ref_grads(x, w, b, silu, g)
    dx, dw, db = causal_conv1d_bwd(x, w, b, g, silu, launch=ConvLaunch(4, 4, 1, window=True))
    check_close("dx", dx_ref, dx, rtol=1e-5, atol=1e-5)
    check_close("dw", dw_ref, dw, rtol=1e-5, atol=1e-5)
    if bias:
        check_close("dbias", db_ref, db, rtol=1e-5, atol=1e-5)
    else:
        assert db is None


def test_conv_launch_rejects_bad_sizes():
    with pytest.raises(ValueError, match="ConvLaunch.block_t must be a power of two"):
        ConvLaunch(64, 48, 4)
    with pytest.raises(ValueError, match="ConvLaunch.num_warps must be a power of two"):
        ConvLaunch(64, 64, 0)
    with pytest.raises(ValueError, match="ConvLaunch.window must be a bool"):
        ConvLaunch(64, 64, 4, window="yes")
    x, w, _ = _inputs(1, 2, 3, 4, False, "contiguous")
    with pytest.raises(TypeError, match="launch must be a ConvLaunch or None"):
        causal_conv1d_fwd(x, w, launch=(64, 64, 4))


def test_benchmark_smoke_writes_its_table(tmp_path):
    """The benchmark's CPU smoke run: every implementation of every mode timed, ours agreeing with the
    reference, the JSON readable (the GPU run writes the same layout)."""
    from minimamba.kernels.causal_conv1d import bench

    assert bench.main(["--smoke", "--dtypes", "fp32", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["meta"]["versions"]["causal_conv1d"] is None  # no GPU: the peer is not measured
    rows = res["rows"]
    seen = {(r["layout"], r["mode"], r["impl"]) for r in rows}
    for layout in bench.LAYOUTS:
        for mode in bench.MODES:
            assert (layout, mode, bench.OURS) in seen
        assert (layout, "fwd+bwd", bench.TORCH) in seen
        for launch in bench.SMOKE_TRIES:  # the d_conv-loads kernel and another size of the window one
            assert (layout, "bwd", bench.launch_name(launch)) in seen
    for r in rows:
        assert r["ms"] > 0 and len(r["all_ms"]) == 1
        if r["impl"] == bench.OURS:
            assert r["vs_ours"] == 1.0 and max(r["agreement"].values()) < 1e-5
    assert "| (2, 8, 16) | fp32 | time | bwd |" in bench.table(rows)


def test_autograd_function_equals_reference():
    x, w, b = _inputs(2, 4, 11, 4, True, "channels_last")
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    out = causal_conv1d_fn(*leaves)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, g)
    out_ref, *grads_ref = _ref_grads(x, w, b, True, g)
    check_close("out", out_ref, out, rtol=1e-5, atol=1e-6)
    for name, r, o in zip(("dx", "dw", "dbias"), grads_ref, grads):
        check_close(name, r, o, rtol=1e-5, atol=1e-5)


def test_custom_ops_schema_and_fake():
    """The ops torch.compile sees: schema, fake (shape-only) implementations and autograd registration agree
    with the real ones (torch.library.opcheck)."""
    x, w, b = _inputs(1, 3, 6, 4, True, "channels_last")
    torch.library.opcheck(torch.ops.minimamba.causal_conv1d_fwd.default, (x, w, b, True))
    torch.library.opcheck(torch.ops.minimamba.causal_conv1d_fwd.default, (x, w, None, False))
    g = torch.randn(1, 3, 6)
    checks = ("test_schema", "test_faketensor")
    torch.library.opcheck(
        torch.ops.minimamba.causal_conv1d_bwd.default, (x, w, b, g, True), test_utils=checks
    )
    torch.library.opcheck(
        torch.ops.minimamba.causal_conv1d_bwd.default, (x, w, None, g, True), test_utils=checks
    )


def test_bad_input_names_the_argument():
    x, w = torch.zeros(1, 3, 5), torch.zeros(3, 4)
    with pytest.raises(ValueError, match="x must be"):
        causal_conv1d_fn(torch.zeros(3, 5), w)
    with pytest.raises(ValueError, match="weight must be"):
        causal_conv1d_fn(x, torch.zeros(3, 5))  # d_conv 5 > 4
    with pytest.raises(ValueError, match="weight must be"):
        causal_conv1d_fn(x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="bias must be"):
        causal_conv1d_fn(x, w, torch.zeros(2))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        causal_conv1d_fn(x.long(), w)
    with pytest.raises(TypeError, match="silu must be a bool"):
        causal_conv1d_fn(x, w, None, "silu")
    with pytest.raises(TypeError, match="float64"):
        causal_conv1d_fwd(x.double(), w)
    with pytest.raises(ValueError, match="dout must be"):
        causal_conv1d_bwd(x, w, None, torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="weight must be"):
        causal_conv1d_ref(x, torch.zeros(3, 1, 4))


# --------------------------------------------------------------------------------------------------------
# GPU: Mamba-130M's d_inner = 1536, d_conv = 4.

GPU_TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (1e-2, 1e-2)}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("L", [1, 3, 64, 65, 1000, 4096])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_triton_conv_on_gpu(dtype, L, layout):
    batch, d_inner, K = 2, 1536, 4
    x, w, b = (t.cuda() for t in _inputs(batch, d_inner, L, K, True, layout))
    x = x.to(dtype)
    g = torch.randn(batch, L, d_inner, device="cuda").transpose(1, 2).to(dtype)
    out_ref, dx_ref, dw_ref, db_ref = _ref_grads(
        x.float(), w, b, True, g.float()
    )  # fp32 ref on the same inputs
    out = causal_conv1d_fn(x, w, b)
    leaves = [x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()]
    dx, dw, db = torch.autograd.grad(causal_conv1d_fn(*leaves), leaves, g)
    rtol, atol = GPU_TOL[dtype]
    assert out.dtype == dtype and dx.dtype == dtype and dw.dtype == torch.float32
    check_close("out", out_ref, out.float(), rtol=rtol, atol=atol)
    check_close("dx", dx_ref, dx.float(), rtol=rtol, atol=atol)
    # dw, dbias: sums of batch · L fp32 products of (bf16-rounded) inputs, compared relative to their size
    for name, r, o in (("dw", dw_ref, dw), ("dbias", db_ref, db)):
        check_close(name, r, o, rtol=1e-4, atol=1e-4 * r.abs().max().item() + 1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("launch", [ConvLaunch(64, 64, 8, window=True), ConvLaunch(16, 256, 4, window=True)])
def test_window_backward_on_gpu(dtype, launch):
    """The window backward at the 130M model's width gives the default backward's gradients."""
    x, w, b = (t.cuda() for t in _inputs(2, 1536, 1000, 4, True, "contiguous"))
    x = x.to(dtype)
    g = torch.randn(2, 1536, 1000, device="cuda").to(dtype)
    want = causal_conv1d_bwd(x, w, b, g, True)
    got = causal_conv1d_bwd(x, w, b, g, True, launch=launch)
    rtol, atol = GPU_TOL[dtype]
    check_close("dx", want[0].float(), got[0].float(), rtol=rtol, atol=atol)
    for name, r, o in (("dw", want[1], got[1]), ("dbias", want[2], got[2])):
        check_close(name, r, o, rtol=1e-4, atol=1e-4 * r.abs().max().item() + 1e-6)


@pytest.mark.gpu
def test_torch_compile_fullgraph_on_gpu():
    x, w, b = (t.cuda() for t in _inputs(2, 64, 300, 4, True, "channels_last"))

    def f(x, w, b):
        return causal_conv1d_fn(x * 2, w, b).square().sum()

    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    eager = torch.autograd.grad(f(*leaves), leaves)
    compiled = torch.compile(f, fullgraph=True)
    leaves2 = [t.clone().requires_grad_() for t in (x, w, b)]
    got = torch.autograd.grad(compiled(*leaves2), leaves2)
    for name, e, c in zip(("dx", "dw", "dbias"), eager, got):
        check_close(name, e, c, rtol=1e-5, atol=1e-4)
