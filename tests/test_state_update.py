"""The fused one-token state update (kernels/state_update) against a float64 loop written here.

On CPU the kernel runs in Triton's interpreter (set up by ``import minimamba`` in conftest.py) in blocks of
2 channels, so d_inner = 3 and 5 run 2 and 3 programs with a half-empty last one; N = 1, 3 and 16 leave
0, 1 and 0 padded states. Every interpreted program costs about 20 ms: the shapes stay tiny.

Tolerances, against float64 on the same (rounded) inputs: the state and fp32 y within rtol 1e-5 (fp32
arithmetic on a handful of terms: errors of a few 1e-7), plus an atol of 1e-6 of the largest value for
entries that cancel to near zero. A bf16 y has 8 significant bits: rounded to nearest (as PyTorch and the
GPU do) it is within 2⁻⁸ of its fp32 value, truncated within 2⁻⁷ — and Triton 3.7's interpreter truncates
fp32 → bf16 casts (its ``cast_impl`` passes no rounding mode). So bf16 y within rtol 2⁻⁷ of float64, and
two bf16 outputs of nearly equal fp32 values (one rounded, one truncated) within 1.5 ulps, rtol 2⁻⁶.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from minimamba.kernels.state_update import (
    selective_state_update,
    selective_state_update_ref,
    state_update,
)

from minimamba.block import MambaMixer
from minimamba.config import MambaConfig
from minimamba.scan import selective_scan_ref
from minimamba.testing import check_close

STATE_RTOL, Y32_RTOL, Y16_RTOL, Y16_PAIR_RTOL, ATOL = 1e-5, 1e-5, 2.0**-7, 2.0**-6, 1e-6


def step_loop(ssm_state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=True):
    """One step as the paper writes it, channel by channel and state by state, in float64 Python numbers.
    Returns (the new state, y), float64 tensors."""
    h = ssm_state
    batch, d_inner, N = h.shape
    h_new = torch.zeros(batch, d_inner, N, dtype=torch.float64)
    y = torch.zeros(batch, d_inner, dtype=torch.float64)
    for b in range(batch):
        for d in range(d_inner):
            delta = float(dt[b, d]) + (float(dt_bias[d]) if dt_bias is not None else 0.0)
            if dt_softplus:
                delta = math.log1p(math.exp(delta))
            xv = float(x[b, d])
            acc = 0.0
            for n in range(N):
                hn = math.exp(delta * float(A[d, n])) * float(h[b, d, n]) + delta * float(B[b, n]) * xv
                h_new[b, d, n] = hn
                acc += float(C[b, n]) * hn
            if D is not None:
                acc += float(D[d]) * xv
            if z is not None:
                zv = float(z[b, d])
                acc *= zv / (1.0 + math.exp(-zv))
            y[b, d] = acc
    return h_new, y


def make_inputs(batch, d_inner, N, dtype=torch.float32, seed=0):
    """Mamba's distributions: x, z, B, C, h ~ N(0, 1); dt ~ 0.5 N(0, 1); dt_bias = softplus⁻¹ of Δ in
    [1e-3, 1e-1]; A = −(1..N) jittered; D ≈ 1. x, dt, z, B, C in ``dtype``; the state, A, D, dt_bias fp32."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    dt_init = torch.empty(d_inner).uniform_(1e-3, 1e-1, generator=g)
    return {
        "ssm_state": r(batch, d_inner, N),
        "x": r(batch, d_inner).to(dtype),
        "dt": (0.5 * r(batch, d_inner)).to(dtype),
        "A": -torch.exp(torch.log(torch.arange(1, N + 1).float()) + 0.1 * r(d_inner, N)),
        "B": r(batch, N).to(dtype),
        "C": r(batch, N).to(dtype),
        "D": 1 + 0.1 * r(d_inner),
        "z": r(batch, d_inner).to(dtype),
        "dt_bias": dt_init + torch.log(-torch.expm1(-dt_init)),
    }


@pytest.fixture
def kernel_only(monkeypatch):
    """The wrapper must launch the kernel: the reference, its fallback, fails the test if it is called."""

    def no_fallback(*args, **kwargs):
        raise AssertionError("selective_state_update fell back to the PyTorch reference")

    monkeypatch.setattr(state_update, "selective_state_update_ref", no_fallback)


def compare(args: dict, dt_softplus=True, fn=selective_state_update):
    """Run ``fn`` on a copy of the state; check the state (updated in place) and y against step_loop."""
    h = args["ssm_state"].clone()
    ptr = h.data_ptr()
    h_ref, y_ref = step_loop(**args, dt_softplus=dt_softplus)
    y = fn(**{**args, "ssm_state": h}, dt_softplus=dt_softplus)
    x = args["x"]
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert h.data_ptr() == ptr and h.dtype == args["ssm_state"].dtype  # in place
    check_close("state", h_ref, h, rtol=STATE_RTOL, atol=ATOL * (h_ref.abs().max().item() + 1e-30))
    y_rtol = Y32_RTOL if x.dtype in (torch.float32, torch.float64) else Y16_RTOL
    check_close("y", y_ref, y, rtol=y_rtol, atol=ATOL * (y_ref.abs().max().item() + 1e-30))
    return h, y


# --------------------------------------------------------------------------------------------------------
# One step against the float64 loop.


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("N", [1, 3, 16])
@pytest.mark.parametrize("d_inner", [1, 3, 5])
@pytest.mark.parametrize("batch", [1, 3])
def test_shapes_and_dtypes(batch, d_inner, N, dtype, kernel_only):
    compare(make_inputs(batch, d_inner, N, dtype, seed=batch * 100 + d_inner * 10 + N))


@pytest.mark.parametrize("use_D", [True, False], ids=["D", "no-D"])
@pytest.mark.parametrize("use_z", [True, False], ids=["z", "no-z"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("softplus", [True, False], ids=["softplus", "no-softplus"])
def test_options(use_D, use_z, use_bias, softplus, kernel_only):
    args = make_inputs(2, 3, 3, seed=7)
    if not softplus:  # Δ = dt + dt_bias must still be positive for a decaying state
        args["dt"] = args["dt"].abs()
        args["dt_bias"] = F.softplus(args["dt_bias"])
    for name, use in (("D", use_D), ("z", use_z), ("dt_bias", use_bias)):
        if not use:
            args[name] = None
    compare(args, dt_softplus=softplus)


def test_softplus_threshold_and_large_steps(kernel_only):
    """dt + dt_bias from -30 to 30: PyTorch's softplus returns its input above 20, the kernel too."""
    args = make_inputs(1, 5, 3, seed=3)
    args["dt"] = torch.tensor([[-30.0, -5.0, 19.5, 20.5, 30.0]])
    args["dt_bias"] = torch.zeros(5)
    compare(args)


def test_reference_against_loop():
    """The PyTorch reference (the fallback) against the same loop, fp32 and bf16 inputs."""
    for dtype in (torch.float32, torch.bfloat16):
        compare(make_inputs(3, 5, 3, dtype, seed=11), fn=selective_state_update_ref)


def test_float64_state_uses_the_reference():
    """A float64 model keeps a float64 state: the wrapper runs the reference, in float64."""
    args = {k: v.double() for k, v in make_inputs(2, 3, 3, seed=5).items()}
    assert not state_update.kernel_runs_here(args["ssm_state"])
    h = args["ssm_state"].clone()
    h_ref, y_ref = step_loop(**args)
    y = selective_state_update(**{**args, "ssm_state": h})
    assert y.dtype == torch.float64
    check_close("state", h_ref, h, rtol=1e-12, atol=1e-14)
    check_close("y", y_ref, y, rtol=1e-12, atol=1e-14)


def test_strided_views_and_state_in_a_larger_cache(kernel_only):
    """x, z halves of one in_proj output, B, C slices of one x_proj output, A and the state non-contiguous
    views: read through their strides, and only the state's own entries written."""
    batch, d_inner, N = 2, 3, 3
    args = make_inputs(batch, d_inner, N, seed=13)
    xz = torch.cat([args["x"], args["z"]], dim=1)  # (batch, 2·d_inner)
    dbc = torch.cat([args["dt"], args["B"], args["C"]], dim=1)  # (batch, d_inner + 2N)
    big = torch.randn(batch, N + 2, d_inner + 1)  # the state as a transposed window into a larger buffer
    view = big[:, 1 : N + 1, :d_inner].transpose(1, 2)  # (batch, d_inner, N), strides (·, 1, d_inner + 1)
    view.copy_(args["ssm_state"])
    outside = big.clone()
    A_t = args["A"].t().contiguous().t()  # (d_inner, N) column-major
    strided = dict(
        x=xz[:, :d_inner], z=xz[:, d_inner:], dt=dbc[:, :d_inner], B=dbc[:, d_inner : d_inner + N],
        C=dbc[:, d_inner + N :], A=A_t,
    )  # fmt: skip
    assert not any(t.is_contiguous() for t in strided.values())
    h_ref, y_ref = step_loop(**args)
    y = selective_state_update(**{**args, **strided, "ssm_state": view})
    check_close("state", h_ref, view, rtol=STATE_RTOL, atol=ATOL * h_ref.abs().max().item())
    check_close("y", y_ref, y, rtol=Y32_RTOL, atol=ATOL * y_ref.abs().max().item())
    outside[:, 1 : N + 1, :d_inner] = big[:, 1 : N + 1, :d_inner]  # the window may change, nothing else
    assert torch.equal(big, outside)


def test_empty_batch(kernel_only):
    args = make_inputs(0, 3, 2)
    y = selective_state_update(**args)
    assert y.shape == (0, 3)


# --------------------------------------------------------------------------------------------------------
# The step is the scan's recurrence, and it is what MambaMixer.step computes.


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_steps_in_a_row_equal_the_scan(dtype, kernel_only):
    """L steps from h0, token by token, give the y and the last state of selective_scan_ref over the
    same L tokens."""
    batch, d_inner, N, L = 2, 3, 4, 5
    seq = [make_inputs(batch, d_inner, N, dtype, seed=20 + t) for t in range(L)]
    first = seq[0]
    h0 = first["ssm_state"]
    u, delta, z = (torch.stack([s[k] for s in seq], dim=-1) for k in ("x", "dt", "z"))  # (batch, d_inner, L)
    B, C = (torch.stack([s[k] for s in seq], dim=-1) for k in ("B", "C"))  # (batch, N, L)
    params = {k: first[k] for k in ("A", "D", "dt_bias")}
    y_scan, h_scan = selective_scan_ref(
        u, delta, params["A"], B, C, params["D"], z, params["dt_bias"], delta_softplus=True,
        return_last_state=True, h0=h0,
    )  # fmt: skip
    h = h0.clone()
    ys = [
        selective_state_update(h, u[..., t], delta[..., t], B=B[..., t], C=C[..., t], z=z[..., t], **params)
        for t in range(L)
    ]
    y = torch.stack(ys, dim=-1)
    assert y.dtype == dtype
    check_close("h_last", h_scan, h, rtol=STATE_RTOL, atol=ATOL * h_scan.abs().max().item())
    # both make y in dtype: in bf16 the scan rounds, the interpreted kernel truncates
    y_rtol = Y32_RTOL if dtype == torch.float32 else Y16_PAIR_RTOL
    check_close("y", y_scan, y, rtol=y_rtol, atol=ATOL * y_scan.float().abs().max().item())


def test_matches_mamba_mixer_step(kernel_only):
    """The SSM part of MambaMixer.step, done by the kernel: the same output and the same new state."""
    torch.manual_seed(1)
    mixer = MambaMixer(
        MambaConfig(d_model=3, n_layer=1, vocab_size=4, d_state=3, expand=1, dt_rank=2)
    )  # d_inner = 3
    batch = 2
    cache = mixer.init_cache(batch)
    cache.conv_state.normal_()
    cache.ssm_state.normal_()
    hidden = torch.randn(batch, 3)
    ours = mixer.init_cache(batch)
    ours.conv_state.copy_(cache.conv_state)
    ours.ssm_state.copy_(cache.ssm_state)
    with torch.no_grad():
        out_ref = mixer.step(hidden, cache)
        # the step up to the SSM, as MambaMixer.step does it: in_proj, the conv at the newest position, SiLU
        x, z = mixer.in_proj(hidden).chunk(2, dim=-1)  # (batch, d_inner) each
        window = torch.cat([ours.conv_state[..., 1:], x[..., None]], dim=-1)  # (batch, d_inner, d_conv)
        x = F.silu((window * mixer.conv1d.weight[:, 0, :]).sum(-1) + mixer.conv1d.bias)
        x_dbl = mixer.x_proj(x)  # (batch, R + 2N)
        dt, B, C = torch.split(x_dbl, [mixer.dt_rank, mixer.d_state, mixer.d_state], dim=-1)
        dt = dt @ mixer.dt_proj.weight.t()  # (batch, d_inner), the bias left to the kernel
        A = -torch.exp(mixer.A_log)
        y = selective_state_update(ours.ssm_state, x, dt, A, B, C, mixer.D, z, mixer.dt_proj.bias)
        out = mixer.out_proj(y)
    check_close("ssm_state", cache.ssm_state, ours.ssm_state, rtol=1e-5, atol=1e-6)
    check_close("out", out_ref, out, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------------
# Bad input.


BAD = {
    "state-not-a-tensor": (dict(ssm_state=[[0.0]]), TypeError, "ssm_state must be a torch.Tensor, got list"),
    "state-rank": (dict(ssm_state=torch.zeros(2, 3)), ValueError, r"ssm_state must have shape \(batch, d_inner, N\)"),
    "state-bf16": (dict(ssm_state=torch.zeros(2, 3, 4, dtype=torch.bfloat16)), TypeError, "ssm_state must be float32"),
    "state-no-states": (dict(ssm_state=torch.zeros(2, 3, 0)), ValueError, r"at least one state \(N >= 1\)"),
    "x-shape": (dict(x=torch.zeros(2, 4)), ValueError, r"x must have shape \(batch, d_inner\) = \(2, 3\), got \(2, 4\)"),
    "x-int": (dict(x=torch.zeros(2, 3, dtype=torch.int32)), TypeError, "x must be float16, bfloat16, float32 or"),
    "dt-shape": (dict(dt=torch.zeros(3)), ValueError, r"dt must have shape \(batch, d_inner\) = \(2, 3\), got \(3,\)"),
    "A-shape": (dict(A=torch.zeros(3, 5)), ValueError, r"A must have shape \(d_inner, N\) = \(3, 4\), got \(3, 5\)"),
    "B-groups": (dict(B=torch.zeros(2, 1, 4)), ValueError, r"B must have shape \(batch, N\) = \(2, 4\), got \(2, 1, 4\)"),
    "C-batch": (dict(C=torch.zeros(1, 4)), ValueError, r"C must have shape \(batch, N\) = \(2, 4\), got \(1, 4\)"),
    "D-shape": (dict(D=torch.zeros(4)), ValueError, r"D must have shape \(d_inner,\) = \(3,\), got \(4,\)"),
    "z-shape": (dict(z=torch.zeros(3, 2)), ValueError, r"z must have shape \(batch, d_inner\) = \(2, 3\), got \(3, 2\)"),
    "bias-float": (dict(dt_bias=1.0), TypeError, "dt_bias must be a torch.Tensor, got float"),
    "A-device": (dict(A=torch.zeros(3, 4, device="meta")), ValueError, r"A is on meta, expected the device of ssm_state"),
    "softplus-str": (dict(dt_softplus="yes"), TypeError, "dt_softplus must be a bool, got str"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_raise_clear_errors(case):
    changes, error, match = BAD[case]
    args = {**make_inputs(2, 3, 4), **changes}
    for fn in (selective_state_update, selective_state_update_ref):
        h = args["ssm_state"]
        before = h.clone() if isinstance(h, torch.Tensor) else None
        with pytest.raises(error, match=match):
            fn(**args)
        if before is not None and before.numel():
            assert torch.equal(h, before)  # nothing computed, the state untouched


# --------------------------------------------------------------------------------------------------------
# Real sizes on a GPU (skipped without CUDA): the kernel against the reference.


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("batch", [1, 64])
def test_gpu_real_sizes(batch, dtype):
    d_inner, N = 1536, 16
    args = {k: v.cuda() for k, v in make_inputs(batch, d_inner, N, dtype, seed=batch).items()}
    xz = torch.cat([args["x"], args["z"]], dim=1)  # x and z as halves of one in_proj output, as in a model
    args["x"], args["z"] = xz[:, :d_inner], xz[:, d_inner:]
    h, h_ref = args["ssm_state"].clone(), args["ssm_state"].clone()
    for _ in range(3):  # a few tokens: the state carries over
        y = selective_state_update(**{**args, "ssm_state": h})
        y_ref = selective_state_update_ref(**{**args, "ssm_state": h_ref})
        assert y.dtype == dtype and y.shape == (batch, d_inner)
        check_close("state", h_ref, h, rtol=STATE_RTOL, atol=ATOL * h_ref.abs().max().item())
        # fp32: different exp and summation order; bf16: both round y to nearest, one ulp apart at most
        y_rtol = Y32_RTOL if dtype == torch.float32 else 2.0**-7
        check_close("y", y_ref, y, rtol=y_rtol, atol=ATOL * y_ref.float().abs().max().item())
