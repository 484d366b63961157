"""Benchmark the fused selective scan on a GPU against the anchors (mamba_ssm) and the PyTorch scans.

    python -m minimamba.kernels.selective_scan.bench --out DIR          # on the GPU: measure, write DIR/
    python -m minimamba.kernels.selective_scan.bench --redraw           # anywhere: figure + RESULTS.md
                                                                        # from the committed results.json

Inputs as in the anchor measurements (u, z, B, C ~ N(0,1); delta = 0.5·N(0,1) before softplus; delta_bias =
softplus⁻¹(U[1e-3, 1e-1]); A = −exp(log(1..16) + 0.1·N(0,1)); D = 1 + 0.1·N(0,1)); timing is
``triton.testing.do_bench``'s median (CUDA events, L2 flushed) after ``WARMUP_S`` of calls to reach the
host's steady state; forward under ``no_grad``; forward+backward
= forward + ``autograd.grad`` with respect to all 8 inputs. mamba_ssm's figures are the anchors' (cited,
not re-measured): it is not installed here.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import torch
import torch.nn.functional as F

import minimamba  # noqa: F401  (configures Triton first)
from minimamba import scan as mscan

from . import bwd as kbwd
from . import fwd as kfwd
from .layout import bc_layouts
from .op import selective_scan_fn

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SHAPES = [(8, 1536, 512, 16), (8, 1536, 2048, 16), (8, 1536, 8192, 16), (1, 1536, 65536, 16)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# the project's anchor file h200-selective-scan.md (measured 2026-11-28 on one H200; mamba-ssm 2.3.2.post1)
ANCHOR_SOURCE = "anchors/h200-selective-scan.md (H200, torch 2.11, triton 3.6, mamba-ssm 2.3.2.post1)"
MAMBA_SSM_MS = {
    ("fwd", "fp32"): [0.239, 0.879, 3.753, 3.888],
    ("fwd", "bf16"): [0.116, 0.449, 1.898, 2.209],
    ("fwd+bwd", "fp32"): [0.789, 2.918, 11.97, 12.41],
    ("fwd+bwd", "bf16"): [0.614, 2.191, 8.923, 9.873],
}
MAMBA_SSM_PEAK_GIB = {"fwd": 2.6, "fwd+bwd": 4.1}  # at (8, 1536, 8192, 16) fp32
ANCHOR_MAMBAPY_MS = {
    ("fwd", "fp32"): [4.09, 15.9, 63.7, 63.3],
    ("fwd+bwd", "fp32"): [12.9, 50.5, 202.5, 202.1],
}
HAND_MARK = "<!-- hand-written below this line: bench.py keeps it when it rewrites the file -->"


def make_inputs(shape, dtype, device="cuda", seed=0):
    batch, d_inner, L, N = shape
    g = torch.Generator(device=device).manual_seed(seed)
    r = lambda *s: torch.randn(*s, device=device, generator=g)  # noqa: E731
    dt = torch.rand(d_inner, device=device, generator=g) * (1e-1 - 1e-3) + 1e-3
    return {
        "u": r(batch, d_inner, L).to(dtype),
        "delta": (0.5 * r(batch, d_inner, L)).to(dtype),
        "A": -torch.exp(torch.log(torch.arange(1, N + 1, device=device).float()) + 0.1 * r(d_inner, N)),
        "B": r(batch, N, L).to(dtype),
        "C": r(batch, N, L).to(dtype),
        "D": 1 + 0.1 * r(d_inner),
        "z": r(batch, d_inner, L).to(dtype),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),  # softplus⁻¹(dt)
    }


ORDER = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
WARMUP_S = [0.5]  # seconds of calls before each measurement (see _time; --warmup sets it)
#: Why ours is measured twice. The first do_bench of a short eager fwd+bwd in a process measured 1.2-1.5 ms
#: on the H200's host whatever the warm-up before it (0, 0.5 or 2 s of calls), and the next ones 0.53-0.91
#: (fp32) at (8, 1536, 512, 16) (fourth session, .dev/probe/settle.py). The table reports the second.
FIRST_NOTE = "ours: the second of two measurements in the same process (the first is in results.json)"


def bytes_floor(shape, dtype, mode):
    """Bytes that must cross HBM: forward reads u, delta, z, B, C and writes y; the backward reads u,
    delta, z, B, C, dy and writes du, ddelta, dz, dB, dC (parameters and states are negligible)."""
    batch, d_inner, L, N = shape
    s = torch.finfo(dtype).bits // 8
    big, small = batch * d_inner * L * s, batch * N * L * s
    fwd = 4 * big + 2 * small
    return fwd if mode == "fwd" else fwd + (7 * big + 4 * small)


def copy_bandwidth():
    """Device-to-device copy, bytes read + written per second (the memory ceiling)."""
    import triton

    x = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    ms = triton.testing.do_bench(lambda: y.copy_(x), return_mode="median")
    return 2 * x.numel() / (ms * 1e-3)


# ---- the implementations, all f(u, delta, A, B, C, D, z, delta_bias) -> y with delta_softplus=True ----


def ours(u, delta, A, B, C, D, z, delta_bias):
    return selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, True)


def ref(u, delta, A, B, C, D, z, delta_bias):
    return mscan.selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, True)


def pytorch_backend(name):
    def f(u, delta, A, B, C, D, z, delta_bias):
        return mscan.selective_scan(u, delta, A, B, C, D, z, delta_bias, True, backend=name)

    return f


def mambapy_scan(u, delta, A, B, C, D, z, delta_bias):
    """mambapy's selective scan (its Blelloch ``pscan``), in its own (batch, L, d_inner) layout."""
    from mambapy.pscan import pscan

    delta = F.softplus(delta + delta_bias)  # (batch, L, d_inner)
    deltaA = torch.exp(delta.unsqueeze(-1) * A)  # (batch, L, d_inner, N)
    BX = delta.unsqueeze(-1) * B.unsqueeze(2) * u.unsqueeze(-1)  # (batch, L, d_inner, N)
    hs = pscan(deltaA, BX)
    y = (hs @ C.unsqueeze(-1)).squeeze(3) + D * u  # (batch, L, d_inner)
    return y * F.silu(z)


def to_mambapy_layout(x):
    out = dict(x)
    for k in ("u", "delta", "z", "B", "C"):
        out[k] = x[k].transpose(1, 2).contiguous()  # mambapy needs contiguous (batch, L, ·)
    return out


# ---- timing ----


def _time(fn, x, mode, max_single_s=2.0):
    """Median ms via do_bench, or one timed call when a single call is slow; peak memory in GiB."""
    import triton

    args = [x[k] for k in ORDER]
    if mode == "fwd":

        def run():
            with torch.no_grad():
                return fn(*args)
    else:
        leaves = [a.detach().requires_grad_() for a in args]
        dy = torch.randn_like(args[0])

        def run():
            y = fn(*leaves)
            return torch.autograd.grad(y, leaves, dy)

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    run()
    torch.cuda.synchronize()
    single = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30
    if single > max_single_s:  # too slow for repeats: time one more call
        t0 = time.perf_counter()
        run()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1e3, peak
    # The steady state, as a training loop sees it: do_bench's own warm-up (25 ms) is too short for the
    # host. The first do_bench of a short call in a fresh process measured 1.3-1.7 ms where the next two
    # measured 0.53-0.73 (ours, fwd+bwd at (8, 1536, 512, 16), fourth session's probe): every
    # implementation gets WARMUP_S of calls first.
    until = time.perf_counter() + WARMUP_S[0]
    while time.perf_counter() < until:
        run()
    torch.cuda.synchronize()
    return triton.testing.do_bench(run, warmup=25, rep=100, return_mode="median"), peak


def measure(fn, x, mode):
    try:
        ms, peak = _time(fn, x, mode)
        return {"ms": ms, "peak_gib": peak}
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"ms": None, "peak_gib": None, "note": "out of memory"}


def accuracy(shape, dtype):
    """Relative (norm) error of y and of every gradient against float64 on the same rounded inputs."""
    from minimamba.testing import rel_error

    x = make_inputs(shape, dtype, seed=1)
    leaves = [x[k].detach().requires_grad_() for k in ORDER]
    leaves64 = [x[k].detach().double().requires_grad_() for k in ORDER]
    y = ours(*leaves)
    y64 = ref(*leaves64)
    dy = torch.randn_like(y64)
    g = torch.autograd.grad(y, leaves, dy.to(y.dtype))
    g64 = torch.autograd.grad(y64, leaves64, dy)
    out = {"y": rel_error(y64, y)}
    for k, a, b in zip(ORDER, g, g64):
        out[f"d{k}"] = rel_error(b, a)
    return out


#: What a swept configuration sets (the channel kernel's, then which forward kernel and the time kernel's).
KEYS = ("num_warps", "stages", "target", "time", "time_block_d", "time_block_t", "time_warps")


def sweep(shape, dtype, configs_fwd, configs_bwd):
    """Time the kernels alone over launch configurations (dicts of KEYS)."""
    import triton

    x = make_inputs(shape, dtype)
    u, delta, A, B, C, D, z, db = (x[k] for k in ORDER)
    B4, C4 = (t.unsqueeze(1) for t in (B, C))  # (batch, 1, N, L), as the op passes them
    Bt, Ct = bc_layouts(B.unsqueeze(1), C.unsqueeze(1), False, True)[
        2:
    ]  # the backward's (batch, 1, L, N) fp32
    dy = torch.randn_like(u)
    _, _, hc = kfwd.selective_scan_fwd(u, delta, A, B4, C4, D, z, db, None, True, True)

    def time_fwd(cfg):
        return triton.testing.do_bench(
            lambda: kfwd.selective_scan_fwd(u, delta, A, B4, C4, D, z, db, None, True, False, **cfg),
            return_mode="median",
        )

    def time_bwd(cfg):
        return triton.testing.do_bench(
            lambda: kbwd.selective_scan_bwd(u, delta, A, Bt, Ct, D, z, db, hc, dy, None, True, False, **cfg),
            return_mode="median",
        )

    rows = []
    for kern, configs, timer in (("fwd", configs_fwd, time_fwd), ("bwd", configs_bwd, time_bwd)):
        for cfg in configs:
            row = {"kernel": kern, **cfg}
            try:
                row["ms"] = timer(cfg)
                last = (kfwd if kern == "fwd" else kbwd).LAST[0]
                row["regs"], row["spills"] = getattr(last, "n_regs", None), getattr(last, "n_spills", None)
            except Exception as e:  # a configuration that does not compile (too many registers...)
                row["error"] = repr(e)[:200]
            rows.append(row)
    return rows


def _cfg(r) -> str:
    return "/".join(str(r[k]) for k in KEYS if k in r)


def best_configs(rows, shape, dname) -> dict:
    """The fastest swept configuration of each kernel at this shape and dtype (empty without a sweep)."""
    out = {}
    for kern in ("fwd", "bwd"):
        ok = [r for r in rows if r["kernel"] == kern and tuple(r["shape"]) == tuple(shape)
              and r["dtype"] == dname and "ms" in r]  # fmt: skip
        if not ok and dname != "fp32":  # swept in fp32 only: use its winner
            return best_configs(rows, shape, "fp32")
        if ok:
            r = min(ok, key=lambda r: r["ms"])
            out[kern] = {k: r[k] for k in KEYS if k in r}
    return out


def run_benchmark(out_dir: pathlib.Path, do_sweep: bool) -> dict:
    import triton

    props = torch.cuda.get_device_properties(0)
    res = {
        "device": f"{props.name}, {props.multi_processor_count} SMs, compute capability {props.major}.{props.minor}",
        "versions": {
            "torch": torch.__version__,
            "triton": triton.__version__,
            "python": platform.python_version(),
        },
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "shapes": SHAPES,
        "copy_bytes_per_s": copy_bandwidth(),
        "warmup_s": WARMUP_S[0],
        "times": [],
        "sweep": [],
        "accuracy": {},
    }
    try:
        import mambapy

        res["versions"]["mambapy"] = getattr(mambapy, "__version__", "1.2.0")
        have_mambapy = True
    except ImportError:
        have_mambapy = False
    # the best PyTorch scan: "chunked" where it exists, else every parallel one
    pt_backends = [b for b in mscan.BACKENDS if b not in ("ref", "triton", "sequential")]
    pt_backends = ["chunked"] if "chunked" in pt_backends else pt_backends
    print("device:", res["device"], res["versions"], "PyTorch scans:", pt_backends, flush=True)
    print(f"copy bandwidth {res['copy_bytes_per_s'] / 1e12:.2f} TB/s", flush=True)

    if do_sweep:
        # one warp of 32 channels per program (the layout: one channel per thread); tiles in flight;
        # target programs (1: one segment per sequence, else segments along L until there are that many)
        # (the ranges the second sweep of RESULTS.md left open: fwd 2 stages and 2112 programs lost
        # everywhere, bwd more programs won up to 4224, the largest tried)
        cf = [{"num_warps": 1, "stages": s, "target": t, "time": False}
              for s in (3, 4) for t in (2 * 132, 4 * 132, 8 * 132)]  # fmt: skip
        # the forward parallel along time: channels per program, steps per tile, warps (the third session's
        # sweeps, RESULTS.md: 4/512/4 won in fp32, 2/512/2 in bf16)
        cf += [{"time": True, "time_block_d": d, "time_block_t": t, "time_warps": w}
               for d, t, w in ((4, 512, 4), (2, 512, 2), (4, 256, 2), (2, 1024, 4))]  # fmt: skip
        cb = [{"num_warps": 1, "stages": 1, "target": t} for t in (4 * 132, 16 * 132, 32 * 132, 64 * 132)]
        for shape in (SHAPES[1], SHAPES[3]):
            for dname in ("fp32",) if do_sweep == "fp32" else ("fp32", "bf16"):
                rows = sweep(shape, DTYPES[dname], cf, cb)
                for r in rows:
                    r.update(shape=list(shape), dtype=dname)
                res["sweep"] += rows
                errors = [r["error"] for r in rows if "error" in r]
                if errors:
                    print(f"sweep: {len(errors)} configurations failed, first: {errors[0]}", flush=True)
                for kern in ("fwd", "bwd"):
                    ok = sorted((r for r in rows if r["kernel"] == kern and "ms" in r), key=lambda r: r["ms"])
                    print(f"sweep {kern} {shape} {dname}: " + ", ".join(
                        f"{_cfg(r)}={r['ms']:.3f} ({r.get('regs')}r/{r.get('spills')}s)" for r in ok[:6]), flush=True)  # fmt: skip
        (out_dir / "results.json").write_text(json.dumps(res, indent=1))

    for si, shape in enumerate(SHAPES):
        for dname, dtype in DTYPES.items():
            tuned = best_configs(res["sweep"], SHAPES[3] if shape[0] == 1 else SHAPES[1], dname)
            kfwd.OVERRIDES.clear()
            kfwd.OVERRIDES.update(tuned.get("fwd", {}))
            kbwd.OVERRIDES.clear()
            kbwd.OVERRIDES.update(tuned.get("bwd", {}))
            res.setdefault("configs", []).append({"shape": list(shape), "dtype": dname,
                "fwd": kfwd.default_config(*shape, torch.device("cuda"), dtype),
                "bwd": kbwd.default_config(*shape, torch.device("cuda"), dtype)})  # fmt: skip
            x = make_inputs(shape, dtype)
            impls = {"triton (ours)": (ours, x)}
            if dname == "fp32" and shape[2] <= 2048:
                impls["selective_scan_ref"] = (ref, x)
            for b in pt_backends:  # fwd+bwd of the PyTorch scans only where it takes seconds, not minutes
                impls[f"minimamba.scan[{b}]"] = (pytorch_backend(b), x)
            if have_mambapy and dname == "fp32":
                impls["mambapy pscan"] = (
                    mambapy_scan,
                    None,
                )  # its (batch, L, ·) copies made when its turn comes
            for name, (fn, xi) in impls.items():
                xi = to_mambapy_layout(x) if xi is None else xi
                for mode in ("fwd", "fwd+bwd"):
                    if mode == "fwd+bwd" and (
                        name == "selective_scan_ref"
                        or (name.startswith("minimamba.scan") and shape[2] > 2048)
                    ):
                        continue
                    r = measure(fn, xi, mode)
                    if fn is ours:  # the second of two (see FIRST_NOTE); the first is kept as ms_first
                        first, r = r["ms"], measure(fn, xi, mode)
                        r["ms_first"] = first
                    r.update(impl=name, mode=mode, dtype=dname, shape=list(shape), shape_index=si)
                    res["times"].append(r)
                    ms = "OOM" if r["ms"] is None else f"{r['ms']:.3f} ms"
                    print(f"{name:24s} {mode:7s} {dname} {shape}: {ms}, peak {r['peak_gib']} GiB", flush=True)
                    torch.cuda.empty_cache()
                del xi
            del x, impls
            torch.cuda.empty_cache()
    for shape in ((8, 1536, 512, 16), (1, 1536, 4096, 16)):  # one of each launch-size class
        tuned = best_configs(res["sweep"], SHAPES[3] if shape[0] == 1 else SHAPES[1], "fp32")
        kfwd.OVERRIDES.clear()
        kfwd.OVERRIDES.update(tuned.get("fwd", {}))
        kbwd.OVERRIDES.clear()
        kbwd.OVERRIDES.update(tuned.get("bwd", {}))
        for dname in DTYPES:
            key = f"{dname} {shape}"
            res["accuracy"][key] = accuracy(shape, DTYPES[dname])
            print("accuracy", key, {k: f"{v:.1e}" for k, v in res["accuracy"][key].items()}, flush=True)
    (out_dir / "results.json").write_text(json.dumps(res, indent=1))
    return res


# ---- report: RESULTS.md and the figure, from results.json (runs on a CPU too) ----


def _get(res, impl, mode, dname, si):
    for r in res["times"]:
        if r["impl"] == impl and r["mode"] == mode and r["dtype"] == dname and r["shape_index"] == si:
            return r
    return None


def floor_ms(res, shape, dname, mode):
    return bytes_floor(shape, DTYPES[dname], mode) / res["copy_bytes_per_s"] * 1e3


def write_results_md(res: dict, path: pathlib.Path) -> None:
    hand = ""
    if path.exists() and HAND_MARK in path.read_text():
        hand = path.read_text().split(HAND_MARK, 1)[1]
    shapes = [tuple(s) for s in res["shapes"]]
    head = "| impl | mode | dtype | " + " | ".join(",".join(map(str, s)) for s in shapes) + " |"
    sep = "|---|---|---|" + "---|" * len(shapes)
    lines = [
        "# The fused selective scan on the GPU: what was measured",
        "",
        "Written by `python -m minimamba.kernels.selective_scan.bench` (do not edit above the mark at the end).",
        "",
        f"- device: {res['device']}; measured {res['date']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}",
        f"- device-to-device copy: {res['copy_bytes_per_s'] / 1e12:.2f} TB/s (bytes read + written)",
        "- timing: `triton.testing.do_bench` median (CUDA events, L2 flushed) after "
        f"{res.get('warmup_s', 0)} s of calls (the host's steady state); {FIRST_NOTE}; fwd under `no_grad`;"
        " fwd+bwd =",
        "  forward + `autograd.grad` w.r.t. all 8 inputs; inputs as in the anchors file; `delta_softplus=True`,",
        "  z and D given, B and C (batch, N, L). Shapes are (batch, d_inner, L, N).",
        f"- mamba_ssm rows are the anchors' figures, cited, not re-measured: {ANCHOR_SOURCE}.",
        "",
        "## Times (ms, median)",
        "",
        head,
        sep,
    ]
    impls = []
    for r in res["times"]:
        if r["impl"] not in impls:
            impls.append(r["impl"])
    for mode in ("fwd", "fwd+bwd"):
        for dname in DTYPES:
            for impl in impls:
                cells = []
                for si in range(len(shapes)):
                    r = _get(res, impl, mode, dname, si)
                    cells.append("—" if r is None else ("OOM" if r["ms"] is None else f"{r['ms']:.3g}"))
                if any(c != "—" for c in cells):
                    lines.append(f"| {impl} | {mode} | {dname} | " + " | ".join(cells) + " |")
            cells = [f"{v:.4g}" for v in MAMBA_SSM_MS[(mode, dname)]]
            lines.append(f"| mamba_ssm CUDA (anchor) | {mode} | {dname} | " + " | ".join(cells) + " |")
            cells = [f"{floor_ms(res, s, dname, mode):.3g}" for s in shapes]
            lines.append(f"| bytes floor | {mode} | {dname} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Ours against mamba_ssm (speed-up = mamba_ssm time / our time) and against the floor",
        "",
    ]
    lines += [head.replace("| impl | mode | dtype |", "| ratio | mode | dtype |"), sep]
    for mode in ("fwd", "fwd+bwd"):
        for dname in DTYPES:
            sp, fl = [], []
            for si, s in enumerate(shapes):
                r = _get(res, "triton (ours)", mode, dname, si)
                ok = r is not None and r["ms"]
                sp.append(f"{MAMBA_SSM_MS[(mode, dname)][si] / r['ms']:.2f}x" if ok else "—")
                fl.append(f"{100 * floor_ms(res, s, dname, mode) / r['ms']:.0f}%" if ok else "—")
            lines.append(f"| speed-up vs mamba_ssm | {mode} | {dname} | " + " | ".join(sp) + " |")
            lines.append(f"| floor / our time | {mode} | {dname} | " + " | ".join(fl) + " |")
    lines += ["", "## Peak memory (GiB, `torch.cuda.max_memory_allocated`, inputs and dy included)", ""]
    si = shapes.index((8, 1536, 8192, 16))
    lines += ["| impl | fwd | fwd+bwd |", "|---|---|---|"]
    for impl in impls:
        cells = []
        for mode in ("fwd", "fwd+bwd"):
            r = _get(res, impl, mode, "fp32", si)
            cells.append("—" if r is None or r["peak_gib"] is None else f"{r['peak_gib']:.2f}")
        lines.append(f"| {impl} (8,1536,8192,16) fp32 | " + " | ".join(cells) + " |")
    lines.append(f"| mamba_ssm (anchor) | {MAMBA_SSM_PEAK_GIB['fwd']} | {MAMBA_SSM_PEAK_GIB['fwd+bwd']} |")
    lines += ["", "## Accuracy against float64 (relative norm error, same rounded inputs)", ""]
    keys = list(next(iter(res["accuracy"].values())).keys()) if res["accuracy"] else []
    lines += ["| dtype, shape | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for dname, acc in res["accuracy"].items():
        lines.append(f"| {dname} | " + " | ".join(f"{acc[k]:.1e}" for k in keys) + " |")
    if res.get("sweep"):
        lines += [
            "",
            "## Launch configurations tried (kernel alone, ms; " + "/".join(KEYS) + ", those set)",
            "",
        ]
        for shape in sorted({tuple(r["shape"]) for r in res["sweep"]}, reverse=True):
            for dname in DTYPES:
                for kern in ("fwd", "bwd"):
                    rows = [r for r in res["sweep"] if tuple(r["shape"]) == shape and r["dtype"] == dname
                            and r["kernel"] == kern and "ms" in r]  # fmt: skip
                    rows.sort(key=lambda r: r["ms"])
                    if rows:
                        best = ", ".join(f"{_cfg(r)}: {r['ms']:.3f}" for r in rows)
                        lines.append(f"- {kern} {shape} {dname}: {best}")
    if res.get("configs"):
        lines += ["", "## Launch sizes used in the table above (the sweep's winners, else the defaults)", ""]
        used: dict = {}  # each configuration, with the shapes it ran
        for c in res["configs"]:
            key = (c["dtype"], json.dumps(c["fwd"]), json.dumps(c["bwd"]))
            used.setdefault(key, (c, []))[1].append(",".join(map(str, c["shape"])))
        for (dname, _, _), (c, shapes) in used.items():
            lines.append(f"- {dname} at {' and '.join(shapes)}: fwd {c['fwd']}, bwd {c['bwd']}")
    lines += ["", HAND_MARK]
    path.write_text("\n".join(lines) + hand)


def plot(res: dict, path: pathlib.Path | None = None):
    """The benchmark's figure (a matplotlib Figure, outside pyplot's state), written to ``path`` if given."""
    import matplotlib
    from matplotlib.figure import Figure

    shapes = [tuple(s) for s in res["shapes"]]
    b8 = [i for i, s in enumerate(shapes) if s[0] == 8]
    b1 = [i for i, s in enumerate(shapes) if s[0] == 1]
    fig = Figure(figsize=(12, 5.8))
    axes = fig.subplots(1, 2, sharey=True)
    impls = []
    for r in res["times"]:
        if r["impl"] not in impls:
            impls.append(r["impl"])
    colors = dict(
        zip(
            impls + ["mamba_ssm CUDA (anchor)", "bytes floor"],
            matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] * 3,
        )
    )
    for ax, mode in zip(axes, ("fwd", "fwd+bwd")):
        for dname, ls in (("fp32", "-"), ("bf16", "--")):
            series = {}
            for impl in impls:
                series[impl] = [(_get(res, impl, mode, dname, i) or {}).get("ms") for i in range(len(shapes))]
            series["mamba_ssm CUDA (anchor)"] = MAMBA_SSM_MS[(mode, dname)]
            series["bytes floor"] = [floor_ms(res, s, dname, mode) for s in shapes]
            for name, ys in series.items():
                pts = [(shapes[i][2], ys[i]) for i in b8 if ys[i]]
                if not pts:
                    continue
                ax.plot(*zip(*pts), ls, marker="o", color=colors[name], label=f"{name} {dname}", lw=1.5)
                one = [(shapes[i][2], ys[i]) for i in b1 if ys[i]]
                if one:
                    ax.plot(*zip(*one), marker="D", mfc="none", color=colors[name], ls="none")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L (batch 8; hollow diamonds: batch 1, L = 65536)")
        ax.set_title(f"{mode}: (batch, 1536, L, 16) on {res['device'].split(',')[0]}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("time (ms, median)")
    handles = {}
    for ax in axes:  # one legend for both panels (the reference runs only in the forward panel)
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=pathlib.Path, default=HERE, help="where results.json goes (default: here)")
    p.add_argument("--sweep", action="store_true", help="also time the kernels over launch configurations")
    p.add_argument(
        "--sweep-fp32", action="store_true", help="the sweep in fp32 only (its winners used for bf16)"
    )
    p.add_argument("--warmup", type=float, default=WARMUP_S[0], help="seconds of calls before each timing")
    p.add_argument("--redraw", action="store_true", help="no measuring: RESULTS.md and the figure from JSON")
    p.add_argument("--results", type=pathlib.Path, default=HERE / "results.json")
    a = p.parse_args(argv)
    WARMUP_S[0] = a.warmup
    if a.redraw:
        res = json.loads(a.results.read_text())
    else:
        a.out.mkdir(parents=True, exist_ok=True)
        res = run_benchmark(a.out, "fp32" if a.sweep_fp32 else a.sweep)
    out_md = HERE / "RESULTS.md" if a.redraw else a.out / "RESULTS.md"
    if not a.redraw and (HERE / "RESULTS.md").exists():
        out_md.write_text((HERE / "RESULTS.md").read_text())  # keep the hand-written part
    write_results_md(res, out_md)
    fig = ROOT / "figures" / "scan_gpu.png" if a.redraw else a.out / "scan_gpu.png"
    plot(res, fig)
    print(f"wrote {out_md} and {fig}")


if __name__ == "__main__":
    main()
