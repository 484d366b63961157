"""Why does the trained S6 model lose induction heads at long test lengths? Numerics or memory?

Loads the trained weights ``results/synthetic_induction_s6.pt`` (MambaConfig(d_model=64, n_layer=2,
vocab_size=16), from ``scripts/run_synthetic.py``) and, on the test set of one length (the same seeded set
as ``history.test`` of ``results/synthetic_induction_s6.json``: ``induction_heads(n, L, 16,
generator=torch.Generator().manual_seed(seed + L))``), measures:

1. the accuracy through several computations of the same model: the PyTorch chunked scan in fp32 fed in
   chunks through the model's cache (what a long evaluation needs on a CPU), the lean sequential scan
   (one step per token) in fp32, the sequential scan in fp64 (an fp64 model: no fp32 accumulation anywhere),
   and optionally the Triton kernel (on a GPU) — if numerics were the cause, the answers would differ;
2. the accuracy against the needle's distance from the end (L − 1 − p, p the position of the first special
   token) — a memory that decays loses far needles whatever the total length;
3. how much of the needle survives in the best state of each layer: max over channels and state indices
   of exp(A · ΣΔ), the sum over the positions after the target token (p + 2 … L − 1), i.e. the factor by
   which the state written at the target has been multiplied by the time the final query is read.

    PYTHONPATH=. python scripts/probe_induction_long.py --L 16384 --n 64 --computations chunked,fp64
    PYTHONPATH=. python scripts/probe_induction_long.py --L 65536 --n 64 --json probe_65536.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import minimamba  # noqa: F401  (first: configures Triton)
from minimamba import block, scan
from minimamba.config import MambaConfig
from minimamba.model import MambaLM
from minimamba.tasks import TaskBatch, induction_heads

ROOT = Path(__file__).resolve().parents[1]
COMPUTATIONS = ("chunked", "sequential", "fp64", "triton")


@contextlib.contextmanager
def scan_backend(name: str):
    """Every Mamba block of this process uses ``selective_scan(..., backend=name)`` inside the block."""
    orig = block.selective_scan
    block.selective_scan = functools.partial(scan.selective_scan, backend=name)
    try:
        yield
    finally:
        block.selective_scan = orig


def load_model(path: Path, dtype: torch.dtype, device: str) -> MambaLM:
    model = MambaLM(MambaConfig(d_model=64, n_layer=2, vocab_size=16))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device=device, dtype=dtype).eval()


@torch.no_grad()
def last_logits_with_decay(model: MambaLM, ids: torch.Tensor, needle: torch.Tensor, chunk: int):
    """Logits at the last position, fed ``chunk`` tokens at a time through the cache, and per layer the log
    of the best survival factor max_{c,n} exp(A[c,n] · Σ_{t > needle} Δ[c,t]) of every sequence.

    ids: (batch, L); needle: (batch,) the position after which the needle's decay is summed.
    Returns logits (batch, V), log_survival (n_layer, batch).
    """
    batch, L = ids.shape
    mixers = [layer.mixer for layer in model.backbone.layers]
    sums = [torch.zeros(batch, m.d_inner, dtype=torch.float64, device=ids.device) for m in mixers]
    offset = [0]
    hooks = []
    for i, m in enumerate(mixers):

        def hook(_mod, _inp, out, i=i):  # out: (batch, T, d_inner), Δ before softplus (bias included)
            T = out.shape[1]
            pos = torch.arange(offset[0], offset[0] + T, device=out.device)  # (T,)
            after = (pos[None, :] > needle[:, None]).to(torch.float64)  # (batch, T)
            delta = F.softplus(out.to(torch.float64))  # (batch, T, d_inner)
            sums[i] += (delta * after[..., None]).sum(dim=1)

        hooks.append(m.dt_proj.register_forward_hook(hook))
    try:
        cache = model.init_cache(batch, device=ids.device)
        for start in range(0, L, chunk):
            offset[0] = start
            logits = model(ids[:, start : start + chunk], cache=cache, num_last_tokens=1)[:, -1]
    finally:
        for h in hooks:
            h.remove()
    log_surv = []
    for m, s in zip(mixers, sums):
        a_min = torch.exp(m.A_log.double()).min(dim=1).values  # (d_inner,) the slowest decay rate |A|
        log_surv.append((-(a_min[None, :] * s)).max(dim=1).values)  # (batch,) natural log
    return logits, torch.stack(log_surv)


def test_set(L: int, seed: int, n: int) -> TaskBatch:
    """The first n sequences of run_synthetic.py's budget-run test set at length L (the same draws: 256
    sequences up to 2^14, 64 beyond, in batches of at most 2^22 tokens)."""
    g = torch.Generator().manual_seed(seed + L)
    total = 256 if L <= 2**14 else 64
    per = max(1, min(total, 2**22 // L))
    sets = [induction_heads(min(per, total - i), L, 16, generator=g) for i in range(0, total, per)]
    return TaskBatch(*(torch.cat(parts)[:n] for parts in zip(*sets)))


def move_needle(b: TaskBatch, near: int, special: int, seed: int) -> TaskBatch:
    """The same sequences with the special token moved to a uniform position among the last ``near``
    tokens before the query (its old place gets an ordinary token); the target is the token after it."""
    inputs, targets, mask = (t.clone() for t in b)
    n, L = inputs.shape
    g = torch.Generator().manual_seed(seed + 7)
    rows = torch.arange(n)
    old = (inputs[:, : L - 1] == special).int().argmax(dim=1)
    inputs[rows, old] = torch.randint(0, special, (n,), generator=g)
    new = L - 2 - torch.randint(1, near + 1, (n,), generator=g).clamp(max=L - 2)  # in [L-2-near, L-3]
    inputs[rows, new] = special
    targets[:, -1] = inputs[rows, new + 1]
    return TaskBatch(inputs, targets, mask)


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    b = test_set(args.L, args.seed, args.n)
    if args.rows:
        b = TaskBatch(*(t[args.rows] for t in b))
        args.n = len(args.rows)
    special = 15
    if args.near:
        b = move_needle(b, args.near, special, args.seed)
    p = (b.inputs[:, : args.L - 1] == special).int().argmax(dim=1)  # (n,) the first special token
    target = b.targets[:, -1]
    distance = args.L - 1 - p  # tokens between the special token and the query at the end
    report = {"L": args.L, "n": args.n, "rows": args.rows, "seed": args.seed, "chunk": args.chunk}
    report["near"] = args.near
    report["computations"] = {}
    preds = {}
    for comp in args.computations:
        t = time.perf_counter()
        dtype = torch.float64 if comp == "fp64" else torch.float32
        device = args.device  # triton on the CPU: the Triton interpreter (slow)
        backend = {
            "chunked": "chunked",
            "sequential": "sequential",
            "fp64": "sequential",
            "triton": "triton",
        }[comp]
        model = load_model(args.weights, dtype, device)
        logits, log_surv = [], []
        with scan_backend(backend):
            for i in range(0, args.n, args.batch):
                lg, ls = last_logits_with_decay(
                    model,
                    b.inputs[i : i + args.batch].to(device),
                    (p[i : i + args.batch] + 1).to(device),
                    args.chunk,
                )
                logits.append(lg.float().cpu())
                log_surv.append(ls.cpu())
        logits, log_surv = torch.cat(logits), torch.cat(log_surv, dim=1)  # (n, V), (n_layer, n)
        pred = logits[:, :16].argmax(dim=-1)
        preds[comp] = (pred, logits, log_surv)
        right = pred == target
        entry = {
            "accuracy": right.float().mean().item(),
            "seconds": time.perf_counter() - t,
            "log10_best_survival_per_layer_median": [(ls.median().item() / math.log(10)) for ls in log_surv],
        }
        report["computations"][comp] = entry
        print(
            f"L={args.L} {comp}: accuracy {entry['accuracy']:.4f} ({time.perf_counter() - t:.0f}s)",
            flush=True,
        )
    ref = args.computations[0]
    pred0, logits0, surv0 = preds[ref]
    for comp, (pred, logits, _) in preds.items():
        report["computations"][comp]["answers_differing_from_" + ref] = int((pred != pred0).sum())
        report["computations"][comp]["max_abs_logit_diff_vs_" + ref] = (logits - logits0).abs().max().item()
    # accuracy by distance of the needle from the end, with the first computation; and survival by outcome
    right = pred0 == target
    edges = [0] + [2**k for k in range(6, int(math.log2(args.L)) + 1)]
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (distance > lo) & (distance <= hi)
        if sel.any():
            bins.append(
                {"distance": [lo + 1, hi], "n": int(sel.sum()), "accuracy": right[sel].float().mean().item()}
            )
    report["accuracy_by_distance"] = bins
    # per sequence, with the first computation: distance, outcome, and the needle's best survival per layer
    report["per_sequence"] = [
        {
            "distance": int(distance[i]),
            "right": bool(right[i]),
            "log10_best_survival": [round(float(ls[i]) / math.log(10), 3) for ls in surv0],
        }
        for i in range(args.n)
    ]
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    p.add_argument("--weights", type=Path, default=ROOT / "results" / "synthetic_induction_s6.pt")
    p.add_argument("--L", type=int, default=16384, help="test length")
    p.add_argument("--n", type=int, default=64, help="sequences (the first n of the seeded test set)")
    p.add_argument("--rows", default="", help="comma-separated rows of the first n to keep (default: all)")
    p.add_argument("--near", type=int, default=0, help="move the needle into the last NEAR tokens (0: no)")
    p.add_argument("--seed", type=int, default=0, help="the run's seed: the test set is seeded by seed + L")
    p.add_argument("--batch", type=int, default=16, help="sequences per forward pass")
    p.add_argument("--chunk", type=int, default=1024, help="tokens per forward pass through the cache")
    p.add_argument(
        "--computations",
        default="chunked,sequential,fp64",
        help=f"comma-separated, the first is the reference of the differences: {', '.join(COMPUTATIONS)}",
    )
    p.add_argument(
        "--device", default="cpu", help="where the model runs (cuda for the compiled Triton kernel)"
    )
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = p.parse_args(argv)
    args.computations = [c for c in args.computations.split(",") if c]
    try:
        args.rows = [int(r) for r in args.rows.split(",") if r]
    except ValueError:
        p.error(f"--rows must be comma-separated integers, got {args.rows!r}")
    if any(not 0 <= r < args.n for r in args.rows):
        p.error(f"--rows must be in [0, n={args.n}), got {args.rows}")
    bad = [c for c in args.computations if c not in COMPUTATIONS]
    if bad:
        p.error(f"--computations: unknown {bad}; known: {list(COMPUTATIONS)}")
    if args.near < 0 or args.near > args.L - 3:
        p.error(f"--near must be in [0, L - 3], got {args.near}")
    for name in ("L", "n", "batch", "chunk"):
        if getattr(args, name) < (3 if name == "L" else 1):
            p.error(f"--{name} must be >= {3 if name == 'L' else 1}, got {getattr(args, name)}")
    if not args.weights.is_file():
        p.error(f"--weights: no file {args.weights}")
    report = run(args)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
