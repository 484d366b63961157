"""Selective copying and induction heads (Mamba §4.1, App. E.1): S6, LTI, LSTM and Transformer++.

Two kinds of run.

**Paper recipe** (``--model``): one run per (task, model, training length, seed), each with its own files.
The recipe of App. E.1: 2 layers; Mamba (S6 and its LTI ablation) at D = 64, the LSTM and the
Transformer++ (rotary positions, SwiGLU, RMSNorm: ``minimamba.transformer``) at D = 128; vocabulary 16;
Adam without weight decay at a constant learning rate; fresh data every step.

- induction heads (``--task induction``): trained at L = 256, batch 8, lr 1e-3 (2e-4 for the Transformer++),
  up to 204,800 steps (25 "epochs" of 8192); tested at 2^6 … 2^20 on fixed seeded sets (the same for every
  model of a seed), the last position only. Recurrent models (S6, LTI, LSTM) are tested ``--test-chunk``
  tokens at a time through their cache, so memory does not grow with L; the Transformer++ runs one fused
  ``scaled_dot_product_attention`` pass, and a length that runs out of GPU memory is recorded as such
  (and the longer ones skipped) instead of ending the run.
- selective copying (``--task copy``): 16 data tokens among L noise tokens (L = 1024 and 4096 by default),
  batch 64, lr 1e-4, up to 400,000 steps; scored on a fixed validation set of 512 sequences.

Stopping rule: the run ends after ``--steps`` steps, or once the accuracy on the fixed validation set at the
training length has been 100 % at ``--patience`` consecutive evaluations (every ``--eval-every`` steps),
whichever comes first (``--patience 0``: always the full ``--steps``).

Files: ``<out>/synthetic_<task><L>_<model>_seed<seed>.json`` (minimamba.train.save_results: the settings;
history of training loss, validation accuracy and, for induction heads, ``test`` per length; meta with the
exact command of every invocation, device, versions, steps, wall time, and ``done``), rewritten after every
evaluation; and a checkpoint ``<ckpt-dir>/<run>.pt`` (model, optimizer, data generator, history) every
``--ckpt-every`` steps and when the time limit (``--time-limit``) or SIGTERM stops the run. Running the same
command again resumes from the checkpoint (training, then the test lengths not yet done) and skips finished
runs; a finished run deletes its checkpoint unless ``--keep-checkpoint``. Keep ``--ckpt-dir`` apart from
``--out`` to copy back only the JSON results.

    M="--model s6,lti,lstm,transformer --out results --ckpt-dir ckpt --time-limit 540 --parallel"
    PYTHONPATH=. python scripts/run_synthetic.py --task induction $M       # rerun until every run is done
    PYTHONPATH=. python scripts/run_synthetic.py --task copy --L 1024,4096 $M
    PYTHONPATH=. python scripts/run_synthetic.py --task induction --model lstm --tiny --device cpu --out smoke

**Budget runs** (``--only``, the default without ``--model``): the six S6 / LTI experiments of ``results/``
(EXPERIMENTS below: smaller than the paper, batch 64, lr 1e-3), every experiment in its own process, in
parallel on one GPU, each stopping itself after ``--budget-seconds`` of training.

    PYTHONPATH=. python scripts/run_synthetic.py --out results                        # the GPU run
    PYTHONPATH=. python scripts/run_synthetic.py --out smoke-results --tiny --device cpu     # a smoke test on CPU

Each budget experiment writes ``<out>/synthetic_<name>.json`` and, for two selective models,
``<out>/synthetic_<name>.pt`` (the trained weights, for notebook 08's Δ plot).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

import minimamba  # noqa: F401  (first: configures Triton)
from minimamba import block, scan
from minimamba.config import MambaConfig
from minimamba.language import build, make_config
from minimamba.model import MambaLM
from minimamba.tasks import (
    induction_heads,
    masked_accuracy,
    masked_loss,
    masked_loss_dense,
    selective_copying,
)
from minimamba.train import (
    GraphedStep,
    _jsonable,
    evaluate,
    git_describe,
    last_logits,
    load_checkpoint,
    load_results,
    optimizer_step,
    run_meta,
    save_checkpoint,
    save_results,
    train,
    without_option,
)

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


# ------------------------------------------------------------------------------------------------------------
# Paper recipe: one run per (task, model, L, seed), resumable.

#: --model name -> minimamba.language family, and its width (App. E.1: Mamba D = 64, the others D = 128)
MODELS = {
    "s6": ("mamba", 64),
    "lti": ("mamba-lti", 64),
    "lstm": ("lstm", 128),
    "transformer": ("transformer++", 128),
}
#: per task: the training lengths run by default, batch, steps, and learning rate per model (App. E.1)
RECIPES = {
    "induction": {
        "L": [256],
        "batch": 8,
        "steps": 204_800,
        "lr": {"s6": 1e-3, "lti": 1e-3, "lstm": 1e-3, "transformer": 2e-4},
        "eval_size": 256,
    },
    "copy": {
        "L": [1024, 4096],
        "batch": 64,
        "steps": 400_000,
        "lr": {"s6": 1e-4, "lti": 1e-4, "lstm": 1e-4, "transformer": 1e-4},
        "eval_size": 512,
        "k": 16,
    },
}
VOCAB, N_LAYER = 16, 2
#: --tiny: sizes for a CPU smoke test of every code path
TINY_PAPER = {
    "d_model": 16,
    "batch": 4,
    "steps": 6,
    "eval_every": 3,
    "ckpt_every": 2,
    "eval_size": 8,
    "L": {"induction": [16], "copy": [12]},
    "k": 3,
    "test_lengths": [8, 16, 32, 64],
    "test_size": 4,
    "test_chunk": 16,
}


def paper_run_name(task: str, model: str, L: int, seed: int) -> str:
    return f"synthetic_{task}{L}_{model}_seed{seed}"


class _Stop:
    """Set by SIGTERM (e.g. `timeout`): the loops checkpoint and return at the next step."""

    requested = False

    @classmethod
    def handler(cls, signum, frame) -> None:  # noqa: ARG003
        cls.requested = True


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def test_lengths(args) -> list[int]:
    if args.tiny:
        return list(TINY_PAPER["test_lengths"])
    return [L for L in TEST_LENGTHS if L <= args.max_test_length]


def accuracy_at_length(model, model_name: str, L: int, args, device, autocast) -> dict:
    """Accuracy at the last position on the fixed test set of length L (seeded by seed + L): up to
    ``n`` sequences, fewer if ``--test-seconds`` runs out (at least one batch); per forward pass at most
    ``--test-tokens`` tokens."""
    n = args.test_size if args.test_size else (256 if L <= 2**14 else 64)
    per = max(1, min(n, args.test_tokens // L))
    chunk = None if model_name == "transformer" else args.test_chunk
    g = torch.Generator().manual_seed(args.seed + L)
    right = done = 0
    t = time.perf_counter()
    model.eval()
    while done < n:
        b = induction_heads(min(per, n - done), L, VOCAB, generator=g).to(device)
        with autocast():
            logits = last_logits(model, b.inputs, chunk=chunk)
        right += (logits[:, :VOCAB].argmax(dim=-1) == b.targets[:, -1]).sum().item()
        done += b.inputs.shape[0]
        if time.perf_counter() - t > args.test_seconds:
            break
    model.train()
    return {"accuracy": right / done, "n": done, "seconds": time.perf_counter() - t, "chunk": chunk}


def paper_run(task: str, model_name: str, L: int, args) -> Path:
    """Train (or resume) one run and test it; returns the path of its JSON."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    recipe = RECIPES[task]
    tiny = TINY_PAPER if args.tiny else {}
    name = paper_run_name(task, model_name, L, args.seed)
    path = Path(args.out) / f"{name}.json"
    ckpt_path = Path(args.ckpt_dir) / f"{name}.pt"
    if path.exists() and load_results(path)["meta"].get("done"):
        print(f"[{name}] finished already, skipped", flush=True)
        return path
    device = torch.device(args.device)
    family, d_model = MODELS[model_name]
    d_model = args.d_model or tiny.get("d_model", d_model)
    max_len = max([L, *test_lengths(args)]) if task == "induction" else L + recipe.get("k", 0)
    config = make_config(family, VOCAB, d_model, N_LAYER, max_len=max(max_len, 2048))
    torch.manual_seed(args.seed)
    model = build(config).to(device)
    lr = args.lr if args.lr is not None else recipe["lr"][model_name]
    batch = args.batch or tiny.get("batch", recipe["batch"])
    steps = args.steps or tiny.get("steps", recipe["steps"])
    k = tiny.get("k", recipe.get("k"))
    eval_every = tiny.get("eval_every", args.eval_every)
    ckpt_every = tiny.get("ckpt_every", args.ckpt_every)
    eval_size = tiny.get("eval_size", recipe["eval_size"])
    if task == "induction":
        task_fn = functools.partial(induction_heads, L=L, vocab=VOCAB)
    else:
        task_fn = functools.partial(selective_copying, L=L, k=k, vocab=VOCAB)
    use_bf16 = args.bf16 and device.type == "cuda"
    autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
    settings = {
        "task": task,
        "model": model_name,
        "family": family,
        "train_length": L,
        "k": k if task == "copy" else None,
        "vocab": VOCAB,
        "n_layer": N_LAYER,
        "d_model": d_model,
        "model_config": config,
        "n_params": model.num_params(),
        "lr": lr,
        "batch": batch,
        "max_steps": steps,
        "optimizer": "Adam (torch.optim.AdamW, weight_decay=0), constant lr",
        "grad_clip": args.grad_clip,
        "eval_every": eval_every,
        "eval_size": eval_size,
        "patience": args.patience,
        "stopping_rule": f"max_steps, or validation accuracy at the training length 1.0 at {args.patience} "
        "consecutive evaluations"
        if args.patience
        else "max_steps",
        "test_lengths": test_lengths(args) if task == "induction" else [],
        "test_size": args.test_size or "256 up to L = 2^14, 64 beyond",
        "test_tokens_per_pass": args.test_tokens,
        "test_chunk": args.test_chunk,
        "precision": "bf16 autocast" if use_bf16 else "fp32",
        "seed": args.seed,
        "tiny": args.tiny,
    }
    # capturable: the step count on the GPU, so that a CUDA graph can replay the update (--cuda-graph)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, capturable=args.cuda_graph)
    g = torch.Generator().manual_seed(args.seed)  # the training data stream
    gv = torch.Generator().manual_seed(args.seed + 1_000_003)  # the fixed validation set, apart
    sizes = [min(64, eval_size - i) for i in range(0, eval_size, 64)]
    val = [task_fn(n, generator=gv) for n in sizes]
    hist = {
        "step": [],
        "loss": [],
        "accuracy": [],
        "time": [],
        "eval_step": [],
        "eval_time": [],
        "val_accuracy": [],
        "val_seq_accuracy": [],
        "val_loss": [],
        "test": {},
    }
    state = {"step": 0, "wall": 0.0, "perfect": 0, "trained": False, "invocations": []}
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        if ck["settings"] != _jsonable(settings):
            raise SystemExit(
                f"[{name}] checkpoint {ckpt_path} was made with other settings; delete it or pass the same "
                f"arguments. Differences: "
                + str(
                    {
                        k: (v, ck["settings"].get(k))
                        for k, v in _jsonable(settings).items()
                        if ck["settings"].get(k) != v
                    }
                )
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        g.set_state(ck["generator"])
        hist, state = ck["history"], ck["state"]
        print(f"[{name}] resumed at step {state['step']}", flush=True)
    state["invocations"].append(
        {
            "command": shlex.join(["python", "scripts/run_synthetic.py", *args.argv]),
            "device": run_meta(device)["device"],
            "from_step": state["step"],
            "cuda_graph": args.cuda_graph,
        }
    )

    def meta(done: bool) -> dict:
        return run_meta(
            device,
            git=git_describe(),
            paper=PAPER[TASKS[task]],
            steps=state["step"],
            wall_time=state["wall"],
            invocations=state["invocations"],
            done=done,
            stopped_by=state.get("stopped_by"),
            scan_backend=_backend_used(device) if family.startswith("mamba") else None,
        )

    def checkpoint() -> None:
        state["loss_window"] = (loss_sum.item(), n_sum)
        save_checkpoint(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "generator": g.get_state(),
                "history": hist,
                "state": state,
                "settings": _jsonable(settings),
            },
            ckpt_path,
        )

    t_start = time.perf_counter()
    wall0 = state["wall"]
    out_of_time = lambda: (
        _Stop.requested or (args.time_limit is not None and time.perf_counter() - t_start > args.time_limit)
    )
    # the training loss since the last record, carried over a resume
    loss_sum0, n_sum = state.get("loss_window", (0.0, 0))
    loss_sum = torch.full((), loss_sum0, device=device, dtype=torch.float64)
    if not state["trained"]:
        model.train()
        bar = tqdm(total=steps, initial=state["step"], desc=name, disable=args.no_progress, leave=True)
        graphed = (
            GraphedStep(model, opt, masked_loss_dense, autocast, args.grad_clip) if args.cuda_graph else None
        )
        while state["step"] < steps:
            step = state["step"] + 1
            inputs, targets, mask = task_fn(batch, generator=g).to(device)
            if graphed is not None:  # the same step, replayed from a CUDA graph
                logits, loss = graphed.step(inputs, targets, mask)
            else:
                logits, loss = optimizer_step(
                    model,
                    opt,
                    masked_loss,
                    inputs,
                    targets,
                    mask,
                    autocast=autocast,
                    grad_clip=args.grad_clip,
                )
            loss_sum += loss.detach()
            n_sum += 1
            state["step"] = step
            state["wall"] = wall0 + time.perf_counter() - t_start
            bar.update(1)
            if step % args.log_every == 0 or step == steps:
                acc = masked_accuracy(logits.detach().float(), targets, mask)
                for key, v in (
                    ("step", step),
                    ("loss", loss_sum.item() / n_sum),
                    ("accuracy", acc.token),
                    ("time", state["wall"]),
                ):
                    hist[key].append(v)
                loss_sum.zero_()
                n_sum = 0
            if step % eval_every == 0 or step == steps:
                with autocast():
                    r = evaluate(model, val, device)
                hist["eval_step"].append(step)
                hist["eval_time"].append(state["wall"])
                hist["val_accuracy"].append(r["token"])
                hist["val_seq_accuracy"].append(r["sequence"])
                hist["val_loss"].append(r["loss"])
                state["perfect"] = state["perfect"] + 1 if r["token"] == 1.0 else 0
                bar.set_postfix(loss=f"{r['loss']:.3f}", val_acc=f"{r['token']:.3f}", refresh=False)
                if args.patience and state["perfect"] >= args.patience:
                    state["trained"] = True
                    state["stopped_by"] = f"validation accuracy 1.0 at {args.patience} evaluations in a row"
                save_results(path, hist, settings, meta(done=False))
            if step == steps and not state["trained"]:
                state["trained"] = True
                state["stopped_by"] = "max_steps"
            if state["trained"] or step % ckpt_every == 0 or out_of_time():
                checkpoint()
            if state["trained"] or out_of_time():
                break
        bar.close()
        if not state["trained"]:
            save_results(path, hist, settings, meta(done=False))
            print(
                f"[{name}] stopped at step {state['step']}/{steps}; run the same command to resume",
                flush=True,
            )
            return path
        final = hist["val_accuracy"][-1] if hist["val_accuracy"] else None
        print(
            f"[{name}] trained: {state['step']} steps, {state['stopped_by']}, val accuracy {final}",
            flush=True,
        )
    if task == "induction":
        oom_at = None
        for Lt in settings["test_lengths"]:
            if str(Lt) in hist["test"]:
                continue
            if oom_at is not None:
                hist["test"][str(Lt)] = {"error": f"skipped: out of memory at L={oom_at} already"}
                continue
            if out_of_time():
                checkpoint()
                save_results(path, hist, settings, meta(done=False))
                print(f"[{name}] stopped before test L={Lt}; run the same command to resume", flush=True)
                return path
            try:
                r = accuracy_at_length(model, model_name, Lt, args, device, autocast)
            except (torch.OutOfMemoryError, RuntimeError) as e:
                if not _is_oom(e):
                    raise
                model.train()
                oom_at = Lt
                r = {"error": f"out of memory: {type(e).__name__}: {e}"[:300]}
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            hist["test"][str(Lt)] = r
            msg = f"accuracy {r['accuracy']:.3f} on {r['n']}" if "accuracy" in r else r["error"][:80]
            print(f"[{name}] test L={Lt}: {msg}", flush=True)
            checkpoint()
            save_results(path, hist, settings, meta(done=False))
    state["wall"] = wall0 + time.perf_counter() - t_start
    save_results(path, hist, settings, meta(done=True))
    if args.keep_checkpoint:
        checkpoint()
    elif ckpt_path.exists():
        ckpt_path.unlink()
    if args.save_weights:
        torch.save(
            {k: v.cpu() for k, v in model.state_dict().items()}, Path(args.ckpt_dir) / f"{name}_weights.pt"
        )
    return path


TASKS = {"induction": "induction_heads", "copy": "selective_copying"}


def paper_main(args, p: argparse.ArgumentParser) -> int:
    models = [m for m in args.model.split(",") if m]
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        p.error(f"--model: unknown {bad or models}; known: {list(MODELS)}")
    if args.task not in RECIPES:
        p.error(f"--task must be one of {list(RECIPES)} with --model, got {args.task!r}")
    if args.L:
        try:
            lengths = [int(x) for x in args.L.split(",") if x]
        except ValueError:
            p.error(f"--L must be comma-separated integers, got {args.L!r}")
    else:
        lengths = TINY_PAPER["L"][args.task] if args.tiny else RECIPES[args.task]["L"]
    minimum = (
        3 if args.task == "induction" else TINY_PAPER["k"] + 1 if args.tiny else RECIPES["copy"]["k"] + 1
    )
    if any(L < minimum for L in lengths):
        p.error(f"--L: every training length must be >= {minimum} for --task {args.task}, got {lengths}")
    for name, lo in (
        ("eval_every", 1),
        ("ckpt_every", 1),
        ("log_every", 1),
        ("test_tokens", 1),
        ("test_chunk", 1),
        ("patience", 0),
        ("max_test_length", 64),
    ):
        if getattr(args, name) < lo:
            p.error(f"--{name.replace('_', '-')} must be >= {lo}, got {getattr(args, name)}")
    for name in ("steps", "batch", "d_model", "test_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.cuda_graph and not str(args.device).startswith("cuda"):
        p.error(f"--cuda-graph needs a CUDA device (--device cuda), got --device {args.device}")
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        p.error(f"--lr must be a finite number > 0, got {args.lr}")
    if args.tiny:
        args.test_size = args.test_size or TINY_PAPER["test_size"]
        args.test_chunk = min(args.test_chunk, TINY_PAPER["test_chunk"])
    runs = [(m, L) for L in lengths for m in models]
    signal.signal(signal.SIGTERM, _Stop.handler)
    if len(runs) == 1 or not args.parallel:
        for m, L in runs:
            paper_run(args.task, m, L, args)
            if _Stop.requested:
                break
        return 0
    procs = {}
    for m, L in runs:  # one process per run, in parallel: each is launch-bound and leaves the GPU mostly idle
        argv = without_option(without_option(args.argv, "--parallel", takes_value=False), "--model")
        argv = [*without_option(argv, "--L"), "--model", m, "--L", str(L)]
        procs[(m, L)] = subprocess.Popen(
            [sys.executable, __file__, *argv], env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
    failed = [run for run, proc in procs.items() if proc.wait() != 0]
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="results", help="folder for the JSON results (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seeds the model init, the data and the test sets")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    p.add_argument("--tiny", action="store_true", help="tiny sizes and a few steps, for a smoke test on CPU")
    p.add_argument("--log-every", type=int, default=50, help="steps between training-loss records")
    p.add_argument("--eval-every", type=int, default=1000, help="steps between validation evaluations")
    g = p.add_argument_group("paper recipe (App. E.1): one resumable run per task, model, L and seed")
    g.add_argument("--model", default=None, help=f"comma-separated, from {list(MODELS)}; selects this mode")
    g.add_argument("--task", default="induction", help=f"one of {list(RECIPES)} (default: %(default)s)")
    g.add_argument(
        "--L", default=None, help="comma-separated training lengths (default: 256; copy: 1024,4096)"
    )
    g.add_argument("--steps", type=int, default=None, help="max steps (default: 204,800; copy: 400,000)")
    g.add_argument("--batch", type=int, default=None, help="sequences per step (default: 8; copy: 64)")
    g.add_argument("--lr", type=float, default=None, help="constant lr (default: the recipe's, per model)")
    g.add_argument("--d-model", type=int, default=None, help="width (default: 64 for s6/lti, 128 else)")
    g.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: none)")
    g.add_argument(
        "--patience",
        type=int,
        default=10,
        help="stop once the validation accuracy was 1.0 at this many evaluations in a row (0: never)",
    )
    g.add_argument("--ckpt-dir", default=None, help="folder for checkpoints (default: <out>/checkpoints)")
    g.add_argument("--ckpt-every", type=int, default=2000, help="steps between checkpoints")
    g.add_argument("--keep-checkpoint", action="store_true", help="keep the checkpoint of a finished run")
    g.add_argument("--save-weights", action="store_true", help="write the final state_dict to <ckpt-dir>")
    g.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="seconds of this invocation per run; then checkpoint and stop (rerun the command to resume)",
    )
    g.add_argument("--max-test-length", type=int, default=2**20, help="longest induction test length")
    g.add_argument("--test-size", type=int, default=None, help="test sequences per length (256 / 64)")
    g.add_argument("--test-seconds", type=float, default=300.0, help="stop a length's batches after this")
    g.add_argument("--test-tokens", type=int, default=2**22, help="tokens per test forward pass (at most)")
    g.add_argument("--test-chunk", type=int, default=2**16, help="tokens per pass through a recurrent cache")
    g.add_argument("--bf16", action="store_true", help="bf16 autocast on CUDA (default: fp32)")
    g.add_argument("--parallel", action="store_true", help="one process per run, all at once")
    g.add_argument(
        "--cuda-graph",
        action="store_true",
        help="replay each training step from a CUDA graph (minimamba.train.GraphedStep): these models "
        "launch hundreds of tiny kernels per step; a replay launches them at once (CUDA only)",
    )
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    b = p.add_argument_group("budget runs (without --model): the S6 / LTI experiments of results/")
    b.add_argument("--only", default=",".join(EXPERIMENTS), help="comma-separated experiment names")
    b.add_argument("--budget-seconds", type=float, default=300.0, help="training wall time per experiment")
    b.add_argument("--max-steps", type=int, default=1_000_000, help="stop here if the budget lasts")
    b.add_argument("--serial", action="store_true", help="run the experiments one after another")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded as the exact command
    if args.model is not None:
        if args.ckpt_dir is None:
            args.ckpt_dir = str(Path(args.out) / "checkpoints")
        return paper_main(args, p)
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
