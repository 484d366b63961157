"""Benchmark the fused selective scan against mamba_ssm, mambapy and the PyTorch scans, in one process.

    python -m minimamba.kernels.selective_scan.bench                     # GPU: measure; write results.json,
                                                                         # RESULTS.md, figures/scan_gpu.png
    python -m minimamba.kernels.selective_scan.bench --redraw            # RESULTS.md and the figure from
                                                                         # the committed results.json
    python -m minimamba.kernels.selective_scan.bench --launch-overhead   # eager fwd+bwd at L = 512, fp32 and
                                                                         # bf16, fast launch on against off
    python -m minimamba.kernels.selective_scan.bench --checkpoint        # mamba_ssm's checkpoint read by
                                                                         # MambaLM: logits, greedy tokens
    python -m minimamba.kernels.selective_scan.bench --all               # all three in one run
    python -m minimamba.kernels.selective_scan.bench --smoke --out DIR   # CPU: tiny shapes, interpreter

mamba_ssm is measured where it imports: ``PYTHONPATH=$(python scripts/build_peers.py path .peers)`` after
``scripts/build_peers.py download .peers`` and ``build .peers``; mambapy where it is installed
(``pip install mambapy``). A peer that does not import is listed as "not available", with the reason.

Every implementation is a function of (u, delta, A, B, C, D, z, delta_bias) with ``delta_softplus=True``,
on the same inputs (u, z, B, C ~ N(0,1); delta = 0.5·N(0,1) before softplus; delta_bias =
softplus⁻¹(U[1e-3, 1e-1]); A = −exp(log(1..16) + 0.1·N(0,1)); D = 1 + 0.1·N(0,1)); B and C (batch, N, L).
Forward under ``no_grad``; forward+backward = forward + ``autograd.grad`` with respect to all 8 inputs.
The implementations are timed **interleaved**: in each of ``--rounds`` rounds every implementation is
timed once (``triton.testing.do_bench``'s median, CUDA events, L2 flushed), after ``--warmup`` seconds of
calls before its first round; the table gives the median over rounds (results.json keeps every round).
Peak memory is ``torch.cuda.max_memory_allocated`` over one call, inputs and dy included.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import minimamba  # noqa: F401  (configures Triton first)
from minimamba import scan as mscan

from . import bwd as kbwd
from . import fast_launch
from . import fwd as kfwd
from .layout import bc_layouts
from .op import selective_scan_fn

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
COMMAND = "python -m minimamba.kernels.selective_scan.bench"
SHAPES = [(8, 1536, 512, 16), (8, 1536, 2048, 16), (8, 1536, 8192, 16), (1, 1536, 65536, 16)]
SMOKE_SHAPES = [(1, 2, 8, 2), (2, 2, 12, 2)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
ORDER = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
#: the names of the implementations in results.json and the tables
OURS, MAMBA_SSM, MAMBAPY, REF = (
    "triton (ours)",
    "mamba_ssm selective_scan_fn",
    "mambapy pscan",
    "selective_scan_ref",
)
#: the shape at which peak memory is tabled (the largest of batch 8)
PEAK_SHAPE = (8, 1536, 8192, 16)
#: results.json's layout: 2 = interleaved rounds, peers measured in the same process
FORMAT = 2


def make_inputs(shape, dtype, device="cuda", seed=0) -> dict:
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


def bytes_floor(shape, dtype, mode) -> int:
    """Bytes that must cross HBM: forward reads u, delta, z, B, C and writes y; the backward reads u,
    delta, z, B, C, dy and writes du, ddelta, dz, dB, dC (parameters and states are negligible)."""
    batch, d_inner, L, N = shape
    s = torch.finfo(dtype).bits // 8
    big, small = batch * d_inner * L * s, batch * N * L * s
    fwd = 4 * big + 2 * small
    return fwd if mode == "fwd" else fwd + (7 * big + 4 * small)


def copy_bandwidth() -> float:
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


def to_mambapy_layout(x: dict) -> dict:
    out = dict(x)
    for k in ("u", "delta", "z", "B", "C"):
        out[k] = x[k].transpose(1, 2).contiguous()  # mambapy needs contiguous (batch, L, ·)
    return out


def peers() -> tuple[dict, dict, dict]:
    """(implementations that import, {name: why not} for those that do not, {package: version})."""
    found, missing, versions = {}, {}, {}
    try:
        import mamba_ssm
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as mamba_ssm_fn

        def mamba_ssm_scan(u, delta, A, B, C, D, z, delta_bias):
            return mamba_ssm_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)

        found[MAMBA_SSM] = mamba_ssm_scan
        versions["mamba_ssm"] = getattr(mamba_ssm, "__version__", "?")
    except Exception as e:  # ImportError, or a CUDA extension built for another torch
        missing[MAMBA_SSM] = f"not available ({type(e).__name__}: {str(e)[:120]})"
    try:
        import mambapy

        found[MAMBAPY] = mambapy_scan
        versions["mambapy"] = getattr(mambapy, "__version__", "?")
    except Exception as e:
        missing[MAMBAPY] = f"not available ({type(e).__name__}: {str(e)[:120]})"
    return found, missing, versions


def versions() -> dict:
    import triton

    out = {"torch": torch.__version__, "triton": triton.__version__, "python": platform.python_version()}
    out["CUDA"] = torch.version.cuda or "none"
    return out


def device_name(device: torch.device) -> str:
    if device.type != "cuda":
        return f"CPU ({platform.processor() or platform.machine()}), Triton interpreter"
    props = torch.cuda.get_device_properties(device)
    return f"{props.name}, {props.multi_processor_count} SMs, compute capability {props.major}.{props.minor}"


# ---- timing: interleaved rounds ----


def _runner(fn, x: dict, mode: str):
    args = [x[k] for k in ORDER]
    if mode == "fwd":

        def run():
            with torch.no_grad():
                return fn(*args)

        return run
    leaves = [a.detach().requires_grad_() for a in args]
    dy = torch.randn_like(args[0])

    def run():
        y = fn(*leaves)
        return torch.autograd.grad(y, leaves, dy)

    return run


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _once_ms(run, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    run()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def _bench_ms(run, device, slow: bool) -> float:
    """One measurement: do_bench's median on a GPU (one timed call when a call takes seconds), the median
    of 3 timed calls on a CPU."""
    if device.type != "cuda":
        return statistics.median(_once_ms(run, device) for _ in range(3))
    if slow:
        return _once_ms(run, device)
    import triton

    return triton.testing.do_bench(run, warmup=25, rep=100, return_mode="median")


def time_interleaved(impls: dict, x: dict, mode: str, rounds: int = 5, warmup_s: float = 0.5) -> dict:
    """Time every implementation of ``impls`` ({name: f}) on the inputs ``x`` in ``mode`` ("fwd" or
    "fwd+bwd"): ``rounds`` rounds, each timing every implementation once, in turn; before its first
    round each gets ``warmup_s`` seconds of calls (the host's steady state, as a training loop sees it)
    and one call that measures its peak memory. Returns {name: {"ms": median over rounds, "all_ms": every
    round, "peak_gib"}} ({"ms": None, "note": "out of memory"} for one that ran out)."""
    device = x["u"].device
    runs, out, slow = {}, {}, {}
    for name, fn in impls.items():
        xi = to_mambapy_layout(x) if fn is mambapy_scan else x
        try:
            run = _runner(fn, xi, mode)
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            _once_ms(run, device)  # the first call (compiles, where there is something to compile)
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
            slow[name] = _once_ms(run, device) > 2000
            until = time.perf_counter() + (0 if slow[name] else warmup_s)
            while time.perf_counter() < until:
                run()
            runs[name] = run
            out[name] = {"ms": None, "all_ms": [], "peak_gib": peak}
        except torch.cuda.OutOfMemoryError:
            out[name] = {"ms": None, "all_ms": [], "peak_gib": None, "note": "out of memory"}
            torch.cuda.empty_cache()
    for _ in range(rounds):
        for name, run in list(runs.items()):
            try:
                out[name]["all_ms"].append(_bench_ms(run, device, slow[name]))
            except torch.cuda.OutOfMemoryError:
                out[name].update(note="out of memory")
                del runs[name]
                torch.cuda.empty_cache()
    for r in out.values():
        if r["all_ms"]:
            r["ms"] = statistics.median(r["all_ms"])
    return out


def accuracy(shape, dtype, device="cuda") -> dict:
    """Relative (norm) error of y and of every gradient against float64 on the same rounded inputs."""
    from minimamba.testing import rel_error

    x = make_inputs(shape, dtype, device=device, seed=1)
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


def launch_overhead(rounds: int = 7, warmup_s: float = 0.5, shape=(8, 1536, 512, 16)) -> dict:
    """Eager forward + backward of ``selective_scan_fn`` at ``shape`` in fp32 and bf16, with the host-time
    layer (fast_launch.py) on and off, interleaved: in each round both, in turn. {dtype: {"on", "off"}}."""
    out = {}
    before = fast_launch.fast_launch_enabled()
    try:
        for dname, dtype in DTYPES.items():
            x = make_inputs(shape, dtype)
            run = _runner(ours, x, "fwd+bwd")
            times = {"on": [], "off": []}
            for state in ("on", "off"):  # warm-up (and compilation) both ways
                fast_launch.set_fast_launch(state == "on")
                until = time.perf_counter() + warmup_s
                while time.perf_counter() < until:
                    run()
            for _ in range(rounds):
                for state in ("on", "off"):
                    fast_launch.set_fast_launch(state == "on")
                    run()
                    times[state].append(_bench_ms(run, x["u"].device, False))
            out[dname] = {s: {"ms": statistics.median(v), "all_ms": v} for s, v in times.items()}
            print(f"launch overhead {shape} {dname}: on {out[dname]['on']['ms']:.3f} ms, "
                  f"off {out[dname]['off']['ms']:.3f} ms", flush=True)  # fmt: skip
    finally:
        fast_launch.set_fast_launch(before)
    return {"shape": list(shape), "rounds": rounds, "times": out}


def check_checkpoint(new_tokens: int = 32) -> dict:
    """A checkpoint written by mamba_ssm's ``MambaLMHeadModel.save_pretrained`` (the 130M shape, random
    weights, fp32), read by ``MambaLM.from_pretrained`` (``minimamba.pretrained.mamba_ssm_twin``): the
    largest logit difference on a (4, 64) batch, and whether greedy decoding of ``new_tokens`` tokens
    gives the same tokens."""
    import mamba_ssm

    from minimamba.generate import generate
    from minimamba.pretrained import mamba_ssm_twin

    theirs, ours_lm = mamba_ssm_twin(device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(0, 50277, (4, 64), device="cuda", generator=g)
    with torch.no_grad():
        a, b = theirs(ids).logits, ours_lm(ids)
    vocab = 50277
    a, b = a[..., :vocab].float(), b[..., :vocab].float()
    prompt = ids[:, :16]
    t_theirs = theirs.generate(prompt, max_length=16 + new_tokens, cg=False, top_k=1)
    t_theirs = t_theirs.sequences if hasattr(t_theirs, "sequences") else t_theirs
    t_ours = generate(ours_lm, prompt, new_tokens, temperature=0)
    out = {
        "mamba_ssm": mamba_ssm.__version__,
        "model": "24 layers, d_model 768, vocab 50277, fp32, random weights",
        "max_abs_logit_diff": (a - b).abs().max().item(),
        "max_logit": a.abs().max().item(),
        "same_argmax_fraction": (a.argmax(-1) == b.argmax(-1)).float().mean().item(),
        "greedy_tokens": new_tokens,
        "same_greedy_tokens": bool(torch.equal(t_theirs[:, -new_tokens:], t_ours[:, -new_tokens:])),
    }
    print("checkpoint", json.dumps(out), flush=True)
    return out


#: What a swept configuration sets (the channel kernel's, then which forward kernel and the time kernel's).
KEYS = ("num_warps", "stages", "target", "time", "time_block_d", "time_block_t", "time_warps")


def sweep(shape, dtype, configs_fwd, configs_bwd) -> list:
    """Time the kernels alone over launch configurations (dicts of KEYS)."""
    import triton

    x = make_inputs(shape, dtype)
    u, delta, A, B, C, D, z, db = (x[k] for k in ORDER)
    B4, C4 = (t.unsqueeze(1) for t in (B, C))  # (batch, 1, N, L), as the op passes them
    Bt, Ct = bc_layouts(B4, C4, False, True)[2:]  # the backward's (batch, 1, L, N) fp32
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


def sweep_all(dtypes) -> list:
    """The launch configurations around the defaults, at (8, 1536, 2048, 16) and (1, 1536, 65536, 16)."""
    # the channel kernel: one warp of 32 channels per program (one channel per thread); tiles in flight;
    # target programs (segments along L until there are that many)
    cf = [{"num_warps": 1, "stages": s, "target": t, "time": False}
          for s in (3, 4) for t in (2 * 132, 4 * 132, 8 * 132)]  # fmt: skip
    # the forward parallel along time: channels per program, steps per tile, warps
    cf += [{"time": True, "time_block_d": d, "time_block_t": t, "time_warps": w}
           for d, t, w in ((4, 512, 4), (2, 512, 2), (4, 256, 2), (2, 1024, 4))]  # fmt: skip
    cb = [{"num_warps": 1, "stages": 1, "target": t} for t in (4 * 132, 16 * 132, 32 * 132, 64 * 132)]
    rows = []
    for shape in (SHAPES[1], SHAPES[3]):
        for dname in dtypes:
            found = sweep(shape, DTYPES[dname], cf, cb)
            for r in found:
                r.update(shape=list(shape), dtype=dname)
            rows += found
            for kern in ("fwd", "bwd"):
                ok = sorted((r for r in found if r["kernel"] == kern and "ms" in r), key=lambda r: r["ms"])
                print(f"sweep {kern} {shape} {dname}: " + ", ".join(
                    f"{_cfg(r)}={r['ms']:.3f} ({r.get('regs')}r/{r.get('spills')}s)" for r in ok[:6]), flush=True)  # fmt: skip
    return rows


def _cfg(r) -> str:
    return "/".join(str(r[k]) for k in KEYS if k in r)


# ---- the whole run ----


def run_benchmark(
    shapes=SHAPES, device="cuda", rounds: int = 5, warmup_s: float = 0.5, do_sweep: bool = False, smoke=False
) -> dict:
    """Measure every implementation at every shape and dtype, interleaved; returns results.json's dict."""
    device = torch.device(device)
    found, missing, peer_versions = peers()
    if smoke:  # the CPU path: our kernels under the interpreter and the PyTorch scans only
        missing.update({name: "not available (not run with --smoke)" for name in found})
        found = {}
    res = {
        "format": FORMAT,
        "command": f"{COMMAND} {' '.join(sys.argv[1:])}".strip(),
        "device": device_name(device),
        "versions": {**versions(), "mamba_ssm": "not available", **peer_versions},
        "shapes": [list(s) for s in shapes],
        "copy_bytes_per_s": copy_bandwidth() if device.type == "cuda" else None,
        "rounds": rounds,
        "warmup_s": warmup_s,
        "unavailable": missing,
        "times": [],
        "sweep": [],
        "accuracy": {},
    }
    print("device:", res["device"], res["versions"], flush=True)
    for name, why in missing.items():
        print(f"{name}: {why}", flush=True)
    # the best PyTorch scan: "chunked" where it exists, else every parallel one
    pt_backends = [b for b in mscan.BACKENDS if b not in ("ref", "triton", "sequential")]
    pt_backends = ["chunked"] if "chunked" in pt_backends else pt_backends
    if do_sweep:
        res["sweep"] = sweep_all(("fp32",) if do_sweep == "fp32" else tuple(DTYPES))
    for si, shape in enumerate(shapes):
        for dname, dtype in DTYPES.items():
            if smoke and dname != "fp32":
                continue
            tuned = best_configs(res["sweep"], SHAPES[3] if shape[0] == 1 else SHAPES[1], dname)
            kfwd.OVERRIDES.clear()
            kfwd.OVERRIDES.update(tuned.get("fwd", {}))
            kbwd.OVERRIDES.clear()
            kbwd.OVERRIDES.update(tuned.get("bwd", {}))
            res.setdefault("configs", []).append({"shape": list(shape), "dtype": dname,
                "fwd": kfwd.default_config(*shape, device, dtype),
                "bwd": kbwd.default_config(*shape, device, dtype)})  # fmt: skip
            x = make_inputs(shape, dtype, device=device)
            for mode in ("fwd", "fwd+bwd"):
                impls = {OURS: ours}
                if MAMBA_SSM in found:
                    impls[MAMBA_SSM] = found[MAMBA_SSM]
                if MAMBAPY in found and dname == "fp32":
                    impls[MAMBAPY] = found[MAMBAPY]
                # the PyTorch scans' fwd+bwd only where it takes seconds, not minutes; the reference fwd only
                if mode == "fwd" or shape[2] <= 2048:
                    impls.update({f"minimamba.scan[{b}]": pytorch_backend(b) for b in pt_backends})
                if mode == "fwd" and dname == "fp32" and shape[2] <= 2048:
                    impls[REF] = ref
                timed = time_interleaved(impls, x, mode, rounds, warmup_s)
                for name, r in timed.items():
                    r.update(impl=name, mode=mode, dtype=dname, shape=list(shape), shape_index=si)
                    res["times"].append(r)
                    ms = "OOM" if r["ms"] is None else f"{r['ms']:.3f} ms"
                    print(f"{name:28s} {mode:7s} {dname} {shape}: {ms}, peak {r['peak_gib']} GiB", flush=True)
            del x
            if device.type == "cuda":
                torch.cuda.empty_cache()
    kfwd.OVERRIDES.clear()
    kbwd.OVERRIDES.clear()
    acc_shapes = [shapes[0]] if smoke else [(8, 1536, 512, 16), (1, 1536, 4096, 16)]  # one per launch class
    for shape in acc_shapes:
        for dname in ("fp32",) if smoke else DTYPES:
            key = f"{dname} {tuple(shape)}"
            res["accuracy"][key] = accuracy(shape, DTYPES[dname], device=device)
            print("accuracy", key, {k: f"{v:.1e}" for k, v in res["accuracy"][key].items()}, flush=True)
    return res


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


# ---- the report: RESULTS.md and the figure, from results.json (runs on a CPU too) ----


def _get(res, impl, mode, dname, si):
    for r in res["times"]:
        if r["impl"] == impl and r["mode"] == mode and r["dtype"] == dname and r["shape_index"] == si:
            return r
    return None


def floor_ms(res, shape, dname, mode):
    """The bytes floor in ms at the run's copy bandwidth (None without one: a CPU run)."""
    if not res.get("copy_bytes_per_s"):
        return None
    return bytes_floor(shape, DTYPES[dname], mode) / res["copy_bytes_per_s"] * 1e3


def _impls(res) -> list:
    names = []
    for r in res["times"]:
        if r["impl"] not in names:
            names.append(r["impl"])
    return names


def _fmt(v, spec=".3g") -> str:
    return "—" if v is None else format(v, spec)


def speedups(res, mode, dname) -> list:
    """mamba_ssm's time / ours, per shape (None where either was not measured)."""
    out = []
    for si in range(len(res["shapes"])):
        a, b = _get(res, MAMBA_SSM, mode, dname, si), _get(res, OURS, mode, dname, si)
        out.append(a["ms"] / b["ms"] if a and b and a["ms"] and b["ms"] else None)
    return out


def reading(res) -> list[str]:
    """A short reading of the tables, worked out from the numbers in ``res``."""
    lines = []
    for mode in ("fwd", "fwd+bwd"):
        for dname in DTYPES:
            sp = [v for v in speedups(res, mode, dname) if v]
            if sp:
                faster = sum(v > 1 for v in sp)
                lines.append(f"- {mode} {dname}: ours takes mamba_ssm's `selective_scan_fn` time divided by "
                             f"{min(sp):.2f} to {max(sp):.2f}; faster at {faster} of {len(sp)} shapes.")  # fmt: skip
    if not any(
        speedups(res, m, d)[i] for m in ("fwd", "fwd+bwd") for d in DTYPES for i in range(len(res["shapes"]))
    ):
        why = res.get("unavailable", {}).get(MAMBA_SSM, "not measured in this run")
        lines.append(f"- mamba_ssm: {why}; no speed-up against it can be read from this run.")
    shapes = [tuple(s) for s in res["shapes"]]
    if PEAK_SHAPE in shapes:
        si = shapes.index(PEAK_SHAPE)
        a, b = _get(res, MAMBA_SSM, "fwd+bwd", "fp32", si), _get(res, OURS, "fwd+bwd", "fp32", si)
        if a and b and a["peak_gib"] and b["peak_gib"]:
            lines.append(f"- peak memory of fwd+bwd at {PEAK_SHAPE} fp32: ours {b['peak_gib']:.2f} GiB, mamba_ssm "
                         f"{a['peak_gib']:.2f} GiB.")  # fmt: skip
    fl = []
    for mode in ("fwd", "fwd+bwd"):
        for dname in DTYPES:
            for si, s in enumerate(shapes):
                r, f = _get(res, OURS, mode, dname, si), floor_ms(res, s, dname, mode)
                if r and r["ms"] and f:
                    fl.append(f / r["ms"])
    if fl:
        lines.append(f"- ours runs at {100 * min(fl):.0f}% to {100 * max(fl):.0f}% of the bytes floor's speed "
                     "(the floor counts only the unavoidable HBM traffic at the copy bandwidth).")  # fmt: skip
    lo = res.get("launch_overhead")
    if lo:
        for dname, t in lo["times"].items():
            lines.append(f"- eager fwd+bwd at {tuple(lo['shape'])} {dname}: {t['on']['ms']:.3f} ms with the fast "
                         f"launch, {t['off']['ms']:.3f} ms without.")  # fmt: skip
    return lines


def write_results_md(res: dict, path: pathlib.Path) -> None:
    """RESULTS.md from results.json's dict: every table, and a short reading worked out from them."""
    shapes = [tuple(s) for s in res["shapes"]]
    head = "| impl | mode | dtype | " + " | ".join(",".join(map(str, s)) for s in shapes) + " |"
    sep = "|---|---|---|" + "---|" * len(shapes)
    lines = [
        "# The fused selective scan on the GPU: what was measured",
        "",
        f"Written by `{COMMAND}` from `results.json` (`--redraw` rewrites this file and "
        "`figures/scan_gpu.png` from it); do not edit by hand.",
        "",
    ]
    if res.get("format", 1) < FORMAT:
        lines += [
            f"**To be regenerated by `{COMMAND}`** (on a GPU, with mamba_ssm built by "
            "`scripts/build_peers.py`). The figures below were measured by an earlier version of that "
            "command: implementations timed one after another, not interleaved, and mamba_ssm not measured.",
            "",
        ]
    lines += [
        f"- device: {res['device']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}",
    ]
    if res.get("copy_bytes_per_s"):
        lines.append(
            f"- device-to-device copy: {res['copy_bytes_per_s'] / 1e12:.2f} TB/s (bytes read + written)"
        )
    if res.get("format", 1) >= FORMAT:
        how = ("`triton.testing.do_bench` median, CUDA events, L2 flushed" if res.get("copy_bytes_per_s")
               else "the median of 3 timed calls")  # fmt: skip
        lines.append(f"- timing: {res['rounds']} interleaved round(s), each implementation timed once per round "
                     f"({how}), after {res['warmup_s']} s of calls; the table gives the median over rounds.")  # fmt: skip
    lines += [
        "- fwd under `no_grad`; fwd+bwd = forward + `autograd.grad` w.r.t. all 8 inputs; `delta_softplus=True`, z and D",
        "  given, B and C (batch, N, L). Shapes are (batch, d_inner, L, N).",
    ]
    for name, why in res.get("unavailable", {}).items():
        lines.append(f"- {name}: {why}")
    lines += ["", "## Times (ms, median)", "", head, sep]
    impls = _impls(res)
    measured = {r["dtype"] for r in res["times"]}
    for mode in ("fwd", "fwd+bwd"):
        for dname in [d for d in DTYPES if d in measured]:
            for impl in impls:
                cells = []
                for si in range(len(shapes)):
                    r = _get(res, impl, mode, dname, si)
                    cells.append("—" if r is None else ("OOM" if r["ms"] is None else f"{r['ms']:.3g}"))
                if any(c != "—" for c in cells):
                    lines.append(f"| {impl} | {mode} | {dname} | " + " | ".join(cells) + " |")
            for name in res.get("unavailable", {}):
                lines.append(
                    f"| {name} | {mode} | {dname} | " + " | ".join(["not available"] * len(shapes)) + " |"
                )
            cells = [_fmt(floor_ms(res, s, dname, mode)) for s in shapes]
            if any(c != "—" for c in cells):
                lines.append(f"| bytes floor | {mode} | {dname} | " + " | ".join(cells) + " |")
    lines += ["", "## Ours against mamba_ssm (mamba_ssm's time / ours) and against the floor", ""]
    lines += [head.replace("| impl | mode | dtype |", "| ratio | mode | dtype |"), sep]
    for mode in ("fwd", "fwd+bwd"):
        for dname in DTYPES:
            sp = [_fmt(v, ".2f") + ("x" if v else "") for v in speedups(res, mode, dname)]
            fl = []
            for si, s in enumerate(shapes):
                r, f = _get(res, OURS, mode, dname, si), floor_ms(res, s, dname, mode)
                fl.append(f"{100 * f / r['ms']:.0f}%" if r and r["ms"] and f else "—")
            lines.append(f"| speed-up vs mamba_ssm | {mode} | {dname} | " + " | ".join(sp) + " |")
            lines.append(f"| floor / our time | {mode} | {dname} | " + " | ".join(fl) + " |")
    if PEAK_SHAPE in shapes:
        si = shapes.index(PEAK_SHAPE)
        lines += ["", f"## Peak memory at {PEAK_SHAPE} fp32 (GiB, `torch.cuda.max_memory_allocated`, inputs and dy included)", ""]  # fmt: skip
        lines += ["| impl | fwd | fwd+bwd |", "|---|---|---|"]
        for impl in impls:
            cells = []
            for mode in ("fwd", "fwd+bwd"):
                r = _get(res, impl, mode, "fp32", si)
                cells.append("—" if r is None or r["peak_gib"] is None else f"{r['peak_gib']:.2f}")
            if any(c != "—" for c in cells):
                lines.append(f"| {impl} | " + " | ".join(cells) + " |")
    if res.get("accuracy"):
        lines += ["", "## Accuracy against float64 (relative norm error, same rounded inputs)", ""]
        keys = list(next(iter(res["accuracy"].values())).keys())
        lines += ["| dtype, shape | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for name, acc in res["accuracy"].items():
            lines.append(f"| {name} | " + " | ".join(f"{acc[k]:.1e}" for k in keys) + " |")
    lo = res.get("launch_overhead")
    if lo:
        lines += ["", f"## Host-time layer: eager fwd+bwd at {tuple(lo['shape'])}, fast launch on and off "
                  f"(ms, median of {lo['rounds']} interleaved rounds; `{COMMAND} --launch-overhead`)", ""]  # fmt: skip
        lines += ["| dtype | on | off |", "|---|---|---|"]
        for dname, t in lo["times"].items():
            lines.append(f"| {dname} | {t['on']['ms']:.3f} | {t['off']['ms']:.3f} |")
    ck = res.get("checkpoint")
    if ck:
        lines += [
            "",
            f"## A mamba_ssm checkpoint read by `MambaLM.from_pretrained` (`{COMMAND} --checkpoint`)",
            "",
        ]
        lines += [f"- {ck['model']}, mamba_ssm {ck['mamba_ssm']}: largest logit difference "
                  f"{ck['max_abs_logit_diff']:.2e} (largest logit {ck['max_logit']:.2f}); same argmax at "
                  f"{100 * ck['same_argmax_fraction']:.1f}% of positions; {ck['greedy_tokens']} greedy tokens "
                  f"{'identical' if ck['same_greedy_tokens'] else 'different'}."]  # fmt: skip
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
                        lines.append(
                            f"- {kern} {shape} {dname}: "
                            + ", ".join(f"{_cfg(r)}: {r['ms']:.3f}" for r in rows)
                        )
    if res.get("configs"):
        lines += ["", "## Launch sizes used (the sweep's winners, else the defaults)", ""]
        used: dict = {}  # each configuration, with the shapes it ran
        for c in res["configs"]:
            key = (c["dtype"], json.dumps(c["fwd"]), json.dumps(c["bwd"]))
            used.setdefault(key, (c, []))[1].append(",".join(map(str, c["shape"])))
        for (dname, _, _), (c, on) in used.items():
            lines.append(f"- {dname} at {' and '.join(on)}: fwd {c['fwd']}, bwd {c['bwd']}")
    lines += ["", "## Reading", ""] + reading(res)
    path.write_text("\n".join(lines) + "\n")


def plot(res: dict, path: pathlib.Path | None = None):
    """The benchmark's figure (a matplotlib Figure, outside pyplot's state), written to ``path`` if given."""
    import matplotlib
    from matplotlib.figure import Figure

    shapes = [tuple(s) for s in res["shapes"]]
    many = [i for i, s in enumerate(shapes) if s[0] > 1]
    one = [i for i, s in enumerate(shapes) if s[0] == 1]
    fig = Figure(figsize=(12, 5.8))
    axes = fig.subplots(1, 2, sharey=True)
    impls = _impls(res) + ["bytes floor"]
    colors = dict(zip(impls, matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] * 3))
    for ax, mode in zip(axes, ("fwd", "fwd+bwd")):
        for dname, ls in (("fp32", "-"), ("bf16", "--")):
            series = {impl: [(_get(res, impl, mode, dname, i) or {}).get("ms") for i in range(len(shapes))]
                      for impl in impls[:-1]}  # fmt: skip
            series["bytes floor"] = [floor_ms(res, s, dname, mode) for s in shapes]
            for name, ys in series.items():
                pts = [(shapes[i][2], ys[i]) for i in many if ys[i]]
                if pts:
                    ax.plot(*zip(*pts), ls, marker="o", color=colors[name], label=f"{name} {dname}", lw=1.5)
                single = [(shapes[i][2], ys[i]) for i in one if ys[i]]
                if single:
                    ax.plot(*zip(*single), marker="D", mfc="none", color=colors[name], ls="none",
                            label=None if pts else f"{name} {dname}")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L (hollow diamonds: batch 1)")
        ax.set_title(f"{mode}: (batch, d_inner, L, N) on {res['device'].split(',')[0]}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("time (ms, median)")
    handles = {}
    for ax in axes:  # one legend for both panels
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.18, 1, 1))
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def write_all(res: dict, out_dir: pathlib.Path, figure: pathlib.Path, json_too: bool = True) -> None:
    """results.json (unless ``json_too`` is off) and RESULTS.md into ``out_dir``, the figure to ``figure``:
    all from one run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if json_too:
        (out_dir / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    write_results_md(res, out_dir / "RESULTS.md")
    plot(res, figure)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=pathlib.Path, default=HERE, help="where results.json and RESULTS.md go")
    p.add_argument("--figure", type=pathlib.Path, default=None, help="default: figures/scan_gpu.png, or "
                   "OUT/scan_gpu.png when --out is given")  # fmt: skip
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the median is tabled)")
    p.add_argument(
        "--warmup", type=float, default=0.5, help="seconds of calls before an implementation's first round"
    )
    p.add_argument("--sweep", action="store_true", help="also time the kernels over launch configurations")
    p.add_argument(
        "--sweep-fp32", action="store_true", help="the sweep in fp32 only (its winners used for bf16)"
    )
    p.add_argument("--launch-overhead", action="store_true",
                   help="eager fwd+bwd at L = 512, fast launch on against off, added to results.json")  # fmt: skip
    p.add_argument("--checkpoint", action="store_true",
                   help="mamba_ssm's checkpoint read by MambaLM.from_pretrained, added to results.json")  # fmt: skip
    p.add_argument("--all", action="store_true",
                   help="the benchmark, then --launch-overhead and (where mamba_ssm imports) --checkpoint")  # fmt: skip
    p.add_argument("--redraw", action="store_true", help="no measuring: RESULTS.md and the figure from JSON")
    p.add_argument("--smoke", action="store_true", help="tiny shapes on this machine (CPU: the interpreter)")
    p.add_argument("--results", type=pathlib.Path, default=HERE / "results.json")
    a = p.parse_args(argv)
    if a.rounds < 1:
        p.error(f"--rounds must be at least 1, got {a.rounds}")
    figure = a.figure or (ROOT / "figures" / "scan_gpu.png" if a.out == HERE else a.out / "scan_gpu.png")
    if a.redraw:
        res = json.loads(a.results.read_text())
    elif (a.launch_overhead or a.checkpoint) and not a.all:  # added to the existing results (same device)
        if not torch.cuda.is_available():
            p.error("--launch-overhead and --checkpoint need a CUDA GPU")
        res = json.loads(a.results.read_text())
        if a.launch_overhead:
            res["launch_overhead"] = launch_overhead(rounds=max(a.rounds, 7), warmup_s=a.warmup)
        if a.checkpoint:
            res["checkpoint"] = check_checkpoint()
    elif a.smoke:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        res = run_benchmark(SMOKE_SHAPES, device, rounds=a.rounds, warmup_s=0.0, smoke=True)
    else:
        if not torch.cuda.is_available():
            p.error("measuring needs a CUDA GPU (--smoke runs tiny shapes here, --redraw redraws)")
        res = run_benchmark(SHAPES, "cuda", a.rounds, a.warmup, "fp32" if a.sweep_fp32 else a.sweep)
        if a.all:
            res["launch_overhead"] = launch_overhead(rounds=max(a.rounds, 7), warmup_s=a.warmup)
            if MAMBA_SSM not in res["unavailable"]:
                res["checkpoint"] = check_checkpoint()
    write_all(res, a.out, figure, json_too=not a.redraw)
    print(
        f"wrote {'' if a.redraw else str(a.out / 'results.json') + ', '}{a.out / 'RESULTS.md'} and {figure}"
    )


if __name__ == "__main__":
    main()
