"""Selective copying and induction heads, LTI (S4D-like) vs selective (S6), at a size that fits minutes.

The paper's Table 1 (selective copying, L = 4096, 400K steps) and Table 2 / 11 (induction heads trained at
L = 2^8 for ~200K steps, tested up to 2^20) are far beyond a few minutes of one GPU. This script runs the
same comparisons smaller — the sizes are in EXPERIMENTS below and are written into every result file — with
every experiment in its own process, in parallel on one GPU (the models are tiny: launches, not FLOPs,
bound a step), each stopping itself after ``--budget-seconds`` of training.

    PYTHONPATH=. python scripts/run_synthetic.py --out results                        # the GPU run
    PYTHONPATH=. python scripts/run_synthetic.py --out smoke-results --tiny --device cpu     # a smoke test on CPU

Each experiment writes ``<out>/synthetic_<name>.json`` (minimamba.train.save_results: config, history with
learning curves and the final accuracy per test length, meta with device, versions, scan backend, sizes) and,
for two selective models, ``<out>/synthetic_<name>.pt`` (the trained weights, for notebook 08's Δ plot).
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

import minimamba  # noqa: F401  (first: configures Triton)
from minimamba import block, scan
from minimamba.config import MambaConfig
from minimamba.model import MambaLM
from minimamba.tasks import induction_heads, selective_copying
from minimamba.train import evaluate, git_describe, run_meta, save_results, train

# The paper's settings (App. E.1) for reference, then ours. Shared: vocab 16, 2 layers, d_model 64, Adam
# without weight decay at a constant learning rate, fresh data every step.
PAPER = {
    "selective_copying": "L=4096, k=16, vocab 16, 2 layers, d_model 64, 400K steps, lr 1e-4, batch 64",
    "induction_heads": "train L=256, vocab 16, 2 layers, d_model 64, 204,800 steps, lr 1e-3, batch 8",
}
COPY = {"task": "selective_copying", "L": 256, "k": 16, "lr": 1e-3, "batch": 64}
COPY_LONG = {**COPY, "L": 1024}
INDUCTION = {"task": "induction_heads", "L": 256, "lr": 1e-3, "batch": 64}
EXPERIMENTS = {
    "copy256_s6": {**COPY, "selective": True, "save_weights": True},
    "copy256_lti": {**COPY, "selective": False},
    "copy1024_s6": {**COPY_LONG, "selective": True},
    "copy1024_lti": {**COPY_LONG, "selective": False},
    "induction_s6": {**INDUCTION, "selective": True, "save_weights": True},
    "induction_lti": {**INDUCTION, "selective": False},
}
#: test lengths of induction heads: 2^6 … 2^20 (Table 11's columns); the curves during training use a few
TEST_LENGTHS = [2**p for p in range(6, 21)]
CURVE_LENGTHS = [64, 256, 1024, 4096]
TINY = {
    "L": 24,
    "k": 3,
    "batch": 8,
    "d_model": 16,
    "test_lengths": [8, 16, 32, 64],
    "curve_lengths": [16, 32],
}


def _backend_used(device: torch.device) -> str:
    """The backend selective_scan(backend="auto") picks for a tensor on ``device``."""
    return scan._auto_backend(torch.empty(1, device=device))


def _consistency(model: MambaLM, device: torch.device, vocab: int) -> float:
    """Max |logits(auto backend) − logits(PyTorch chunked backend)| on a small batch: is the kernel right?"""
    ids = induction_heads(2, 300, vocab, generator=torch.Generator().manual_seed(123)).inputs.to(device)
    with torch.no_grad():
        fast = model(ids)
        orig = block.selective_scan
        block.selective_scan = functools.partial(scan.selective_scan, backend="chunked")
        try:
            slow = model(ids)
        finally:
            block.selective_scan = orig
    return (fast - slow).abs().max().item()


def run_one(name: str, args: argparse.Namespace) -> Path:
    spec = dict(EXPERIMENTS[name])
    tiny = args.tiny
    if tiny:
        spec.update({k: v for k, v in TINY.items() if k in ("L", "k", "batch")})
    device = torch.device(args.device)
    vocab, d_model = 16, TINY["d_model"] if tiny else 64
    torch.manual_seed(args.seed)  # the same initialization for the LTI and S6 models of a task
    config = MambaConfig(d_model=d_model, n_layer=2, vocab_size=vocab, selective=spec["selective"])
    model = MambaLM(config).to(device)
    if spec["task"] == "selective_copying":
        task_fn = functools.partial(selective_copying, L=spec["L"], k=spec["k"], vocab=vocab)
        eval_kw = {"eval_size": 512, "eval_batch": 128}
    else:
        task_fn = functools.partial(induction_heads, L=spec["L"], vocab=vocab)
        curve = TINY["curve_lengths"] if tiny else CURVE_LENGTHS
        eval_kw = {"eval_fn": functools.partial(induction_heads, vocab=vocab), "eval_lengths": curve}
        eval_kw |= {"eval_size": 256, "eval_batch": 64}
    hist = train(
        model,
        task_fn,
        steps=args.max_steps,
        lr=spec["lr"],
        batch=spec["batch"],
        log_every=args.log_every,
        eval_every=args.eval_every,
        seed=args.seed,
        device=device,
        progress=False,
        budget_seconds=args.budget_seconds,
        desc=name,
        **eval_kw,
    )
    backend = _backend_used(device)
    meta = run_meta(
        device,
        experiment=name,
        task=spec["task"],
        selective=spec["selective"],
        train_length=spec["L"],
        k=spec.get("k"),
        lr=spec["lr"],
        batch=spec["batch"],
        steps=hist["steps_done"],
        budget_seconds=args.budget_seconds,
        n_params=model.num_params(),
        scan_backend=backend,
        max_abs_diff_vs_pytorch_scan=_consistency(model, device, vocab),
        git=git_describe(),
        paper=PAPER[spec["task"]],
        tiny=tiny,
    )
    out = Path(args.out)
    path = save_results(out / f"synthetic_{name}.json", hist, config, meta)  # saved now, in case a test fails
    if spec.get("save_weights"):
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, out / f"synthetic_{name}.pt")
    final = {k: round(v[-1], 3) for k, v in hist["eval_accuracy"].items()}
    print(
        f"[{name}] {hist['steps_done']} steps in {hist['wall_time']:.0f}s, backend {backend}: {final}",
        flush=True,
    )
    if spec["task"] == "induction_heads":
        hist["test"] = _extrapolate(name, model, device, vocab, backend, args)
        path = save_results(path, hist, config, meta)
    return path


def _extrapolate(name, model, device, vocab, backend, args) -> dict:
    """Accuracy at every test length on a fixed validation set (batches capped at ~4M tokens)."""
    lengths = TINY["test_lengths"] if args.tiny else TEST_LENGTHS
    if backend != "triton":
        lengths = [L for L in lengths if L <= 4096]  # the PyTorch scans are too slow beyond
    test = {}
    for L in lengths:
        g = torch.Generator().manual_seed(args.seed + L)
        n = 256 if L <= 2**14 else 64
        per = max(1, min(n, 2**22 // L))
        t = time.perf_counter()
        try:
            sets = [induction_heads(min(per, n - i), L, vocab, generator=g) for i in range(0, n, per)]
            r = evaluate(model, sets, device)
        except Exception as e:  # noqa: BLE001  (record why a length failed, e.g. out of memory, and go on)
            test[str(L)] = {"error": f"{type(e).__name__}: {e}"[:300]}
            print(f"[{name}] test L={L}: {test[str(L)]['error']}", flush=True)
            continue
        test[str(L)] = {"accuracy": r["token"], "n": n, "seconds": time.perf_counter() - t}
        print(f"[{name}] test L={L}: accuracy {r['token']:.3f}", flush=True)
    return test


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results", help="folder for the JSON results")
    p.add_argument("--only", default=",".join(EXPERIMENTS), help="comma-separated experiment names")
    p.add_argument("--budget-seconds", type=float, default=300.0, help="training wall time per experiment")
    p.add_argument("--max-steps", type=int, default=1_000_000, help="stop here if the budget lasts")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny sizes, for a smoke test on CPU")
    p.add_argument("--serial", action="store_true", help="run the experiments one after another")
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        p.error(f"unknown experiments {unknown}; known: {list(EXPERIMENTS)}")
    if len(names) == 1 or args.serial:
        for n in names:
            run_one(n, args)
        return 0
    # one process per experiment, in parallel: each is launch-bound and leaves the GPU mostly idle
    base = [sys.executable, __file__, "--out", args.out, "--budget-seconds", str(args.budget_seconds)]
    base += ["--max-steps", str(args.max_steps), "--log-every", str(args.log_every)]
    base += ["--eval-every", str(args.eval_every), "--seed", str(args.seed), "--device", args.device]
    base += ["--tiny"] if args.tiny else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {n: subprocess.Popen([*base, "--only", n], env=env) for n in names}
    failed = [n for n, proc in procs.items() if proc.wait() != 0]
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
