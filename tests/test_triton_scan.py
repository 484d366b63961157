"""The fused Triton selective scan (kernels/selective_scan) against a float64 loop written here.

Runs on CPU through Triton's interpreter (set up by ``import minimamba`` in conftest.py), so every shape is
tiny: the interpreter costs ~150-200 µs per scanned element. On the CPU the kernels use tiles of 4 steps,
saved states every 8 steps, segments of 16 steps and blocks of 2 channels (``fwd.default_config``), so
L = 1, 7, 8, 9, 17, 33 sit below, on and above every edge (17 and 33 run 2 and 3 segments: the segment
pass and the combination of its summaries), and d_inner = 3 leaves a half-empty channel block.

The forward has two kernels: the channel kernel (fwd.py) and the kernel parallel along time
(fwd_time.py, tiles of 16 steps here: L = 17 and 33 carry the state across 2 and 3 tiles). Tests taking
the ``forward_kernel`` fixture run with each. Every test runs twice, with the host-time layer
(fast_launch.py) switched on and off. tests/test_triton_scan_gpu.py repeats this at real sizes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from minimamba.kernels.selective_scan import bwd as kbwd
from minimamba.kernels.selective_scan import fast_launch, selective_scan_fn
from minimamba.kernels.selective_scan import fwd as kfwd
from minimamba.kernels.selective_scan.fwd_time import selective_scan_fwd_time_kernel
from minimamba.kernels.selective_scan.layout import bc_layouts_kernel

from minimamba.scan import selective_scan_ref
from minimamba.testing import check_close, rel_error

pytestmark = pytest.mark.usefixtures(
    "launch_path"
)  # every test with the fast launch on and off (conftest.py)

FWD_TOL = 1e-5  # fp32 against float64, relative (norm) error
GRAD_TOL = 1e-4


FORWARD_KERNELS = (kfwd.selective_scan_fwd_kernel, selective_scan_fwd_time_kernel)


def forwards(launched: list) -> list:
    """The forward kernels among ``launched``, in order."""
    return [k for k, _, _ in launched if k in FORWARD_KERNELS]


@pytest.fixture(params=["channel", "time"])
def forward_kernel(request, monkeypatch, launches):
    """Run the test with the channel kernel, then with the kernel parallel along time (and check that the
    forwards launched were that kernel)."""
    time = request.param == "time"
    monkeypatch.setitem(kfwd.OVERRIDES, "time", time)
    yield request.param
    want = selective_scan_fwd_time_kernel if time else kfwd.selective_scan_fwd_kernel
    assert forwards(launches) and all(fn is want for fn in forwards(launches))


def scan_loop(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, h0=None):
    """The selective scan as the paper writes it, one step at a time, in float64 (differentiable)."""
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    batch, d_inner, L = u.shape
    N = A.shape[1]
    if B.dim() == 3:  # one group for every channel
        B, C = B[:, None], C[:, None]
    per_group = d_inner // B.shape[1]
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = torch.zeros(batch, d_inner, N, dtype=torch.float64, device=u.device) if h0 is None else h0.double()
    ys = []
    for t in range(L):
        Bt = B[:, torch.arange(d_inner, device=u.device) // per_group, :, t]  # (batch, d_inner, N)
        Ct = C[:, torch.arange(d_inner, device=u.device) // per_group, :, t]
        dt = delta[:, :, t, None]  # (batch, d_inner, 1)
        h = torch.exp(dt * A.double()) * h + dt * Bt * u[:, :, t, None]
        y = (h * Ct).sum(-1)  # (batch, d_inner)
        if D is not None:
            y = y + D.double() * u[:, :, t]
        if z is not None:
            y = y * F.silu(z[:, :, t].double())
        ys.append(y)
    y = torch.stack(ys, dim=-1) if L else u.new_zeros(batch, d_inner, 0)
    return y, h


def make_inputs(batch, d_inner, L, N, groups=0, dtype=torch.float32, seed=0):
    """The benchmark's distributions: u, z, B, C ~ N(0,1); delta = 0.5 N(0,1); A < 0; D ≈ 1."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    bc = (batch, groups, N, L) if groups else (batch, N, L)
    dt_init = torch.empty(d_inner).uniform_(1e-3, 1e-1, generator=g)
    return {
        "u": r(batch, d_inner, L).to(dtype),
        "delta": (0.5 * r(batch, d_inner, L)).to(dtype),
        "A": -torch.exp(torch.log(torch.arange(1, N + 1).float()) + 0.1 * r(d_inner, N)),
        "B": r(*bc).to(dtype),
        "C": r(*bc).to(dtype),
        "D": 1 + 0.1 * r(d_inner),
        "z": r(batch, d_inner, L).to(dtype),
        "delta_bias": dt_init + torch.log(-torch.expm1(-dt_init)),  # softplus⁻¹
        "h0": r(batch, d_inner, N),
    }


def run_and_compare(
    batch, d_inner, L, N, *, groups=0, use_D=True, use_z=True, use_bias=True, softplus=True, use_h0=False,
    last_state=True, grads=True,
):  # fmt: skip
    x = make_inputs(batch, d_inner, L, N, groups)
    if not use_D:
        x["D"] = None
    if not use_z:
        x["z"] = None
    if not use_bias:
        x["delta_bias"] = None
    if not use_h0:
        x["h0"] = None
    if not softplus:  # without softplus Δ must still be positive for a decaying state
        x["delta"] = x["delta"].abs()
        if x["delta_bias"] is not None:
            x["delta_bias"] = F.softplus(x["delta_bias"])
    names = [k for k, v in x.items() if v is not None]
    leaves = {k: x[k].clone().requires_grad_(grads) for k in names}
    args = {k: leaves.get(k) for k in x}
    ref_leaves = {k: x[k].double().requires_grad_(grads) for k in names}
    ref_args = {k: ref_leaves.get(k) for k in x}

    out = selective_scan_fn(
        args["u"], args["delta"], args["A"], args["B"], args["C"], args["D"], args["z"],
        args["delta_bias"], softplus, last_state, h0=args["h0"],
    )  # fmt: skip
    y, h_last = out if last_state else (out, None)
    y_ref, h_ref = scan_loop(**ref_args, delta_softplus=softplus)
    assert y.dtype == x["u"].dtype and y.shape == (batch, d_inner, L)
    check_close("y", y_ref, y, rtol=1e-4, atol=1e-5 * (y_ref.abs().max().item() + 1e-30))
    assert rel_error(y_ref, y) <= FWD_TOL
    if last_state:
        assert h_last.dtype == torch.float32 and h_last.shape == (batch, d_inner, N)
        assert rel_error(h_ref, h_last) <= FWD_TOL
    if not grads:
        return
    gen = torch.Generator().manual_seed(1)
    dy = torch.randn(y.shape, generator=gen)
    loss, loss_ref = (y * dy).sum(), (y_ref * dy.double()).sum()
    if last_state:
        dh = torch.randn(h_last.shape, generator=gen)
        loss, loss_ref = loss + (h_last * dh).sum(), loss_ref + (h_ref * dh.double()).sum()
    got = torch.autograd.grad(loss, [leaves[k] for k in names])
    want = torch.autograd.grad(loss_ref, [ref_leaves[k] for k in names])
    for k, a, b in zip(names, got, want):
        assert a.shape == x[k].shape and a.dtype == x[k].dtype, k
        scale = b.abs().max().item() + 1e-30
        check_close(f"d{k}", b, a, rtol=1e-3, atol=1e-4 * scale)
        assert rel_error(b, a) <= GRAD_TOL, k


@pytest.mark.parametrize("L", [1, 7, 8, 9, 17, 33])
def test_lengths_around_block_edges(L, forward_kernel):
    run_and_compare(1, 3, L, 4)


def test_whole_tiles_take_the_unmasked_path(forward_kernel):
    """L a multiple of 4, d_inner of the channel block, N a power of two: the backward loads without masks."""
    run_and_compare(1, 4, 16, 4, use_h0=True)


def test_initial_state_and_groups(forward_kernel):
    run_and_compare(2, 4, 9, 3, groups=2, use_h0=True)


def test_plain_scan_without_options(forward_kernel):
    """No D, no z, no delta_bias, no softplus, y only: the bare recurrence."""
    run_and_compare(2, 3, 10, 2, use_D=False, use_z=False, use_bias=False, softplus=False, last_state=False)


def test_one_state_one_group_per_channel(forward_kernel):
    run_and_compare(1, 3, 11, 1, groups=3, use_z=False, use_h0=True)


def test_d_without_z_bias_without_softplus(forward_kernel):
    run_and_compare(1, 2, 9, 4, use_z=False, softplus=False, use_h0=True)


@pytest.mark.parametrize(
    "launch",
    [dict(block_d=4, seg_len=8, time=False), dict(time=True, time_block_d=4, time_block_t=8)],
    ids=["channel-segments-of-8", "time-tiles-of-8"],
)
def test_launch_functions_directly(launch):
    """Blocks of 4 channels (two blocks for 5 channels), segments (or tiles) of 8 steps: the saved states
    are the states entering every 8 steps, and the backward restarts from them."""
    x = make_inputs(1, 5, 13, 2, groups=1)
    dy = torch.randn(1, 5, 13)
    kw = dict(D=x["D"], z=x["z"], delta_bias=x["delta_bias"], h0=x["h0"], delta_softplus=True)
    Bt, Ct = (x[k].transpose(-1, -2).contiguous() for k in ("B", "C"))  # the backward's (batch, groups, L, N)
    y, h_last, h_chunks = kfwd.selective_scan_fwd(
        x["u"], x["delta"], x["A"], x["B"], x["C"], **kw, save_chunks=True, **launch
    )
    y_ref, h_ref = scan_loop(x["u"], x["delta"], x["A"], x["B"], x["C"], **kw)
    assert rel_error(y_ref, y) <= FWD_TOL and rel_error(h_ref, h_last) <= FWD_TOL
    assert h_chunks.shape == (1, 2, 2, 5)  # the states entering steps 0 and 8, (batch, chunk, N, d_inner)
    _, h8_ref = scan_loop(*(x[k][..., :8] for k in ("u", "delta")), x["A"], x["B"][..., :8],
                          x["C"][..., :8], **kw)  # fmt: skip
    states = h_chunks.transpose(2, 3)  # (batch, chunk, d_inner, N)
    assert rel_error(x["h0"], states[:, 0]) == 0 and rel_error(h8_ref, states[:, 1]) <= FWD_TOL
    bwd_launch = {k: v for k, v in launch.items() if k in ("block_d", "seg_len")}
    du, *_ = kbwd.selective_scan_bwd(
        x["u"], x["delta"], x["A"], Bt, Ct, x["D"], x["z"], x["delta_bias"], h_chunks, dy, None,
        True, True, **bwd_launch,
    )  # fmt: skip
    u = x["u"].double().requires_grad_()
    y_ref, _ = scan_loop(u, x["delta"], x["A"], x["B"], x["C"], **kw)
    (du_ref,) = torch.autograd.grad((y_ref * dy.double()).sum(), [u])
    assert rel_error(du_ref, du) <= GRAD_TOL


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_time_kernel_matches_channel_kernel(dtype):
    """The two forwards on the same inputs: 4 channels in 2 groups (a block of 2 channels each), h0, 37
    steps in tiles of 16 (the carry crosses two tile edges; in fp16 a thread holds 8 steps, in fp32 4):
    the same y (to the output's rounding), h_last and saved states (fp32 inside both)."""
    x = make_inputs(1, 4, 37, 3, groups=2, dtype=dtype)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], x["h0"], True, True)
    y1, h1, c1 = kfwd.selective_scan_fwd(*args, time=False)
    y2, h2, c2 = kfwd.selective_scan_fwd(*args, time=True)
    assert c1.shape == c2.shape == (1, 5, 3, 4)
    assert rel_error(y1, y2) <= (1e-6 if dtype == torch.float32 else 1e-3)
    assert rel_error(h1, h2) <= 1e-6 and rel_error(c1, c2) <= 1e-6


def test_time_kernel_runs_where_the_channel_kernel_needs_segments(launches):
    """``time=None`` (the GPU default): the time kernel exactly when the channel kernel's plan has more than
    one segment (here: segments of 8 steps against L = 8 and L = 9)."""
    for L, want in ((8, kfwd.selective_scan_fwd_kernel), (9, selective_scan_fwd_time_kernel)):
        x = make_inputs(1, 2, L, 2, groups=1)
        launches.clear()
        y, _, _ = kfwd.selective_scan_fwd(x["u"], x["delta"], x["A"], x["B"], x["C"], None, None, None, None,
                                          False, False, time=None, seg_len=8)  # fmt: skip
        assert forwards(launches) == [want], L
        assert rel_error(scan_loop(x["u"], x["delta"], x["A"], x["B"], x["C"])[0], y) <= FWD_TOL


def test_many_segments_give_the_one_segment_answer(monkeypatch):
    """Segments of 8 steps (5 of them) against one segment of 64: same y, h_last and gradients."""
    x = make_inputs(1, 2, 37, 3)
    leaves = {k: x[k].clone().requires_grad_() for k in ("u", "delta", "A", "B", "C", "h0")}

    def run(seg_len):
        monkeypatch.setitem(kfwd.OVERRIDES, "seg_len", seg_len)
        monkeypatch.setitem(kbwd.OVERRIDES, "seg_len", seg_len)
        y, h = selective_scan_fn(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], x["D"],
                                 x["z"], x["delta_bias"], True, True, h0=leaves["h0"])  # fmt: skip
        g = torch.autograd.grad(y.sum() + (h * h).sum(), list(leaves.values()))
        return y, h, g

    y1, h1, g1 = run(64)
    y5, h5, g5 = run(8)
    assert rel_error(y1, y5) <= 1e-6 and rel_error(h1, h5) <= 1e-6
    for k, a, b in zip(leaves, g1, g5):
        assert rel_error(a, b) <= 1e-5, k


@pytest.mark.parametrize("groups", [1, 2])
def test_segment_pass_clears_the_accumulators(groups):
    """With segments, the backward allocates dA, dB, dC, dD, ddelta_bias uninitialised and its segment
    pass writes the zeros the main pass adds into. Here that memory starts as NaN (``poison_accumulators``):
    2 sequences, 8 channels in blocks of 2 (in each group, the first block clears the group's rows of dB,
    dC), 37 steps in 5 segments."""
    x = make_inputs(2, 8, 37, 3, groups=groups)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    dy = torch.randn(2, 8, 37)
    y, _, h_chunks = kfwd.selective_scan_fwd(*(x[k] for k in names), None, True, True, block_d=2, seg_len=8)
    Bt, Ct = (x[k].transpose(-1, -2).contiguous() for k in ("B", "C"))
    got = kbwd.selective_scan_bwd(x["u"], x["delta"], x["A"], Bt, Ct, x["D"], x["z"], x["delta_bias"],
                                  h_chunks, dy, None, True, False, block_d=2, seg_len=8,
                                  poison_accumulators=True)  # fmt: skip
    du, ddelta, dA, dB, dC, dD, dz, ddb, _ = got
    ref = {k: x[k].double().requires_grad_() for k in names}
    y_ref, _ = scan_loop(*(ref[k] for k in names), delta_softplus=True)
    want = torch.autograd.grad((y_ref * dy.double()).sum(), [ref[k] for k in names])
    assert dB.shape == x["B"].shape and dB.is_contiguous()  # (batch, groups, N, L), written by the kernel
    got = dict(u=du, delta=ddelta, A=dA, B=dB, C=dC, D=dD, z=dz, delta_bias=ddb)
    for k, w in zip(names, want):
        assert rel_error(w, got[k]) <= GRAD_TOL, k


def test_backward_writes_db_and_dc_in_the_dtypes_asked_for():
    """The last block of channels to finish a segment writes its dB, dC out, (batch, groups, N, L)
    contiguous in the dtype asked for (fp16 for dB, fp32 for dC here; 2 groups of 2 blocks, 3 segments):
    the fp32 sums, rounded once."""
    x = make_inputs(2, 8, 37, 3, groups=2)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    _, _, h_chunks = kfwd.selective_scan_fwd(*(x[k] for k in names), None, True, True, block_d=2, seg_len=16)
    Bt, Ct = (x[k].transpose(-1, -2).contiguous() for k in ("B", "C"))
    args = (
        x["u"],
        x["delta"],
        x["A"],
        Bt,
        Ct,
        x["D"],
        x["z"],
        x["delta_bias"],
        h_chunks,
        torch.randn(2, 8, 37),
    )
    g32 = kbwd.selective_scan_bwd(*args, None, True, False, block_d=2, seg_len=16)
    g16 = kbwd.selective_scan_bwd(*args, None, True, False, bc_dtypes=(torch.float16, torch.float32), block_d=2,
                                  seg_len=16)  # fmt: skip
    assert g16[3].dtype == torch.float16 and g16[4].dtype == torch.float32
    assert g16[3].shape == g16[4].shape == x["B"].shape and g16[3].is_contiguous()
    assert torch.equal(g16[3], g32[3].half()) and torch.equal(g16[4], g32[4])  # the interpreter runs in order


@pytest.mark.parametrize("rows, last", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_bc_layouts(rows, last, dtype):
    """layout.py's one launch: B and C (2 sequences, 3 groups, N = 3, L = 37; strided views, as slices of
    a projection are) → fp32 (N, L) rows and/or fp32 (L, N) rows, exactly the values given."""
    from minimamba.kernels.selective_scan.layout import bc_layouts

    big = torch.randn(2, 3, 37, 8).to(dtype)
    B, C = big[..., :3].transpose(-1, -2), big[..., 4:7].transpose(-1, -2)  # (2, 3, 3, 37), not contiguous
    B32, C32, Bt, Ct = bc_layouts(B, C, rows, last)
    if rows:
        assert B32.dtype == C32.dtype == torch.float32 and B32.is_contiguous() and C32.is_contiguous()
        assert torch.equal(B32, B.float()) and torch.equal(C32, C.float())
    else:
        assert B32 is B and C32 is C
    if last:
        assert Bt.shape == Ct.shape == (2, 3, 37, 3) and Bt.is_contiguous() and Ct.is_contiguous()
        assert torch.equal(Bt, B.float().transpose(-1, -2)) and torch.equal(Ct, C.float().transpose(-1, -2))
    else:
        assert Bt is None and Ct is None


def test_channel_kernel_reads_16_bit_b_and_c_as_given_or_copied(launches):
    """Short L: the channel kernel reads fp16 B and C as they are, and for autograd writes the backward's
    fp32 (L, N) copies itself (no launch of layout.py); longer L, or ``native_bc_autograd`` off, reads fp32
    copies from layout.py, which then also makes the backward's. The same y and copies every way."""
    x = make_inputs(1, 4, 20, 3, groups=1, dtype=torch.float16)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], None, True, False)

    def copies():  # per launch of layout.py: (fp32 (N, L) rows made, (L, N) rows made)
        return [(c["ROWS"], c["LAST"]) for k, c, _ in launches if k is bc_layouts_kernel]

    def packed(**kw):
        out = kfwd.selective_scan_fwd_packed(*args[:-1], True, native_bc_max_len=20, bc_last=True, **kw)
        return (out.y, *fast_launch.as_tensor(out.bc_t).unbind(0))

    y_native, _, _ = kfwd.selective_scan_fwd(*args, native_bc_max_len=20)
    assert copies() == []
    y_copied, _, _ = kfwd.selective_scan_fwd(*args, native_bc_max_len=19)
    assert copies() == [(True, False)]
    y_w, Bt, Ct = packed()
    assert copies() == [(True, False)]  # written by the channel kernel
    y_c, Bt_c, Ct_c = packed(native_bc_autograd=False)
    assert copies() == [(True, False), (True, True)]
    assert torch.equal(y_native, y_copied) and torch.equal(y_native, y_w) and torch.equal(y_native, y_c)
    for got in (Bt, Bt_c):
        assert torch.equal(got, x["B"].float().transpose(-1, -2))
    for got in (Ct, Ct_c):
        assert torch.equal(got, x["C"].float().transpose(-1, -2))


def test_forward_writes_b_and_c_for_the_backward(forward_kernel):
    """``bc_last``: the packed forward also returns B and C as the backward reads them, (batch, groups, L,
    N) fp32: written by the channel kernel (the first block of channels of each group, in each segment),
    or by layout.py's launch for the time kernel. 2 sequences, 2 groups, 5 segments."""
    x = make_inputs(2, 8, 37, 3, groups=2)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], None, True, True)
    out = kfwd.selective_scan_fwd_packed(*args, block_d=2, seg_len=8, bc_last=True)
    y, (Bt, Ct) = out.y, fast_launch.as_tensor(out.bc_t).unbind(0)
    assert torch.equal(Bt, x["B"].transpose(-1, -2)) and torch.equal(Ct, x["C"].transpose(-1, -2))
    assert rel_error(scan_loop(*args[:8], delta_softplus=True)[0], y) <= FWD_TOL


def test_packed_forward_keeps_its_outputs_in_one_allocation(forward_kernel, launch_path):
    """The packed forward: h_last, the saved states and the backward's B, C come back as pieces of one fp32
    allocation (addresses, no tensor view made, with the fast launch on; views with it off), holding what
    the unpacked call returns as tensors. B, C (batch, N, L) go in without a groups axis; 5 segments (the
    time kernel: a carry in the allocation)."""
    from minimamba.kernels.selective_scan.fast_launch import Slot, as_tensor

    x = make_inputs(2, 4, 37, 3)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], x["h0"], True, True)
    y, h_last, h_chunks = kfwd.selective_scan_fwd(*args, block_d=2, seg_len=8)
    p = kfwd.selective_scan_fwd_packed(*args, block_d=2, seg_len=8, bc_last=True)
    pieces = (p.h_last, p.h_chunks, p.bc_t)
    if launch_path == "fast-launch":
        assert all(isinstance(s, Slot) and s.base is p.work for s in pieces)
        assert as_tensor(p.h_chunks).data_ptr() == int(p.h_chunks)
        Ct_slot = p.bc_t.at(2 * 37 * 3, (2, 1, 37, 3))
        assert Ct_slot.data_ptr() == int(p.bc_t) + 4 * 2 * 37 * 3
    else:
        assert all(isinstance(s, torch.Tensor) and s.untyped_storage().data_ptr() == p.work.data_ptr()
                   for s in pieces)  # fmt: skip
    assert p.work.dtype == torch.float32 and p.work.dim() == 1
    assert torch.equal(y, p.y) and torch.equal(h_last, as_tensor(p.h_last))
    assert torch.equal(h_chunks, as_tensor(p.h_chunks))
    bc = as_tensor(p.bc_t)
    assert bc.shape == (2, 2, 1, 37, 3)
    assert torch.equal(bc[0, :, 0], x["B"].transpose(-1, -2)) and torch.equal(
        bc[1, :, 0], x["C"].transpose(-1, -2)
    )
    assert all((as_tensor(s).data_ptr() - p.work.data_ptr()) % 128 == 0 for s in pieces)  # 128-byte pieces
    y_ref, h_ref = scan_loop(*args[:8], delta_softplus=True, h0=x["h0"])
    assert rel_error(y_ref, p.y) <= FWD_TOL and rel_error(h_ref, as_tensor(p.h_last)) <= FWD_TOL


def test_returned_last_state_is_the_callers(forward_kernel):
    """With autograd, h_last is a tensor of its own: changing it in place does not touch what the
    backward reads (one allocation with the saved states). Without autograd, the same h_last."""
    x = make_inputs(1, 3, 9, 2)
    u = x["u"].clone().requires_grad_()
    y, h = selective_scan_fn(u, x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], return_last_state=True)
    with torch.no_grad():
        y_ng, h_ng = selective_scan_fn(u, x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"],
                                       return_last_state=True)  # fmt: skip
    assert torch.equal(y, y_ng) and torch.equal(h, h_ng)
    h.mul_(2.0)  # an in-place change of an output: the backward of y must not see it
    (du,) = torch.autograd.grad(y.sum(), [u])
    ud = x["u"].double().requires_grad_()
    y_ref, _ = scan_loop(ud, x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"])
    (du_ref,) = torch.autograd.grad(y_ref.sum(), [ud])
    assert rel_error(du_ref, du) <= GRAD_TOL


@pytest.mark.parametrize("shape", [(0, 3, 5, 2), (1, 0, 5, 2), (1, 3, 0, 2)])
def test_empty_shapes_with_autograd(shape):
    """No sequence, no channel or no step: nothing to scan, and the gradients are the float64 loop's
    (zeros where an input still has elements: B and C with no channel, A and D with no step)."""
    x = make_inputs(*shape)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    leaves = [x[k].clone().requires_grad_() for k in names]
    y, h = selective_scan_fn(*leaves, True, True, h0=x["h0"])
    got = torch.autograd.grad(y.sum() + h.sum(), leaves, allow_unused=True)
    ref = [x[k].double().requires_grad_() for k in names]
    y_ref, h_ref = scan_loop(*ref, delta_softplus=True, h0=x["h0"])
    loss_ref = y_ref.sum() + h_ref.sum()  # with no step, nothing in it depends on the inputs
    want = torch.autograd.grad(loss_ref, ref, allow_unused=True) if loss_ref.requires_grad else [None] * 8
    assert y.shape == y_ref.shape and torch.equal(h, h_ref.float())
    for k, a, b in zip(names, got, want):
        b = torch.zeros_like(x[k], dtype=torch.float64) if b is None else b
        assert a.shape == x[k].shape and torch.allclose(a.double(), b, atol=1e-6), k


def test_last_state_gradient_alone(forward_kernel):
    """Only h_last feeds the loss: dy is None inside the backward."""
    x = make_inputs(1, 3, 9, 2)
    u = x["u"].clone().requires_grad_()
    _, h_last = selective_scan_fn(u, x["delta"], x["A"], x["B"], x["C"], return_last_state=True)
    (du,) = torch.autograd.grad(h_last.sum(), [u])
    u64 = x["u"].double().requires_grad_()
    _, h_ref = scan_loop(u64, x["delta"], x["A"], x["B"], x["C"])
    (du_ref,) = torch.autograd.grad(h_ref.sum(), [u64])
    check_close("du", du_ref, du, rtol=1e-4, atol=1e-6)


def test_non_contiguous_inputs(forward_kernel):
    x = make_inputs(2, 3, 6, 2)
    u_t = x["u"].transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    B_t = x["B"].transpose(1, 2).contiguous().transpose(1, 2)
    assert not u_t.is_contiguous() and not B_t.is_contiguous()
    y = selective_scan_fn(u_t, x["delta"], x["A"], B_t, x["C"], x["D"], x["z"], x["delta_bias"], True)
    y_ref, _ = scan_loop(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    assert rel_error(y_ref, y) <= FWD_TOL


def test_half_precision_inputs(forward_kernel):
    """fp16 inputs, fp32 state: y in fp16, within fp16 rounding of the float64 loop on the same inputs."""
    x = make_inputs(1, 3, 9, 4, dtype=torch.float16)
    y = selective_scan_fn(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    y_ref, _ = scan_loop(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    assert y.dtype == torch.float16
    assert rel_error(y_ref, y) <= 2e-3


def test_dispatch_through_scan_module():
    from minimamba.scan import selective_scan

    x = make_inputs(1, 2, 5, 2)
    y = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], backend="triton")
    y_ref, _ = scan_loop(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"])
    assert rel_error(y_ref, y) <= FWD_TOL


def test_custom_op_registration():
    """Schema and fake (meta) implementation of both ops agree with the real ones: shapes, dtypes and
    strides of every output (torch.library.opcheck). B and C as a model makes them: transposed views (the
    gradients must come back in that layout: torch.compile checks the strides its fake promised)."""
    x = make_inputs(1, 2, 5, 2, groups=1, dtype=torch.float16)
    Bv, Cv = (x[k].transpose(-1, -2).contiguous().transpose(-1, -2) for k in ("B", "C"))
    assert not Bv.is_contiguous()
    args = (
        x["u"],
        x["delta"],
        x["A"].float(),
        Bv,
        Cv,
        x["D"].float(),
        x["z"],
        x["delta_bias"].float(),
        None,
        True,
        True,
        kfwd.CHUNK,
    )
    checks = ("test_schema", "test_faketensor")
    torch.library.opcheck(torch.ops.minimamba.selective_scan_fwd.default, args, test_utils=checks)
    _, _, h_chunks = torch.ops.minimamba.selective_scan_fwd(*args)
    bwd_args = (*args[:8], h_chunks, torch.randn_like(x["u"]), None, True, False, kfwd.CHUNK)
    torch.library.opcheck(torch.ops.minimamba.selective_scan_bwd.default, bwd_args, test_utils=checks)


def test_bad_input_is_rejected_with_the_argument_named():
    x = make_inputs(1, 2, 5, 2)
    with pytest.raises(TypeError, match="float64"):
        selective_scan_fn(x["u"].double(), x["delta"].double(), x["A"], x["B"], x["C"])
    with pytest.raises(ValueError, match="delta"):
        selective_scan_fn(x["u"], x["delta"][:, :, :4], x["A"], x["B"], x["C"])
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan_fn(x["u"], x["delta"], x["A"], x["B"][:, :1], x["C"])
    with pytest.raises(TypeError, match="u must be a torch.Tensor"):
        selective_scan_fn(x["u"].numpy(), x["delta"], x["A"], x["B"], x["C"])


def test_direct_launch_key_follows_triton_specialisation():
    """The cache of fast_launch.py must tell apart whatever Triton compiles apart."""
    key = fast_launch.specialisation_key
    x = torch.zeros(64)
    base = key("f", [x, 32], {"A": 1}, 1)
    assert base == key("f", [torch.zeros(64), 48], {"A": 1}, 1)  # same dtype, alignment, divisibility
    assert base != key("f", [x.double(), 32], {"A": 1}, 1)  # dtype
    assert base != key("f", [x[1:], 32], {"A": 1}, 1)  # a pointer not 16-byte aligned
    assert base != key("f", [x, 33], {"A": 1}, 1)  # not divisible by 16
    assert base != key("f", [x, 1], {"A": 1}, 1)  # equal to 1
    assert base != key("f", [x, 32], {"A": 2}, 1)  # constexpr
    assert base != key("f", [x, 32], {"A": 1}, 2)  # num_warps


def test_direct_launch_keys_name_one_variant_each(monkeypatch, launches):
    """On a GPU, fast_launch.py keeps compiled kernels under the key each caller gives: one key must never
    stand for two sets of constexprs (the segment pass, the main pass, the main pass that writes B and C
    for the backward...). Every launch of a forward + backward with segments, and of a forward alone."""
    x = make_inputs(1, 4, 37, 3, groups=1)
    leaves = [x[k].clone().requires_grad_() for k in ("u", "delta", "A", "B", "C")]
    for seg_len, native_max in ((8, 16), (64, 16), (8, 64), (64, 64)):  # native: the kernel writes B, C
        monkeypatch.setitem(kfwd.OVERRIDES, "seg_len", seg_len)
        monkeypatch.setitem(kfwd.OVERRIDES, "native_bc_max_len", native_max)
        monkeypatch.setitem(kbwd.OVERRIDES, "seg_len", seg_len)
        y = selective_scan_fn(*leaves, x["D"], x["z"], x["delta_bias"], True)
        torch.autograd.grad(y.sum(), leaves)
        with torch.no_grad():
            selective_scan_fn(*leaves, x["D"], x["z"], x["delta_bias"], True)
    seen: dict = {}
    for fn, consts, key in launches:
        if fn is bc_layouts_kernel:  # its key holds its switches
            continue
        variant = tuple(sorted(consts.items()))
        assert seen.setdefault((fn, key), variant) == variant, key
    consts = [dict(v) for (fn, _), v in seen.items() if fn is kfwd.selective_scan_fwd_kernel]
    assert any(c["WRITE_BC"] for c in consts) and any(c["STATE_ONLY"] for c in consts)
    assert any(not (c["WRITE_BC"] or c["STATE_ONLY"]) for c in consts)
    assert any(
        c["STATE_ONLY"]
        for (fn, _), c in ((k, dict(v)) for k, v in seen.items())
        if fn is kbwd.selective_scan_bwd_kernel
    )


def test_b_and_c_with_different_group_counts(forward_kernel):
    """B with 2 groups, C with 1 (given (batch, N, L)): each channel still meets its own group of each, as in
    minimamba.scan's float64 reference (the kernels take one group count for both: the smaller one is
    repeated)."""
    torch.manual_seed(3)
    x = make_inputs(1, 4, 9, 2, groups=2)
    x["C"] = torch.randn(1, 2, 9)
    leaves = [x[k].clone().requires_grad_() for k in ("u", "delta", "A", "B", "C")]
    y = selective_scan_fn(*leaves, x["D"], x["z"], x["delta_bias"], True)
    ref = [x[k].double().requires_grad_() for k in ("u", "delta", "A", "B", "C")]
    y_ref = selective_scan_ref(*ref, *(x[k].double() for k in ("D", "z", "delta_bias")), True)
    assert rel_error(y_ref, y) <= FWD_TOL
    dy = torch.randn_like(y)
    g = torch.autograd.grad(y, leaves, dy)
    g_ref = torch.autograd.grad(y_ref, ref, dy.double())
    for name, a, b in zip(("u", "delta", "A", "B", "C"), g, g_ref):
        assert a.shape == b.shape and rel_error(b, a) <= GRAD_TOL, name


def test_profile_stamps_put_the_host_phases_in_order():
    """profile.py --stamps on the CPU (interpreter, tiny shape): every phase of an eager forward + backward
    is stamped, in the order the code runs, and the phase hook is removed afterwards."""
    from minimamba.kernels.selective_scan import profile

    med = profile.stamps((1, 4, 16, 4), "fp32", n=2, device="cpu")
    order = ["start", "fwd_in", "fL_pre", "fL_post", "fwd_out", "apply_ret", "bwd_in", "bL_pre", "bL_post",
             "bwd_out", "grad_ret"]  # fmt: skip
    assert [k for k in med if k in order] == order
    assert "lL_pre" not in med  # fp32 B, C: the forward kernel writes the backward's copies, no layout.py
    assert fast_launch.set_phase_hook(None) is None


def test_switches_reject_bad_arguments():
    with pytest.raises(TypeError, match="on must be a bool"):
        fast_launch.set_fast_launch(1)
    with pytest.raises(TypeError, match="hook must be callable"):
        fast_launch.set_phase_hook("stamp")
    x = make_inputs(1, 2, 5, 2)
    with pytest.raises(ValueError, match="B must be"):
        kfwd.selective_scan_fwd(x["u"], x["delta"], x["A"], x["B"][..., :4], x["C"], None, None, None, None,
                                False, False)  # fmt: skip
    with pytest.raises(ValueError, match="chunk must be 8"):
        Bt = x["B"].transpose(-1, -2)[:, None].contiguous()
        kbwd.selective_scan_bwd(x["u"], x["delta"], x["A"], Bt, Bt, None, None, None, torch.zeros(1, 1, 2, 2),
                                x["u"], None, False, False, 4)  # fmt: skip


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "custom op"])
def test_recomputed_states_give_the_same_gradients_and_keep_less(compiled, monkeypatch):
    """recompute_states=True: the forward keeps no states for the backward (autograd holds fewer bytes
    between the two), and the backward, which runs the forward again for them, gives the gradients the
    kept states give. ``compiled`` takes the custom op's autograd (what torch.compile traces) by making the
    function believe it is being compiled."""
    if compiled:
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    x = make_inputs(2, 3, 33, 4)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0"]
    results = {}
    for recompute in (False, True):
        leaves = {k: x[k].clone().requires_grad_(True) for k in names}
        inputs = {t.untyped_storage().data_ptr() for t in leaves.values()}
        saved_bytes = []

        def pack(t, saved_bytes=saved_bytes, inputs=inputs):  # bytes held beyond the caller's inputs
            if t.untyped_storage().data_ptr() not in inputs:
                saved_bytes.append(t.untyped_storage().nbytes())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y, h_last = selective_scan_fn(
                leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"], leaves["z"],
                leaves["delta_bias"], True, True, h0=leaves["h0"], recompute_states=recompute,
            )  # fmt: skip
        loss = (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() + h_last.square().sum()
        grads = torch.autograd.grad(loss, [leaves[k] for k in names])
        results[recompute] = (y.detach(), grads, sum(saved_bytes))
    (y0, g0, kept0), (y1, g1, kept1) = results[False], results[True]
    torch.testing.assert_close(y1, y0, rtol=0, atol=0)
    for k, a, b in zip(names, g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=lambda m, k=k: f"d{k}: {m}")
    states = 2 * 5 * 4 * 3 * 4  # (batch, cdiv(33, 8) = 5 saved states, N, d_inner) fp32 bytes
    assert kept0 - kept1 >= states


def test_recompute_states_must_be_a_bool():
    x = make_inputs(1, 2, 5, 2)
    with pytest.raises(TypeError, match="recompute_states"):
        selective_scan_fn(x["u"], x["delta"], x["A"], x["B"], x["C"], recompute_states="yes")
