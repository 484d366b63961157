"""Every scan and every selective-scan backend against an independent float64 loop written here.

The loop below does not call anything from minimamba.scan: it is the recurrence of Mamba §3.2 (Algorithm 2)
written out step by step, h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t, y_t = C_t · h_t + D u_t, y ← y silu(z).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minimamba import prefix_scan, scan, selective_scan_pytorch
from minimamba.testing import check_close

PYTORCH_BACKENDS = ("ref", "sequential", "hillis_steele", "blelloch", "chunked", "auto")
RAW_SCANS = {
    "sequential": scan.scan_sequential,
    "hillis_steele": scan.scan_hillis_steele,
    "blelloch": scan.scan_blelloch,
    "chunked": scan.scan_chunked,
}


# ---------------------------------------------------------------------------------------------------------
# The independent references


def loop_recurrence(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """h_t = a_t h_{t-1} + b_t along dim -2 in float64: a, b (..., L, N), h0 (..., N)."""
    a, b = a.double(), b.double()
    h = torch.zeros_like(b[..., 0, :]) if h0 is None else h0.double()
    out = []
    for t in range(a.shape[-2]):
        h = a[..., t, :] * h + b[..., t, :]
        out.append(h)
    return torch.stack(out, dim=-2)


def loop_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, h0=None):
    """The selective scan in float64, one (batch, channel) at a time and one step at a time.

    Returns (y: (batch, d_inner, L), h_last: (batch, d_inner, N)). Differentiable (for gradient tests)."""
    u, delta, A, B, C = (x.double() for x in (u, delta, A, B, C))
    batch, d_inner, L = u.shape
    N = A.shape[1]
    dt = delta + (delta_bias.double()[:, None] if delta_bias is not None else 0.0)
    if delta_softplus:
        dt = torch.log1p(torch.exp(dt))  # softplus written out
    ys, lasts = [], []
    for bi in range(batch):
        y_b, last_b = [], []
        for d in range(d_inner):
            if B.dim() == 4:
                g = d // (d_inner // B.shape[1])
                Bd = B[bi, g]  # (N, L)
            else:
                Bd = B[bi]
            Cd = C[bi, d // (d_inner // C.shape[1])] if C.dim() == 4 else C[bi]
            h = h0[bi, d].double() if h0 is not None else torch.zeros(N, dtype=torch.float64)
            y_d = []
            for t in range(L):
                h = torch.exp(dt[bi, d, t] * A[d]) * h + dt[bi, d, t] * Bd[:, t] * u[bi, d, t]
                y_d.append((Cd[:, t] * h).sum())
            y_d = torch.stack(y_d) if L else torch.zeros(0, dtype=torch.float64)
            if D is not None:
                y_d = y_d + D.double()[d] * u[bi, d]
            if z is not None:
                zd = z[bi, d].double()
                y_d = y_d * zd / (1 + torch.exp(-zd))  # silu written out
            y_b.append(y_d)
            last_b.append(h)
        ys.append(torch.stack(y_b))
        lasts.append(torch.stack(last_b))
    return torch.stack(ys), torch.stack(lasts)


def make_inputs(batch, d_inner, L, N, *, groups=None, use_D=False, use_z=False, use_bias=False,
                use_h0=False, seed=0):  # fmt: skip
    """Random float64 inputs; Δ in [0, 0.5), A in (-2.1, -0.1]; groups=None gives 3-D B and C."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    bc_shape = (batch, groups, N, L) if groups else (batch, N, L)
    return {
        "u": r(batch, d_inner, L),
        "delta": 0.5 * torch.rand(batch, d_inner, L, generator=g, dtype=torch.float64),
        "A": -torch.rand(d_inner, N, generator=g, dtype=torch.float64) * 2 - 0.1,
        "B": r(*bc_shape),
        "C": r(*bc_shape),
        "D": r(d_inner) if use_D else None,
        "z": r(batch, d_inner, L) if use_z else None,
        "delta_bias": r(d_inner) - 2 if use_bias else None,
        "h0": r(batch, d_inner, N) if use_h0 else None,
    }


def call(backend: str, args: dict, delta_softplus: bool, return_last_state: bool):
    kw = {k: v for k, v in args.items() if k != "h0"}
    return scan.selective_scan(
        **kw,
        delta_softplus=delta_softplus,
        return_last_state=return_last_state,
        h0=args["h0"],
        backend=backend,
    )


# fp64 inputs: every backend computes in fp64, so only rounding separates it from the loop
TOL64 = {"rtol": 1e-9, "atol": 1e-9}


# ---------------------------------------------------------------------------------------------------------
# The raw scans


@pytest.mark.parametrize("name", list(RAW_SCANS))
@settings(deadline=None, max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    L=st.sampled_from([1, 2, 7, 128, 1000, 4097]),
    N=st.sampled_from([1, 16]),
    lead=st.sampled_from([(), (3,), (2, 1)]),
    use_h0=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_raw_scans_match_loop(name, L, N, lead, use_h0, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(*lead, L, N, generator=g, dtype=torch.float64)  # decays in (0, 1)
    b = torch.randn(*lead, L, N, generator=g, dtype=torch.float64)
    h0 = torch.randn(*lead, N, generator=g, dtype=torch.float64) if use_h0 else None
    check_close(f"{name} L={L}", loop_recurrence(a, b, h0), RAW_SCANS[name](a, b, h0), **TOL64, verbose=False)


@pytest.mark.parametrize("name", list(RAW_SCANS))
def test_raw_scans_time_dim_and_fp32(name):
    """Time along dim 0 (a 1-D scan and a (L, batch, N) one), and in fp32 against the fp64 loop."""
    g = torch.Generator().manual_seed(1)
    a = torch.rand(300, 4, 5, generator=g)
    b = torch.randn(300, 4, 5, generator=g)
    h0 = torch.randn(4, 5, generator=g)
    ref = loop_recurrence(a.movedim(0, -2), b.movedim(0, -2), h0).movedim(-2, 0)
    out = RAW_SCANS[name](a, b, h0, dim=0)
    assert out.dtype == torch.float32
    check_close(f"{name} dim=0 fp32", ref, out, rtol=1e-4, atol=1e-5)
    x = torch.rand(37, dtype=torch.float64)
    y = torch.randn(37, dtype=torch.float64)
    check_close(
        f"{name} 1-D", loop_recurrence(x[:, None], y[:, None], None)[:, 0], RAW_SCANS[name](x, y, dim=0)
    )


@pytest.mark.parametrize("chunk", [1, 3, 64, 5000])
def test_chunked_any_chunk_and_underflow(chunk):
    """Any chunk size (1, not dividing L, larger than L); a that underflow to exactly 0 are harmless."""
    g = torch.Generator().manual_seed(2)
    a = torch.rand(2, 333, 3, generator=g)
    a[:, ::7] = 0.0  # exp(ΔA) underflowed: the state is reset there
    a[:, 100:200] = 1e-30  # products of these underflow to 0 within a chunk
    b = torch.randn(2, 333, 3, generator=g)
    h0 = torch.randn(2, 3, generator=g)
    out = scan.scan_chunked(a, b, h0, chunk=chunk)
    assert torch.isfinite(out).all()
    check_close(f"chunk={chunk}", loop_recurrence(a, b, h0), out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("L", [3, 5, 6, 7, 9, 31, 33, 100, 255, 257])
def test_blelloch_non_power_of_two(L):
    g = torch.Generator().manual_seed(L)
    a = torch.rand(2, L, 3, generator=g, dtype=torch.float64)
    b = torch.randn(2, L, 3, generator=g, dtype=torch.float64)
    h0 = torch.randn(2, 3, generator=g, dtype=torch.float64)
    check_close(f"blelloch L={L}", loop_recurrence(a, b, h0), scan.scan_blelloch(a, b, h0), **TOL64)


@settings(deadline=None, max_examples=50)
@given(st.integers(2, 6), st.integers(0, 2**16))
def test_combine_is_associative(n, seed):
    """(e1 ∘ e2) ∘ e3 == e1 ∘ (e2 ∘ e3), left fold == right fold, and the fold applied to h0 equals the loop."""
    g = torch.Generator().manual_seed(seed)
    els = [(torch.rand(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64))
           for _ in range(n)]  # fmt: skip
    left = els[0]
    for e in els[1:]:
        left = scan.combine(*left, *e)
    right = els[-1]
    for e in reversed(els[:-1]):
        right = scan.combine(*e, *right)
    check_close("a of left vs right fold", left[0], right[0], **TOL64, verbose=False)
    check_close("b of left vs right fold", left[1], right[1], **TOL64, verbose=False)
    h0 = torch.randn(4, generator=g, dtype=torch.float64)
    h = h0
    for a, b in els:
        h = a * h + b
    check_close("fold applied to h0", h, left[0] * h0 + left[1], **TOL64, verbose=False)


def test_combine_is_not_commutative():
    a1, b1, a2, b2 = (torch.tensor([x], dtype=torch.float64) for x in (0.5, 1.0, 0.25, 2.0))
    assert not torch.allclose(scan.combine(a1, b1, a2, b2)[1], scan.combine(a2, b2, a1, b1)[1])


# ---------------------------------------------------------------------------------------------------------
# The selective scan: every backend against the loop


@pytest.mark.parametrize("backend", PYTORCH_BACKENDS)
@settings(deadline=None, max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    L=st.sampled_from([1, 2, 7, 128]),
    N=st.sampled_from([1, 16]),
    d_inner=st.sampled_from([1, 3, 64]),
    flags=st.tuples(*[st.booleans()] * 6),
    groups=st.sampled_from([None, 1, "all", "half"]),
    seed=st.integers(0, 2**16),
)
def test_selective_scan_matches_loop(backend, L, N, d_inner, flags, groups, seed):
    use_D, use_z, use_bias, softplus, use_h0, last = flags
    g = {None: None, 1: 1, "all": d_inner, "half": max(1, d_inner // 2) if d_inner % 2 == 0 else 1}[groups]
    if d_inner == 64 and L == 128:
        L = 33  # keep the float64 loop (one Python step per batch, channel and position) fast
    args = make_inputs(1, d_inner, L, N, groups=g, use_D=use_D, use_z=use_z, use_bias=use_bias,
                       use_h0=use_h0, seed=seed)  # fmt: skip
    y_ref, h_ref = loop_selective_scan(**args, delta_softplus=softplus)
    out = call(backend, args, softplus, last)
    y, h = out if last else (out, None)
    assert y.dtype == torch.float64 and y.shape == y_ref.shape
    check_close(f"{backend} y", y_ref, y, **TOL64, verbose=False)
    if last:
        assert h.dtype == torch.float64
        check_close(f"{backend} h_last", h_ref, h, **TOL64, verbose=False)


@pytest.mark.parametrize("backend", PYTORCH_BACKENDS)
@pytest.mark.parametrize("L", [1000, 4097])
def test_selective_scan_long(backend, L):
    """Long L (the chunked scan pads 4097 to whole chunks) with every option on, batch 2, groups 2."""
    if backend == "ref" and L == 4097:
        pytest.skip("the loop reference itself is covered at L=1000")
    args = make_inputs(2, 2, L, 3, groups=2, use_D=True, use_z=True, use_bias=True, use_h0=True, seed=L)
    y_ref, h_ref = loop_selective_scan(**args, delta_softplus=True)
    y, h = call(backend, args, True, True)
    check_close(f"{backend} y L={L}", y_ref, y, **TOL64)
    check_close(f"{backend} h_last L={L}", h_ref, h, **TOL64)


def test_ref_matches_loop_with_everything():
    """selective_scan_ref itself against the loop written here (the backends are checked separately)."""
    args = make_inputs(2, 6, 50, 4, groups=3, use_D=True, use_z=True, use_bias=True, use_h0=True, seed=7)
    y_ref, h_ref = loop_selective_scan(**args, delta_softplus=True)
    kw = {k: v for k, v in args.items() if k != "h0"}
    y, h = scan.selective_scan_ref(**kw, delta_softplus=True, return_last_state=True, h0=args["h0"])
    check_close("ref y", y_ref, y, **TOL64)
    check_close("ref h_last", h_ref, h, **TOL64)


def test_scan_reexports_the_pieces_it_is_made_of():
    """minimamba.scan keeps every public name of the modules it was split into, as the same objects."""
    for module in (prefix_scan, selective_scan_pytorch):
        for name in module.__all__:
            assert getattr(scan, name) is getattr(module, name), name
            assert name in scan.__all__, name
    assert set(scan.__all__) == {*prefix_scan.__all__, *selective_scan_pytorch.__all__} | {
        "BACKENDS",
        "backend_report",
        "selective_scan",
    }


def test_chunked_large_path_matches_loop():
    """Above the size where the chunked backend stops materializing exp(ΔA) it computes them per step."""
    L = 2048
    d_inner = math.ceil((selective_scan_pytorch._SMALL_SCAN + 1) / (L * 16))
    args = make_inputs(1, d_inner, L, 16, use_D=True, use_h0=True, seed=3)
    ref, h_ref = scan.selective_scan_ref(  # checked against the loop above; the loop is too slow here
        **{k: v for k, v in args.items() if k != "h0"}, return_last_state=True, h0=args["h0"]
    )
    small = make_inputs(1, 2, L, 16, use_D=True, use_h0=True, seed=3)
    y_small_ref, _ = loop_selective_scan(**small)
    check_close("ref at L=2048 vs loop", y_small_ref, scan.selective_scan_ref(
        **{k: v for k, v in small.items() if k != "h0"}, h0=small["h0"]), **TOL64)  # fmt: skip
    y, h = call("chunked", args, False, True)
    check_close("chunked (per-step path) y", ref, y, **TOL64)
    check_close("chunked (per-step path) h_last", h_ref, h, **TOL64)


@pytest.mark.parametrize("backend", PYTORCH_BACKENDS)
@pytest.mark.parametrize(
    "dtype, rtol, atol",
    # y is rounded to the 16-bit type at the end (compute is fp32): the error is that rounding, about
    # 2^-11 (fp16) or 2^-8 (bf16) relative, plus the inputs' own rounding amplified by the scan
    [(torch.float16, 1e-2, 1e-2), (torch.bfloat16, 5e-2, 5e-2), (torch.float32, 1e-4, 1e-4)],
)
def test_low_precision_inputs(backend, dtype, rtol, atol):
    args = make_inputs(2, 3, 200, 16, groups=3, use_D=True, use_z=True, use_bias=True, use_h0=True, seed=5)
    low = {k: (v.to(dtype) if v is not None else None) for k, v in args.items()}
    y_ref, h_ref = loop_selective_scan(**low, delta_softplus=True)  # the same (rounded) inputs, in fp64
    y, h = call(backend, low, True, True)
    assert y.dtype == dtype, "y comes back in u's dtype"
    assert h.dtype == torch.float32, "the state is kept in fp32 whatever the input dtype"
    check_close(f"{backend} {dtype} y", y_ref, y, rtol=rtol, atol=atol)
    check_close(f"{backend} {dtype} h_last", h_ref, h, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------
# Gradients


GRAD_INPUTS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0")


@pytest.mark.parametrize("backend", PYTORCH_BACKENDS)
@pytest.mark.parametrize("groups", [None, 2])
def test_gradients_of_every_input(backend, groups):
    args = make_inputs(
        2, 4, 19, 3, groups=groups, use_D=True, use_z=True, use_bias=True, use_h0=True, seed=11
    )
    ref_leaves = {k: v.clone().requires_grad_(True) for k, v in args.items()}
    leaves = {k: v.clone().requires_grad_(True) for k, v in args.items()}
    g = torch.Generator().manual_seed(12)
    dy = torch.randn(2, 4, 19, generator=g, dtype=torch.float64)
    dh = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    y_ref, h_ref = loop_selective_scan(**ref_leaves, delta_softplus=True)
    ((y_ref * dy).sum() + (h_ref * dh).sum()).backward()
    y, h = call(backend, leaves, True, True)
    ((y * dy).sum() + (h * dh).sum()).backward()
    for name in GRAD_INPUTS:
        check_close(f"{backend} d{name}", ref_leaves[name].grad, leaves[name].grad, **TOL64)


@pytest.mark.parametrize("name", list(RAW_SCANS))
def test_raw_scan_gradients(name):
    g = torch.Generator().manual_seed(4)
    a = torch.rand(3, 23, 2, generator=g, dtype=torch.float64)
    b = torch.randn(3, 23, 2, generator=g, dtype=torch.float64)
    h0 = torch.randn(3, 2, generator=g, dtype=torch.float64)
    dh = torch.randn(3, 23, 2, generator=g, dtype=torch.float64)
    ref = [x.clone().requires_grad_(True) for x in (a, b, h0)]
    out = [x.clone().requires_grad_(True) for x in (a, b, h0)]
    (loop_recurrence(*ref) * dh).sum().backward()
    (RAW_SCANS[name](*out) * dh).sum().backward()
    for label, r, o in zip(("da", "db", "dh0"), ref, out):
        check_close(f"{name} {label}", r.grad, o.grad, **TOL64)


@pytest.mark.parametrize("backend", PYTORCH_BACKENDS)
def test_gradcheck_tiny(backend):
    args = make_inputs(1, 2, 5, 2, groups=2, use_D=True, use_z=True, use_bias=True, use_h0=True, seed=13)
    names = list(args)
    leaves = tuple(args[k].clone().requires_grad_(True) for k in names)

    def fn(*xs):
        y, h = call(backend, dict(zip(names, xs)), True, True)
        return y, h

    assert torch.autograd.gradcheck(fn, leaves)


@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_gradcheck_chunked_raw(chunk):
    g = torch.Generator().manual_seed(chunk)
    xs = (torch.rand(2, 9, 2, generator=g, dtype=torch.float64), torch.randn(2, 9, 2, generator=g,
          dtype=torch.float64), torch.randn(2, 2, generator=g, dtype=torch.float64))  # fmt: skip
    assert torch.autograd.gradcheck(
        lambda a, b, h0: scan.scan_chunked(a, b, h0, chunk=chunk), tuple(x.requires_grad_(True) for x in xs)
    )


def test_softplus_matches_torch():
    """The loop's written-out softplus equals F.softplus (so the loop is the recurrence we mean)."""
    x = torch.linspace(-5, 5, 11, dtype=torch.float64)
    check_close("softplus", F.softplus(x), torch.log1p(torch.exp(x)), **TOL64)


# ---------------------------------------------------------------------------------------------------------
# The benchmark's bookkeeping and figure (no timing here: a made-up result)


def fake_result() -> dict:
    rows = []
    for shape in ((2, 64, 16), (8, 256, 16)):
        for L in (256, 1024):
            for mode in ("fwd", "fwd+bwd"):
                for impl, sec in (("ref", 1.0), ("auto", 0.25), ("mambapy", 0.5), ("blelloch", None)):
                    rows.append({"batch": shape[0], "d_inner": shape[1], "N": shape[2], "L": L, "mode": mode,
                                 "impl": impl, "seconds": sec and sec * L / 256, "runs": 5 if sec else 0,
                                 "note": "" if sec else "skip (memory)", "roofline_s": 1e-3 * L / 256})  # fmt: skip
    return {"device": "cpu: test", "threads": 2, "torch": torch.__version__, "rows": rows}


def test_bench_roofline_bytes_count():
    from minimamba.bench import roofline_bytes

    # forward reads u, Δ, z and B, C and writes y: 4 (batch, d_inner, L) and 2 (batch, N, L) fp32 tensors
    assert roofline_bytes(2, 3, 5, 7, backward=False) == 4 * (4 * 2 * 3 * 7 + 2 * 2 * 5 * 7)
    assert roofline_bytes(2, 3, 5, 7, backward=True) == 4 * (11 * 2 * 3 * 7 + 6 * 2 * 5 * 7)


def test_bench_targets_and_figure():
    import matplotlib.pyplot as plt

    from minimamba.bench import check_targets, table
    from minimamba.viz.scan import plot_scan_cpu, series

    result = fake_result()
    lines = check_targets(result)
    assert lines and all(line.startswith("PASS") for line in lines)
    assert "skip (memory)" in table(result)
    s = series(result, (2, 64, 16), "fwd")
    assert s["auto"] == ([256, 1024], [0.25, 1.0]) and "blelloch" not in s and "roofline" in s
    fig = plot_scan_cpu(result)
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert ax.get_xlabel() == "sequence length L" and ax.get_ylabel() == "median time (s)"
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    plt.close(fig)


@pytest.mark.parametrize("grad_mode", [True, False])
def test_chunked_per_step_path_small(monkeypatch, grad_mode):
    """The per-step path of the chunked backend (used above _SMALL_SCAN) on a small case: values and, with
    grad mode on, the gradient of every input against the loop."""
    monkeypatch.setattr(selective_scan_pytorch, "_SMALL_SCAN", 0)
    args = make_inputs(2, 4, 19, 3, groups=2, use_D=True, use_z=True, use_bias=True, use_h0=True, seed=21)
    ref_leaves = {k: v.clone().requires_grad_(True) for k, v in args.items()}
    leaves = {k: v.clone().requires_grad_(grad_mode) for k, v in args.items()}
    y_ref, h_ref = loop_selective_scan(**ref_leaves, delta_softplus=True)
    with torch.set_grad_enabled(grad_mode):
        y, h = call("chunked", leaves, True, True)
    check_close("per-step y", y_ref, y, **TOL64)
    check_close("per-step h_last", h_ref, h, **TOL64)
    if grad_mode:
        (y_ref.sum() + h_ref.sum()).backward()
        (y.sum() + h.sum()).backward()
        for name in GRAD_INPUTS:
            check_close(f"per-step d{name}", ref_leaves[name].grad, leaves[name].grad, **TOL64)
