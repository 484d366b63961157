"""Benchmark the Triton conv against the ``causal_conv1d`` package's CUDA kernels and PyTorch, in one process.

    python -m minimamba.kernels.causal_conv1d.bench                  # GPU: measure; write results.json and
                                                                     # figures/conv_gpu.png
    python -m minimamba.kernels.causal_conv1d.bench --smoke --out D  # CPU: tiny shapes, Triton interpreter

``causal_conv1d`` is measured where it imports: ``PYTHONPATH=$(python scripts/build_peers.py path .peers)``
after ``scripts/build_peers.py download .peers`` and ``build .peers``. Where it does not, it is listed as
"not available", with the reason.

Shapes are the Mamba block's x, (batch, d_inner, L), with d_conv = 4, bias and SiLU: the 130M model's
training batch (8, 1536, 2048) and the 1.4B model's (4, 4096, 2048). x comes in two layouts, both of
which the block can hand the conv: ``time`` (each channel's L steps contiguous, ``x.contiguous()``) and
``channel`` (the d_inner channels of a step contiguous, a transposed (batch, L, d_inner) tensor). Three
modes: ``fwd`` (the forward kernel alone), ``bwd`` (the backward kernel alone, given x and dout: what the
training step's backward pays) and ``fwd+bwd`` (autograd, forward and ``torch.autograd.grad``). Our
backward is also timed at several ``ConvLaunch`` sizes beside the default one (``BWD_LAUNCH``), and with
the kernel that loads each shifted tile of x once (``window=True``).

Timing is **interleaved**: in each of ``--rounds`` rounds every implementation is timed once
(``triton.testing.do_bench``'s median, CUDA events), after ``--warmup`` seconds of calls; the table gives
the median over rounds and the ratio to our default.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import torch

import minimamba  # noqa: F401  (configures Triton first)

from ..selective_scan import bench as scan_bench  # the device and version lines of every kernel benchmark
from .conv import (
    BWD_LAUNCH,
    ConvLaunch,
    causal_conv1d_bwd,
    causal_conv1d_fn,
    causal_conv1d_fwd,
    causal_conv1d_ref,
)

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
COMMAND = "python -m minimamba.kernels.causal_conv1d.bench"
SHAPES = [(8, 1536, 2048), (4, 4096, 2048)]
SMOKE_SHAPES = [(2, 8, 16)]
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
LAYOUTS = ("time", "channel")
MODES = ("fwd", "bwd", "fwd+bwd")
D_CONV = 4
OURS, PEER, TORCH = "triton (ours)", "causal_conv1d (CUDA)", "PyTorch F.conv1d"
#: the backward launches tried beside BWD_LAUNCH: other sizes, and the kernel that loads x once per shift
BWD_TRIES = [
    launch
    for launch in (
        ConvLaunch(64, 64, 8),
        ConvLaunch(64, 64, 4),
        ConvLaunch(32, 128, 4),
        ConvLaunch(32, 128, 8),
        ConvLaunch(16, 256, 4),
        ConvLaunch(64, 64, 8, window=True),
        ConvLaunch(32, 64, 4, window=True),
        ConvLaunch(32, 128, 4, window=True),
        ConvLaunch(16, 256, 4, window=True),
    )
    if launch != BWD_LAUNCH
]
#: what ``--smoke`` (CPU) tries: the d_conv-loads kernel and the last window launch
SMOKE_TRIES = [BWD_TRIES[0], BWD_TRIES[-1]]


def launch_name(launch: ConvLaunch) -> str:
    kernel = ", x loaded once per shift" if launch.window else ""
    return f"{OURS} bwd {launch.block_d}x{launch.block_t}, {launch.num_warps} warps{kernel}"


def make_inputs(shape, dtype, layout, device, seed=0) -> dict:
    """x in the given layout, weight (d_inner, 4) and bias in fp32 (as the block keeps them), dout
    contiguous (as the layer above hands it)."""
    batch, d_inner, L = shape
    g = torch.Generator(device=device).manual_seed(seed)
    r = lambda *s: torch.randn(*s, device=device, generator=g)  # noqa: E731
    if layout == "time":
        x = r(batch, d_inner, L).to(dtype)
    elif layout == "channel":
        x = r(batch, L, d_inner).to(dtype).transpose(1, 2)
    else:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return {
        "x": x,
        "weight": r(d_inner, D_CONV) / D_CONV**0.5,
        "bias": 0.1 * r(d_inner),
        "dout": r(batch, d_inner, L).to(dtype),
    }


def peer() -> tuple[dict | None, str]:
    """({mode: function of the inputs}, version) for causal_conv1d, or (None, why not)."""
    try:
        import causal_conv1d
        from causal_conv1d import causal_conv1d_fn as peer_fn
        from causal_conv1d.cpp_functions import causal_conv1d_bwd_function, causal_conv1d_fwd_function
    except Exception as e:  # ImportError, or a CUDA extension built for another torch
        return None, f"not available ({type(e).__name__}: {str(e)[:120]})"

    def fwd(x, weight, bias, dout):
        return causal_conv1d_fwd_function(x, weight, bias, None, None, None, True)

    def bwd(x, weight, bias, dout):
        return causal_conv1d_bwd_function(x, weight, bias, dout, None, None, None, None, False, True)

    def fwd_bwd(x, weight, bias, dout):
        return peer_fn(x, weight, bias, activation="silu")

    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd_bwd}, getattr(causal_conv1d, "__version__", "?")


def ours() -> dict:
    return {
        "fwd": lambda x, weight, bias, dout: causal_conv1d_fwd(x, weight, bias, True),
        "bwd": lambda x, weight, bias, dout: causal_conv1d_bwd(x, weight, bias, dout, True),
        "fwd+bwd": lambda x, weight, bias, dout: causal_conv1d_fn(x, weight, bias, True),
    }


def reference() -> dict:
    ref = lambda x, weight, bias, dout: causal_conv1d_ref(x, weight, bias, True)  # noqa: E731
    return {"fwd": ref, "fwd+bwd": ref}


def _runner(fn, x: dict, mode: str):
    args = (x["x"], x["weight"], x["bias"], x["dout"])
    if mode != "fwd+bwd":

        def run():
            with torch.no_grad():
                return fn(*args)

        return run
    leaves = [a.detach().requires_grad_() for a in args[:3]]

    def run():
        y = fn(*leaves, args[3])
        return torch.autograd.grad(y, leaves, args[3])

    return run


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _bench_ms(run, device) -> float:
    if device.type != "cuda":
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    import triton

    return triton.testing.do_bench(run, warmup=25, rep=100, return_mode="median")


def time_interleaved(impls: dict, x: dict, mode: str, rounds: int, warmup_s: float) -> dict:
    """{name: {"ms": median over rounds, "all_ms": every round}} for ``impls`` ({name: f}) in ``mode``."""
    device = x["x"].device
    runs = {name: _runner(fn, x, mode) for name, fn in impls.items()}
    for run in runs.values():
        run()  # compile
        _sync(device)
        until = time.perf_counter() + warmup_s
        while time.perf_counter() < until:
            run()
        _sync(device)
    all_ms = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            all_ms[name].append(_bench_ms(run, device))
    return {name: {"ms": statistics.median(v), "all_ms": v} for name, v in all_ms.items()}


def check_agreement(x: dict) -> dict:
    """Largest |ours − reference| of the output and of dx, relative to the reference's largest value."""
    leaves = [a.detach().float().requires_grad_() for a in (x["x"], x["weight"], x["bias"])]
    ref = causal_conv1d_ref(*leaves, True)
    (dx_ref,) = torch.autograd.grad(ref, leaves[:1], x["dout"].float())
    out = causal_conv1d_fwd(x["x"], x["weight"], x["bias"], True).float()
    dx = causal_conv1d_bwd(x["x"], x["weight"], x["bias"], x["dout"], True)[0].float()
    rel = lambda a, b: float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))  # noqa: E731
    return {"out": rel(out, ref.detach()), "dx": rel(dx, dx_ref)}


def run_benchmark(shapes, dtypes, layouts, rounds, warmup_s, device, tries) -> dict:
    peer_fns, peer_version = peer() if device.type == "cuda" else (None, "not available (no GPU)")
    versions = scan_bench.versions() | {"causal_conv1d": peer_version if peer_fns else None}
    rows = []
    for shape in shapes:
        for dname in dtypes:
            for layout in layouts:
                x = make_inputs(shape, DTYPES[dname], layout, device)
                agreement = check_agreement(x)
                for mode in MODES:
                    impls = {OURS: ours()[mode]}
                    if mode == "bwd":
                        for launch in tries:
                            impls[launch_name(launch)] = lambda *a, launch=launch: causal_conv1d_bwd(
                                *a, True, launch=launch
                            )
                    if peer_fns:
                        impls[PEER] = peer_fns[mode]
                    if mode in reference():
                        impls[TORCH] = reference()[mode]
                    timed = time_interleaved(impls, x, mode, rounds, warmup_s)
                    for name, t in timed.items():
                        rows.append(
                            {"shape": list(shape), "dtype": dname, "layout": layout, "mode": mode, "impl": name,
                             "ms": t["ms"], "all_ms": t["all_ms"], "vs_ours": t["ms"] / timed[OURS]["ms"],
                             "agreement": agreement if name == OURS else None}
                        )  # fmt: skip
                    print(table([r for r in rows if r["shape"] == list(shape) and r["dtype"] == dname
                                 and r["layout"] == layout and r["mode"] == mode]), flush=True)  # fmt: skip
    return {
        "meta": {
            "command": " ".join([COMMAND, *sys.argv[1:]]),
            "device": scan_bench.device_name(device),
            "versions": versions,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "rounds": rounds,
            "warmup_s": warmup_s,
            "default_bwd_launch": [BWD_LAUNCH.block_d, BWD_LAUNCH.block_t, BWD_LAUNCH.num_warps],
        },
        "rows": rows,
    }


def table(rows) -> str:
    """A markdown table: shape, dtype, layout, mode, implementation, median ms, time ÷ ours."""
    lines = ["| shape | dtype | x layout | mode | implementation | median ms | ÷ ours |", "|---" * 7 + "|"]
    for r in rows:
        shape = "(" + ", ".join(map(str, r["shape"])) + ")"
        lines.append(
            f"| {shape} | {r['dtype']} | {r['layout']} | {r['mode']} | {r['impl']} | {r['ms']:.4f} | "
            f"{r['vs_ours']:.2f} |"
        )
    return "\n".join(lines)


def plot(res: dict, path: pathlib.Path) -> None:
    """Bars: median ms of each implementation, per mode, at the first shape in bf16, both layouts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    shape, dname = rows[0]["shape"], rows[0]["dtype"]
    layouts = [lay for lay in LAYOUTS if any(r["layout"] == lay for r in rows)]
    fig, axes = plt.subplots(1, len(layouts), figsize=(5.2 * len(layouts), 3.4), squeeze=False)
    impls = [OURS, PEER, TORCH]
    colors = {OURS: "C0", PEER: "C1", TORCH: "C2"}
    for ax, layout in zip(axes[0], layouts, strict=True):
        for i, impl in enumerate(impls):
            xs, ys = [], []
            for j, mode in enumerate(MODES):
                hit = [r for r in rows if r["shape"] == shape and r["dtype"] == dname and r["layout"] == layout
                       and r["mode"] == mode and r["impl"] == impl]  # fmt: skip
                if hit:
                    xs.append(j + (i - 1) * 0.27)
                    ys.append(hit[0]["ms"])
            if xs:
                ax.bar(xs, ys, width=0.27, color=colors[impl], label=impl)
        ax.set_xticks(range(len(MODES)), MODES)
        ax.set_ylabel("median ms")
        ax.set_title(f"x {tuple(shape)} {dname}, {layout}-contiguous", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(res["meta"]["device"], fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the median is reported)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of calls before the first round")
    parser.add_argument("--dtypes", default="bf16,fp32", help=f"comma-separated, of {', '.join(DTYPES)}")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (Triton interpreter)")
    parser.add_argument("--out", type=pathlib.Path, default=HERE, help="folder for results.json")
    parser.add_argument("--figure", type=pathlib.Path, default=ROOT / "figures" / "conv_gpu.png")
    args = parser.parse_args(argv)
    dtypes = [d for d in args.dtypes.split(",") if d]
    bad = [d for d in dtypes if d not in DTYPES]
    if bad or not dtypes:
        parser.error(f"--dtypes must be a comma-separated list of {', '.join(DTYPES)}, got {args.dtypes!r}")
    if args.smoke:
        device, shapes, rounds, warmup, tries = torch.device("cpu"), SMOKE_SHAPES, 1, 0.0, SMOKE_TRIES
    else:
        if not torch.cuda.is_available():
            parser.error("the benchmark needs a CUDA GPU (or --smoke for the CPU interpreter)")
        device, shapes, rounds, warmup, tries = (
            torch.device("cuda"),
            SHAPES,
            args.rounds,
            args.warmup,
            BWD_TRIES,
        )
    res = run_benchmark(shapes, dtypes, LAYOUTS, rounds, warmup, device, tries)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    if not args.smoke:
        plot(res, args.figure)
    print(f"device: {res['meta']['device']}; versions: {res['meta']['versions']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
