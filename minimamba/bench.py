"""CPU benchmark of the selective scan: every PyTorch backend, the auto choice, and mambapy's pscan.

``python -m minimamba.bench`` (``make bench``) times forward (no_grad) and forward+backward (gradients of
every input) at L in {256, 1024, 4096, 16384} and (batch, d_inner, N) in {(2, 64, 16), (8, 256, 16)},
fp32, prints a table, writes ``results/scan_cpu.json`` and draws ``figures/scan_cpu.png`` from it
(``make figures`` redraws the figure from the JSON without re-running).

Ratios in the table: ``/loop`` is the time over the sequential loop's (``selective_scan_ref``; below 1 is
faster), ``/mambapy`` the time over mambapy's, and ``/roof`` the time over the memory roofline: the bytes a
fused kernel must move (read u, Δ, z, B, C, write y; backward also reads dy and writes every gradient)
divided by the copy bandwidth measured in the same run with a large tensor clone. An unfused PyTorch scan
sits far above the roofline because it writes and reads (batch, d_inner, L, N) tensors.

Each case is run once to warm up, then timed ``--repeats`` times (median). Cases whose warm-up takes more
than ``--budget`` seconds are timed fewer times (the ``runs`` column says how many; 1 means the warm-up run
itself). The tree scans (Hillis-Steele, Blelloch) are skipped above ``--max-elems`` elements per
(batch, d_inner, L, N) tensor and mambapy above ``--mambapy-max-elems`` (memory), and an implementation
that took more than ``--skip-after`` seconds at one L is not run at the next (time).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from minimamba import scan

ROOT = pathlib.Path(__file__).resolve().parents[1]
JSON_PATH = ROOT / "results" / "scan_cpu.json"
FIG_PATH = ROOT / "figures" / "scan_cpu.png"

LENGTHS = (256, 1024, 4096, 16384)
SHAPES = ((2, 64, 16), (8, 256, 16))  # (batch, d_inner, N)
#: backend name -> label in the table; "ref" is the sequential loop every ratio is taken against
IMPLS = ("ref", "sequential", "hillis_steele", "blelloch", "chunked", "auto", "mambapy")
#: tree scans that allocate (batch, d_inner, L, N) tensors at every level: skipped above --max-elems
TREES = ("hillis_steele", "blelloch")


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo says it (Linux), else platform.processor()."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_inputs(batch: int, d_inner: int, N: int, L: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random fp32 inputs shaped like a Mamba layer's: Δ in (0.001, 0.1), A = -(1..N) (S4D-Real)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "u": torch.randn(batch, d_inner, L, generator=g),
        "delta": 0.001 + 0.099 * torch.rand(batch, d_inner, L, generator=g),
        "A": -torch.arange(1, N + 1, dtype=torch.float32).repeat(d_inner, 1),
        "B": torch.randn(batch, N, L, generator=g),
        "C": torch.randn(batch, N, L, generator=g),
        "D": torch.randn(d_inner, generator=g),
        "z": torch.randn(batch, d_inner, L, generator=g),
    }


def mambapy_scan() -> Callable | None:
    """The selective scan computed with mambapy's pscan (same y as selective_scan_ref), or None."""
    try:
        from mambapy.pscan import pscan
    except ImportError:
        return None

    def fn(u, delta, A, B, C, D, z):
        # mambapy works in (batch, L, d_inner, N): build exp(ΔA) and ΔBu in that layout
        x = u.transpose(1, 2)  # (batch, L, d_inner)
        dt = delta.transpose(1, 2).contiguous()  # (batch, L, d_inner)
        A_bar = torch.exp(dt.unsqueeze(-1) * A)  # (batch, L, d_inner, N)
        BX = (dt * x).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2)  # (batch, L, d_inner, N)
        hs = pscan(A_bar, BX)  # (batch, L, d_inner, N)
        y = (hs @ C.transpose(1, 2).unsqueeze(-1)).squeeze(3)  # (batch, L, d_inner)
        y = (y + D * x) * F.silu(z.transpose(1, 2))
        return y.transpose(1, 2)  # (batch, d_inner, L)

    return fn


def impl_fn(name: str) -> Callable | None:
    if name == "mambapy":
        return mambapy_scan()
    return lambda u, delta, A, B, C, D, z: scan.selective_scan(u, delta, A, B, C, D, z, backend=name)


def copy_bandwidth(n_bytes: int = 1 << 28, repeats: int = 5) -> float:
    """Bytes per second of a large tensor clone (reads n_bytes and writes n_bytes)."""
    x = torch.ones(n_bytes // 4)
    x.clone()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        x.clone()
        ts.append(time.perf_counter() - t)
    return 2 * n_bytes / statistics.median(ts)


def roofline_bytes(batch: int, d_inner: int, N: int, L: int, backward: bool) -> int:
    """Bytes a fused kernel must move in fp32. Forward: read u, Δ, z (batch·d_inner·L each) and B, C
    (batch·N·L each), write y. Backward: read u, Δ, z, B, C and dy, write du, dΔ, dz, dB, dC."""
    bdl, bnl = batch * d_inner * L, batch * N * L
    fwd = 4 * bdl + 2 * bnl
    bwd = 7 * bdl + 4 * bnl
    return 4 * (fwd + (bwd if backward else 0))


def time_case(run: Callable[[], None], repeats: int, budget: float) -> tuple[float, int]:
    """Median seconds of ``run`` after one warm-up; fewer runs when the warm-up is slower than budget."""
    t = time.perf_counter()
    run()
    first = time.perf_counter() - t
    if first > budget:
        return first, 1
    n = max(1, min(repeats, int(budget // first)))
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), n


def runner(fn: Callable, inputs: dict[str, torch.Tensor], backward: bool) -> Callable[[], None]:
    if not backward:

        def fwd() -> None:
            with torch.no_grad():
                fn(**inputs)

        return fwd
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    dy = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(1))

    def fwd_bwd() -> None:
        for v in leaves.values():
            v.grad = None
        fn(**leaves).backward(dy)

    return fwd_bwd


def check_mambapy(fn: Callable) -> float:
    """mambapy's y against selective_scan_ref on one small case: the max abs difference."""
    inputs = make_inputs(2, 8, 16, 256, seed=3)
    with torch.no_grad():
        ref = scan.selective_scan_ref(**inputs)
        out = fn(**inputs)
    return (out - ref).abs().max().item()


def run_bench(
    shapes,
    lengths,
    impls,
    repeats: int = 5,
    budget: float = 10.0,
    max_elems: int = 1 << 26,
    mambapy_max_elems: int = 1 << 29,
    skip_after: float = 40.0,
    log: Callable[[str], None] = print,
    save: Callable[[dict], None] | None = None,
) -> dict:
    bw = copy_bandwidth()
    result = {
        "device": f"cpu: {cpu_name()}",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dtype": "float32",
        "copy_bandwidth_GBps": bw / 1e9,
        "repeats": repeats,
        "rows": [],
    }
    log(f"device {result['device']}, {result['threads']} threads, torch {torch.__version__}, float32")
    log(f"copy bandwidth (clone of 256 MiB): {bw / 1e9:.2f} GB/s")
    mp = mambapy_scan()
    if mp is None:
        log("mambapy: not installed (`pip install mambapy --no-deps`)")
        result["mambapy_check"] = "not installed"
    else:
        err = check_mambapy(mp)
        ok = err < 1e-3
        log(
            f"mambapy check: max |y_mambapy - y_ref| = {err:.2e} at (2, 8, 16), L=256 ({'ok' if ok else 'MISMATCH'})"
        )
        result["mambapy_check"] = {"max_abs_diff": err, "ok": ok}
    slow: set[tuple] = set()  # (shape, mode, impl) that exceeded skip_after
    for batch, d_inner, N in shapes:
        for L in sorted(lengths):
            inputs = make_inputs(batch, d_inner, N, L)
            for backward in (False, True):
                mode = "fwd+bwd" if backward else "fwd"
                for name in impls:
                    row = {"batch": batch, "d_inner": d_inner, "N": N, "L": L, "mode": mode, "impl": name}
                    fn = impl_fn(name)
                    elems = batch * d_inner * L * N
                    key = (batch, d_inner, N, mode, name)
                    if fn is None:
                        row.update(seconds=None, runs=0, note="not installed")
                    elif (name in TREES and elems > max_elems) or (
                        name == "mambapy" and elems > mambapy_max_elems
                    ):
                        row.update(seconds=None, runs=0, note="skip (memory)")
                    elif key in slow:
                        row.update(seconds=None, runs=0, note="skip (time)")
                    else:
                        sec, n = time_case(runner(fn, inputs, backward), repeats, budget)
                        row.update(seconds=sec, runs=n, note="")
                        if sec > skip_after:
                            slow.add(key)
                    row["roofline_s"] = roofline_bytes(batch, d_inner, N, L, backward) / bw
                    result["rows"].append(row)
                    log(format_row(row, result["rows"]))
                    if save is not None:
                        save(result)
    return result


def _find(rows: list[dict], row: dict, impl: str) -> float | None:
    for r in rows:
        if all(r[k] == row[k] for k in ("batch", "d_inner", "N", "L", "mode")) and r["impl"] == impl:
            return r["seconds"]
    return None


HEADER = (
    f"{'batch':>5} {'d_inner':>7} {'N':>3} {'L':>6} {'dtype':>7} {'device':>6} {'mode':>7} {'impl':>13} "
    f"{'median ms':>10} {'runs':>4} {'/loop':>7} {'/mambapy':>8} {'/roof':>7}"
)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a is not None and b else "-"


def format_row(row: dict, rows: list[dict]) -> str:
    sec = row["seconds"]
    ms = f"{sec * 1e3:.1f}" if sec is not None else row["note"]
    return (
        f"{row['batch']:>5} {row['d_inner']:>7} {row['N']:>3} {row['L']:>6} {'fp32':>7} {'cpu':>6} "
        f"{row['mode']:>7} {row['impl']:>13} {ms:>10} {row['runs']:>4} "
        f"{_ratio(sec, _find(rows, row, 'ref')):>7} {_ratio(sec, _find(rows, row, 'mambapy')):>8} "
        f"{_ratio(sec, row['roofline_s']):>7}"
    )


def table(result: dict) -> str:
    rows = result["rows"]
    return "\n".join([HEADER, *(format_row(r, rows) for r in rows)])


def check_targets(result: dict) -> list[str]:
    """The issue's targets: auto at least as fast as the loop and mambapy everywhere, and >= 3x faster than
    the loop at (2, 64, 16), L = 4096, forward. Returns one line per target, PASS or FAIL."""
    lines = []
    for r in result["rows"]:
        if r["impl"] != "auto" or r["seconds"] is None:
            continue
        for other in ("ref", "mambapy"):
            t = _find(result["rows"], r, other)
            if t is not None:
                ok = r["seconds"] <= t
                lines.append(
                    f"{'PASS' if ok else 'FAIL'} auto <= {other:7s} at ({r['batch']}, {r['d_inner']}, {r['N']}) "
                    f"L={r['L']:>5} {r['mode']:7s}: {r['seconds'] * 1e3:.1f} ms vs {t * 1e3:.1f} ms"
                )
        if (r["batch"], r["d_inner"], r["N"], r["L"], r["mode"]) == (2, 64, 16, 4096, "fwd"):
            t = _find(result["rows"], r, "ref")
            if t is not None:
                speedup = t / r["seconds"]
                lines.append(
                    f"{'PASS' if speedup >= 3 else 'FAIL'} auto >= 3x loop at (2, 64, 16) L=4096 fwd: {speedup:.1f}x"
                )
    return lines


def _shape(s: str) -> tuple[int, int, int]:
    parts = tuple(int(p) for p in s.lower().split("x"))
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"shape must be BATCHxD_INNERxN, e.g. 2x64x16; got {s!r}")
    return parts  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minimamba.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="L in {256, 1024}, 3 repeats, no JSON/figure")
    parser.add_argument(
        "--shapes", type=_shape, nargs="+", default=list(SHAPES), help="e.g. 2x64x16 8x256x16"
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per case before repeats drop")
    parser.add_argument("--max-elems", type=int, default=1 << 26, help="skip tree scans above this size")
    parser.add_argument("--mambapy-max-elems", type=int, default=1 << 29, help="skip mambapy above this")
    parser.add_argument("--skip-after", type=float, default=40.0, help="seconds at one L before skipping")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", type=pathlib.Path, default=JSON_PATH)
    parser.add_argument("--figure", type=pathlib.Path, default=FIG_PATH)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths, repeats = ([256, 1024], 3) if args.quick else (args.lengths, args.repeats)
    print(HEADER)
    t0 = time.perf_counter()

    def save(result: dict) -> None:
        if not args.quick:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1) + "\n")

    result = run_bench(
        args.shapes,
        lengths,
        args.impls,
        repeats,
        args.budget,
        args.max_elems,
        args.mambapy_max_elems,
        args.skip_after,
        save=save,
    )
    result["wall_s"] = time.perf_counter() - t0
    result["options"] = {
        "repeats": repeats,
        "budget_s": args.budget,
        "max_elems": args.max_elems,
        "mambapy_max_elems": args.mambapy_max_elems,
        "skip_after_s": args.skip_after,
    }
    save(result)
    print(
        f"\ntotal {result['wall_s']:.0f} s; ratios: /loop = time / selective_scan_ref's, /roof = time / memory roofline"
    )
    print("\n".join(check_targets(result)))
    if not args.quick:
        print(f"wrote {os.path.relpath(args.json)}")
        import matplotlib

        from minimamba.viz.scan import plot_scan_cpu

        matplotlib.use("Agg")
        fig = plot_scan_cpu(result)
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=120, bbox_inches="tight")
        print(f"wrote {os.path.relpath(args.figure)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
