"""The fused Triton selective scan at real sizes on a GPU (marker ``gpu``; skipped without CUDA).

Same float64 loop as tests/test_triton_scan.py, run on the GPU in float64 on the same (rounded) inputs.
Tolerances (relative norm error against float64): fp32 y 1e-5 and gradients 1e-4; fp16 2e-3; bf16 5e-3.
Every test runs with the host-time layer (fast_launch.py) on and off (the ``launch_path`` fixture of
tests/conftest.py). Run on a GPU: ``pytest -m gpu tests/test_triton_scan_gpu.py``.
"""

from __future__ import annotations

import pytest
import torch
from minimamba.kernels.selective_scan import selective_scan_fn
from test_triton_scan import forwards, make_inputs, scan_loop

from minimamba.testing import rel_error

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("launch_path")]

TOL = {torch.float32: (1e-5, 1e-4), torch.float16: (2e-3, 2e-3), torch.bfloat16: (5e-3, 5e-3)}


def _compare(shape, dtype, groups=0, use_h0=False, grads=True):
    batch, d_inner, L, N = shape
    x = make_inputs(batch, d_inner, L, N, groups, dtype=dtype, seed=L)
    if not use_h0:
        x["h0"] = None
    names = [k for k, v in x.items() if v is not None]
    leaves = {k: x[k].cuda().requires_grad_(grads) for k in names}
    ref_leaves = {k: x[k].cuda().double().requires_grad_(grads) for k in names}  # the same rounded values
    a = {k: leaves.get(k) for k in x}
    r = {k: ref_leaves.get(k) for k in x}
    y, h_last = selective_scan_fn(
        a["u"], a["delta"], a["A"], a["B"], a["C"], a["D"], a["z"], a["delta_bias"], True, True, h0=a["h0"]
    )
    y_ref, h_ref = scan_loop(**r, delta_softplus=True)
    tol_y, tol_g = TOL[dtype]
    errors = {"y": rel_error(y_ref, y), "h_last": rel_error(h_ref, h_last)}
    if grads:
        g = torch.Generator(device="cuda").manual_seed(1)
        dy = torch.randn(y.shape, device="cuda", generator=g).to(dtype)
        dh = torch.randn(h_last.shape, device="cuda", generator=g)
        got = torch.autograd.grad((y * dy).float().sum() + (h_last * dh).sum(), [leaves[k] for k in names])
        want = torch.autograd.grad(
            (y_ref * dy.double()).sum() + (h_ref * dh.double()).sum(), [ref_leaves[k] for k in names]
        )
        for k, gk, wk in zip(names, got, want):
            assert gk.dtype == leaves[k].dtype, k
            errors[f"d{k}"] = rel_error(wk, gk)
    print(shape, dtype, {k: f"{v:.1e}" for k, v in errors.items()})
    for k, e in errors.items():
        assert e <= (tol_y if k in ("y", "h_last") else tol_g), (k, e)
    return errors


@pytest.mark.parametrize("shape", [(2, 64, 4097, 16), (1, 1536, 2048, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("time", [False, True], ids=["channel-kernel", "time-kernel"])
def test_real_sizes(shape, dtype, time, monkeypatch):
    from minimamba.kernels.selective_scan import fwd as kfwd

    monkeypatch.setitem(kfwd.OVERRIDES, "time", time)
    _compare(shape, dtype)


def test_forward_kernel_picked_by_shape(launches):
    """On its own the forward runs the channel kernel when batch · d_inner fills the GPU, and the kernel
    parallel along time when the channel kernel would need segments."""
    from minimamba.kernels.selective_scan import fwd as kfwd
    from minimamba.kernels.selective_scan.fwd_time import selective_scan_fwd_time_kernel

    for shape, want in (((8, 1536, 512, 16), kfwd.selective_scan_fwd_kernel),
                        ((1, 1536, 2048, 16), selective_scan_fwd_time_kernel)):  # fmt: skip
        x = make_inputs(*shape)
        launches.clear()
        with torch.no_grad():
            selective_scan_fn(
                *(x[k].cuda() for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")), True
            )
        assert forwards(launches) == [want], shape


def test_groups_initial_state_and_odd_sizes():
    _compare((3, 24, 1000, 5), torch.float32, groups=3, use_h0=True)
    _compare((2, 3, 1, 16), torch.float32, use_h0=True)


@pytest.mark.parametrize(
    "launch",
    [
        {"target": 1, "time": False},
        {"seg_len": 256, "time": False},
        {"num_warps": 2, "stages": 2, "target": 4096, "time": False},
        {"stages": 4, "time": False},
        {"time": True, "time_block_t": 256, "time_warps": 2, "time_maxnreg": None},
        {"time": True, "time_block_d": 2, "time_block_t": 1024, "time_warps": 8},
    ],
    ids=["one-segment", "segments-of-256", "two-warps", "four-stages", "time-tiles-of-256", "time-8-warps"],
)
def test_launch_configurations(launch, monkeypatch):
    """Every launch size the benchmark may pick gives the same answers (segments, warps, stages; for the
    time kernel: channels, tile, warps, register cap)."""
    from minimamba.kernels.selective_scan import bwd as kbwd
    from minimamba.kernels.selective_scan import fwd as kfwd

    for mod in (kfwd, kbwd):
        for k, v in launch.items():
            monkeypatch.setitem(mod.OVERRIDES, k, v)
    _compare((2, 256, 3001, 16), torch.float32, use_h0=True)


def test_dispatcher_picks_triton_on_cuda():
    from minimamba.scan import selective_scan

    x = make_inputs(1, 8, 300, 4)
    args = [x[k].cuda() for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    y = selective_scan(*args, delta_softplus=True)
    y_ref, _ = scan_loop(*[t.double() for t in args], delta_softplus=True)
    assert rel_error(y_ref, y) <= 1e-5


class TinyMixer(torch.nn.Module):
    """A Mamba-like layer: project, scan, project back — enough to trace the op inside a model."""

    def __init__(self, d_model=32, d_inner=64, N=8):
        super().__init__()
        self.in_proj = torch.nn.Linear(d_model, 2 * d_inner)
        self.x_proj = torch.nn.Linear(d_inner, 1 + 2 * N)
        self.dt_proj = torch.nn.Linear(1, d_inner)
        self.A_log = torch.nn.Parameter(torch.log(torch.arange(1, N + 1).float()).repeat(d_inner, 1))
        self.D = torch.nn.Parameter(torch.ones(d_inner))
        self.out_proj = torch.nn.Linear(d_inner, d_model)
        self.N = N

    def forward(self, x):  # x: (batch, L, d_model)
        u, z = self.in_proj(x).chunk(2, dim=-1)  # (batch, L, d_inner) each
        dt, B, C = self.x_proj(u).split([1, self.N, self.N], dim=-1)
        delta = self.dt_proj(dt)  # (batch, L, d_inner)
        y = selective_scan_fn(
            u.transpose(1, 2), delta.transpose(1, 2), -torch.exp(self.A_log), B.transpose(1, 2),
            C.transpose(1, 2), self.D, z.transpose(1, 2), None, True,
        )  # fmt: skip
        return self.out_proj(y.transpose(1, 2))


def test_torch_compile_fullgraph_forward_and_backward():
    torch.manual_seed(0)
    model = TinyMixer().cuda()
    x = torch.randn(2, 100, 32, device="cuda")
    eager_out = model(x)
    eager_grads = torch.autograd.grad(eager_out.square().sum(), list(model.parameters()))
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(x)
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    assert rel_error(eager_out, out) <= 1e-5
    for ge, gc in zip(eager_grads, grads):
        assert rel_error(ge, gc) <= 1e-4


def test_bench_launch_overhead_times_both_ways():
    """bench.py --launch-overhead's measurement, small: eager fwd+bwd with the fast launch on and off, in
    fp32 and bf16; the switch is left as it was."""
    from minimamba.kernels.selective_scan import bench, fast_launch

    before = fast_launch.fast_launch_enabled()
    out = bench.launch_overhead(rounds=1, warmup_s=0.0, shape=(2, 64, 512, 16))
    assert set(out["times"]) == {"fp32", "bf16"}
    for t in out["times"].values():
        assert t["on"]["ms"] > 0 and t["off"]["ms"] > 0
    assert fast_launch.fast_launch_enabled() == before


def test_mamba_ssm_checkpoint_through_from_pretrained():
    """bench.py --checkpoint: a checkpoint written by mamba_ssm's save_pretrained, read by
    MambaLM.from_pretrained, gives mamba_ssm's logits (fp32) and greedy tokens (needs mamba_ssm built by
    scripts/build_peers.py on PYTHONPATH)."""
    pytest.importorskip("mamba_ssm")
    from minimamba.kernels.selective_scan import bench

    out = bench.check_checkpoint(new_tokens=16)
    assert out["max_abs_logit_diff"] <= 1e-3 * max(1.0, out["max_logit"]), out
    assert out["same_greedy_tokens"], out
