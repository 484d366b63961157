"""Profile the kernels on a GPU: time, registers and spills at the default launch sizes; where the time of
one call goes; a target for ``ncu``.

    python -m minimamba.kernels.selective_scan.profile                 # fwd then bwd, default launch sizes
    python -m minimamba.kernels.selective_scan.profile --dtype bf16 --shape 1 1536 65536 16
    python -m minimamba.kernels.selective_scan.profile --breakdown     # every kernel of one fwd / fwd+bwd
    python -m minimamba.kernels.selective_scan.profile --graph         # fwd+bwd replayed from a CUDA graph:
                                                                       # the GPU's time without the host's
    python -m minimamba.kernels.selective_scan.profile --timeline --shape 8 1536 512 16
                                                                       # host ops and GPU kernels of 3 timed
                                                                       # fwd+bwd calls, on one time axis
    python -m minimamba.kernels.selective_scan.profile --stamps --shape 8 1536 512 16
                                                                       # host time of an eager fwd+bwd,
                                                                       # phase by phase (medians)
    python -m minimamba.kernels.selective_scan.profile --floor         # PyTorch's autograd alone: a no-op
                                                                       # Function with the scan's arity
    python -m minimamba.kernels.selective_scan.profile --ours          # selective_scan_fn alone, as bench.py
                                                                       # times it, every shape
    ncu --clock-control none -k regex:fwd_kernel --launch-skip 1 --launch-count 1 \\
        python -m minimamba.kernels.selective_scan.profile
"""

from __future__ import annotations

import argparse
import time

import torch
import triton

from minimamba.testing import rel_error

from . import bwd as kbwd
from . import fast_launch
from . import fwd as kfwd
from .bench import DTYPES, MAMBA_SSM, ORDER, SHAPES, make_inputs, ours, peers
from .layout import bc_layouts
from .op import selective_scan_fn


def kernels_alone(shape, dname):
    x = make_inputs(shape, DTYPES[dname])
    u, delta, A, B, C, D, z, db = (x[k] for k in ORDER)
    B4, C4 = (t.unsqueeze(1) for t in (B, C))  # (batch, 1, N, L), as the op passes them
    Bt, Ct = bc_layouts(B4, C4, False, True)[2:]  # the backward's (batch, 1, L, N) fp32
    dy = torch.randn_like(u)

    def fwd(save=True):
        return kfwd.selective_scan_fwd(u, delta, A, B4, C4, D, z, db, None, True, save)

    _, _, hc = fwd()

    def bwd():
        return kbwd.selective_scan_bwd(u, delta, A, Bt, Ct, D, z, db, hc, dy, None, True, False)

    for name, fn, mod in (("fwd", lambda: fwd(False), kfwd), ("fwd+save", fwd, kfwd), ("bwd", bwd, kbwd)):
        fn()
        k = mod.LAST[0]
        ms = triton.testing.do_bench(fn, return_mode="median")
        cfg = mod.default_config(*shape, u.device, u.dtype)
        kernel = getattr(k, "name", "?")
        print(
            f"{name:8s} {shape} {dname} {kernel} {cfg}: {ms:.3f} ms, {k.n_regs} registers, {k.n_spills} spills"
        )


def _calls(shape, dname, scan=None):
    """The inputs, and one eager call of ``scan`` (f(u, delta, A, B, C, D, z, delta_bias), softplus on Δ;
    default: ours): forward under no_grad, forward + backward."""
    scan = scan or ours
    x = make_inputs(shape, DTYPES[dname])
    args = [x[k] for k in ORDER]
    leaves = [a.detach().requires_grad_() for a in args]
    dy = torch.randn_like(args[0])

    def fwd():
        with torch.no_grad():
            return scan(*args)

    def fwd_bwd():
        return torch.autograd.grad(scan(*leaves), leaves, dy)

    return x, fwd, fwd_bwd


def _per_call(fn, n):
    """Seconds per call of ``fn`` over n calls after a warm-up: host (until the last one is queued) and
    wall (until the GPU has finished them)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - t0) / n
    torch.cuda.synchronize()
    return host, (time.perf_counter() - t0) / n


def breakdown(shape, dname, peer=False):
    """Each CUDA kernel of one call (torch.profiler), and the host time of a call (launch overhead); with
    ``peer``, the same for mamba_ssm's ``selective_scan_fn`` (when it imports) after ours."""
    from torch.profiler import ProfilerActivity, profile

    scans = {"ours": ours}
    if peer:
        found, missing, _ = peers()
        if MAMBA_SSM in found:
            scans["mamba_ssm"] = found[MAMBA_SSM]
        else:
            print(f"mamba_ssm: {missing[MAMBA_SSM]}")
    calls = []
    for who, scan in scans.items():
        _, fwd, fwd_bwd = _calls(shape, dname, scan)
        calls += [(f"{who} fwd", fwd), (f"{who} fwd+bwd", fwd_bwd)]

    for name, fn in calls:
        host, total = (t * 1e3 for t in _per_call(fn, 20))
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        events = prof.key_averages()
        rows = [
            (e.key, e.device_time_total / e.count / 1e3, e.count) for e in events if e.device_time_total > 0
        ]
        gpu = sum(ms * n for _, ms, n in rows)
        print(f"{name} {shape} {dname}: host {host:.3f} ms/call, wall {total:.3f} ms/call, GPU {gpu:.3f} ms")
        for key, ms, n in sorted(rows, key=lambda r: -r[1] * r[2]):
            print(f"    {ms * n:8.3f} ms  {n} x {key[:90]}")
        print("  host side (self CPU time under the profiler, which adds its own):")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]:
            print(f"    {e.self_cpu_time_total / 1e3:8.3f} ms  {e.count} x {e.key[:90]}")


def host(shape, dname):
    """Host time per call at a shape whose GPU time is negligible, and where it goes (cProfile)."""
    import cProfile
    import pstats

    x, fwd, fwd_bwd = _calls(shape, dname)
    args = [x[k] for k in ORDER]
    B4, C4 = (t.unsqueeze(1) for t in (x["B"], x["C"]))

    def launch():
        kfwd.selective_scan_fwd(
            args[0], args[1], args[2], B4, C4, args[5], args[6], args[7], None, True, False
        )

    for name, fn in (("kernel launch", launch), ("fwd", fwd), ("fwd+bwd", fwd_bwd)):
        print(f"host {name} {shape} {dname}: {_per_call(fn, 50)[0] * 1e6:.0f} us/call")
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(20):
        fwd_bwd()
    pr.disable()
    torch.cuda.synchronize()
    pstats.Stats(pr).sort_stats("tottime").print_stats(18)


class _NoOp(torch.autograd.Function):
    """The scan's autograd arity (9 tensors and a flags tuple in, y out, 9 gradients back) doing nothing:
    the host time any ``autograd.Function``-based scan pays before its own code runs."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, h0, flags):
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
        return torch.empty_like(u)

    @staticmethod
    def backward(ctx, dy):
        return (*(torch.empty_like(t) for t in ctx.saved_tensors), None, None)


def autograd_floor(shape=(1, 64, 16, 16)):
    """Host time per call of _NoOp: apply alone, and apply + autograd.grad w.r.t. 8 inputs (median)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = make_inputs(shape, torch.float32, device=device)
    leaves = [x[k].detach().requires_grad_() for k in ORDER]
    dy = torch.randn_like(leaves[0])
    u, delta, A, B, C, D, z, db = leaves

    def apply():
        return _NoOp.apply(u, delta, A, B, C, D, z, db, None, (True, False))

    def both():
        return torch.autograd.grad(apply(), leaves, dy)

    for name, fn in (("apply", apply), ("apply + autograd.grad", both), ("single-threaded", both)):
        times = []
        with torch.autograd.set_multithreading_enabled(name != "single-threaded"):
            for _ in range(2000):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        if name == "single-threaded":  # the backward on the calling thread: no hand-over to a CUDA thread
            name = "apply + autograd.grad, torch.autograd.set_multithreading_enabled(False)"
        print(
            f"no-op autograd.Function on {device}, {name}: {sorted(times)[1000] * 1e6:.0f} us/call (median)"
        )


def timeline(shape, dname):
    """Three forward + backward calls as ``do_bench`` runs them (an L2 flush before each), under
    torch.profiler: when the host issues each op and launch, and when the GPU runs each kernel (µs from
    the first event). Where the GPU waits for the host, this shows it."""
    from torch.profiler import ProfilerActivity, profile

    _, _, fwd_bwd = _calls(shape, dname)
    for _ in range(5):
        fwd_bwd()
    cache = torch.empty(256 * 2**20, dtype=torch.int8, device="cuda")  # do_bench's L2 flush
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            cache.zero_()
            fwd_bwd()
        torch.cuda.synchronize()
    events = [e for e in prof.events() if e.time_range.end > e.time_range.start]
    t0 = min(e.time_range.start for e in events)
    shown = ("_Eager", "autograd::engine", "aten::zero_", "cuLaunch", "cudaLaunch")
    rows = []
    for e in events:
        on_gpu = e.device_type == torch.autograd.DeviceType.CUDA
        if on_gpu or e.cpu_parent is None or e.name.startswith(shown):
            start, length = e.time_range.start - t0, e.time_range.end - e.time_range.start
            rows.append((start, length, "GPU" if on_gpu else "CPU", e.name[:60]))
    print(f"fwd+bwd {shape} {dname}, 3 calls (start + duration, µs):")
    for start, length, where, name in sorted(rows):
        print(f"  {start:9.1f} +{length:8.1f}  {where} {name}")


def stamps(shape, dname, n=300, device="cuda"):
    """Where the host time of one eager forward + backward goes: µs from the call's start (medians of n
    calls, each after an L2-sized fill as ``do_bench`` does) at which our code enters and leaves
    ``EagerScan.forward`` and ``.backward``, and starts (``_pre``) and ends (``_post``) each kernel launch
    (``fL``: forward, ``bL``: backward, ``lL``: layout.py; ``#1`` the second of a kind), seen through
    :func:`fast_launch.set_phase_hook`. The gap between ``apply_ret`` and ``bwd_in`` is PyTorch's:
    ``autograd.grad`` and the hand-over to its CUDA thread. When the host decides a call's time, it is
    about the last launch's ``_pre`` plus the kernels queued from there (the L2 fill before the call
    absorbs the first part). Returns {phase: µs}."""
    import statistics

    from .fwd_time import selective_scan_fwd_time_kernel
    from .layout import bc_layouts_kernel

    tags = {kfwd.selective_scan_fwd_kernel: "fL", selective_scan_fwd_time_kernel: "fL",
            kbwd.selective_scan_bwd_kernel: "bL", bc_layouts_kernel: "lL"}  # fmt: skip
    marks = []

    def hook(event, kernel, consts, key):
        if kernel is None:
            marks.append((event, time.perf_counter_ns()))
        else:
            marks.append((tags[kernel] + event.removeprefix("launch"), time.perf_counter_ns()))

    x = make_inputs(shape, DTYPES[dname], device=device)
    leaves = [x[k].detach().requires_grad_() for k in ORDER]
    dy = torch.randn_like(leaves[0])
    fill = torch.empty(256 * 2**20 if device == "cuda" else 1024, dtype=torch.int8, device=device)
    cols: dict = {}
    before = fast_launch.set_phase_hook(hook)
    try:
        warm = min(10, n)
        for i in range(n + warm):
            fill.zero_()
            marks.clear()
            marks.append(("start", time.perf_counter_ns()))
            y = selective_scan_fn(*leaves, delta_softplus=True)
            marks.append(("apply_ret", time.perf_counter_ns()))
            torch.autograd.grad(y, leaves, dy)
            marks.append(("grad_ret", time.perf_counter_ns()))
            if i < warm:
                continue
            seen: dict = {}
            for tag, t in marks:
                k = seen[tag] = seen.get(tag, -1) + 1
                cols.setdefault(tag + (f"#{k}" if k else ""), []).append((t - marks[0][1]) / 1e3)
    finally:
        fast_launch.set_phase_hook(before)
    if device == "cuda":
        torch.cuda.synchronize()
    med = {c: statistics.median(v) for c, v in cols.items()}
    med = dict(sorted(med.items(), key=lambda kv: kv[1]))
    print(f"fwd+bwd {shape} {dname}, host µs from the call's start (medians of {n}): "
          + " ".join(f"{c}={t:.0f}" for c, t in med.items()), flush=True)  # fmt: skip
    return med


def graphed(shape, dname):
    """One eager call against the same call captured in a CUDA graph and replayed (timed as bench.py times,
    L2 flushed): what the kernels cost when the host is out of the way, as in a model captured whole."""
    _, fwd, fwd_bwd = _calls(shape, dname)
    for name, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
        eager = triton.testing.do_bench(fn, return_mode="median")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up (compile, cache the launch plans) off the default stream
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = fn()
        replay = triton.testing.do_bench(graph.replay, return_mode="median")
        graph.replay()
        pairs = zip(captured, fn()) if isinstance(captured, tuple) else [(captured, fn())]
        err = max(rel_error(b.double(), a) for a, b in pairs)  # atomics: not bit for bit
        print(f"{name} {shape} {dname}: eager {eager:.3f} ms, CUDA graph replay {replay:.3f} ms "
              f"(replayed outputs against eager ones: {err:.1e})", flush=True)  # fmt: skip


def ours_only():
    """Our selective_scan_fn timed alone at the benchmark's shapes (a quick check between full runs of
    bench.py, which times the other implementations beside it)."""
    from .bench import time_interleaved

    for mode in ("fwd", "fwd+bwd"):
        for dname, dtype in DTYPES.items():
            cells = []
            for shape in SHAPES:
                ms = time_interleaved({"ours": ours}, make_inputs(shape, dtype), mode, rounds=3)["ours"]["ms"]
                cells.append(f"{ms:.3f} ms")
                torch.cuda.empty_cache()
            print(f"ours {mode:7s} {dname}: " + " | ".join(cells), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--shape", type=int, nargs=4, default=(8, 1536, 2048, 16))
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    p.add_argument("--breakdown", action="store_true")
    p.add_argument("--peer", action="store_true", help="with --breakdown: mamba_ssm's scan too")
    p.add_argument("--host", action="store_true", help="host (Python, launch) time per call")
    p.add_argument("--ours", action="store_true", help="selective_scan_fn at the benchmark's shapes")
    p.add_argument("--floor", action="store_true", help="host time of a no-op autograd.Function")
    p.add_argument("--graph", action="store_true", help="eager against CUDA-graph replay at --shape")
    p.add_argument("--timeline", action="store_true", help="host and GPU events of 3 fwd+bwd calls")
    p.add_argument("--stamps", action="store_true", help="host time of an eager fwd+bwd, phase by phase")
    p.add_argument("--forward", choices=("auto", "channel", "time"), default="auto",
                   help="the forward kernel (auto: the time kernel where the channel one needs segments)")  # fmt: skip
    a = p.parse_args(argv)
    if a.forward != "auto":
        kfwd.OVERRIDES["time"] = a.forward == "time"
    if a.graph:
        return graphed(tuple(a.shape), a.dtype)
    if a.timeline:
        return timeline(tuple(a.shape), a.dtype)
    if a.stamps:
        return stamps(tuple(a.shape), a.dtype)
    if a.ours:
        return ours_only()
    if a.floor:
        return autograd_floor()
    if a.breakdown:
        return breakdown(tuple(a.shape), a.dtype, peer=a.peer)
    (host if a.host else kernels_alone)(tuple(a.shape), a.dtype)


if __name__ == "__main__":
    main()
