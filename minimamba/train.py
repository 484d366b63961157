"""A small training loop for the synthetic tasks (Mamba §4.1, App. E.1), and JSON results.

The paper's recipe for the synthetic tasks is simple: fresh data every step, Adam without weight decay, a
constant learning rate. :func:`train` does that for any language model ``model(inputs) -> logits`` of shape
``(batch, T, vocab)``, scores it only on the answer positions (:mod:`minimamba.tasks`), clips gradients, and
evaluates on a *fixed* validation set per test length (as App. E.1 does for induction heads), so that
accuracies at different steps are comparable. It returns a plain ``dict`` history that
:func:`save_results` writes as JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from minimamba.tasks import TaskBatch, masked_accuracy, masked_loss

__all__ = [
    "CPU_DEMO",
    "GraphedStep",
    "cpu_demo",
    "cpu_demo_lstm",
    "evaluate",
    "last_logits",
    "load_checkpoint",
    "load_results",
    "optimizer_step",
    "run_meta",
    "save_checkpoint",
    "save_results",
    "train",
    "without_option",
]

#: task_fn(batch, generator=g) -> TaskBatch, e.g. functools.partial(selective_copying, L=64, k=4)
TaskFn = Callable[..., TaskBatch]
#: eval_fn(batch, L, generator=g) -> TaskBatch, e.g. functools.partial(induction_heads, vocab=16)
EvalFn = Callable[..., TaskBatch]


class GraphedStep:
    """One training step of a small model on a CUDA GPU, captured once in a CUDA graph and then replayed.

    A step is ``loss_fn(model(inputs), *targets)``, its backward, an optional gradient clip and
    ``opt.step()``. A model of a few layers launches a few hundred small kernels per step, each costing the
    host more time than the GPU; a replay launches them all at once, the same kernels an eager step with the
    same ``loss_fn`` runs. Nothing in the step may wait for the GPU (no ``.item()``, no boolean indexing):
    use :func:`minimamba.tasks.masked_loss_dense`, not ``masked_loss``.

    ``opt`` must be created with ``capturable=True`` (its step count lives on the GPU) and a constant learning
    rate (a graph replays the values it captured). The batch's shapes are fixed by the first call.

    ``step(inputs, *targets)`` copies the batch into the graph's input buffers and returns (logits, loss),
    the graph's own output tensors, overwritten by the next call (``.detach().clone()`` what you keep). The
    first ``warmup`` calls run eagerly on a side stream (as PyTorch's CUDA-graph recipe asks, so that lazy
    allocations happen before the capture); the next one captures the step and replays it: every call is
    one real optimizer step.
    """

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, loss_fn: Callable, autocast: Callable,
                 grad_clip: float = 0.0, warmup: int = 3):  # fmt: skip
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        groups = getattr(opt, "param_groups", None)
        if not groups or not all(g.get("capturable", False) for g in groups):
            raise ValueError("opt must be a torch optimizer created with capturable=True")
        _check_float("grad_clip", grad_clip, 0.0, strict=False)
        _check_int("warmup", warmup, 1)
        self.model, self.opt, self.loss_fn, self.autocast = model, opt, loss_fn, autocast
        self.grad_clip, self.warmup, self.calls = grad_clip, warmup, 0
        self.graph, self.static, self.out, self.stream = None, None, None, None

    def _eager(self, inputs, targets):
        return optimizer_step(
            self.model,
            self.opt,
            self.loss_fn,
            inputs,
            *targets,
            autocast=self.autocast,
            grad_clip=self.grad_clip,
        )

    def step(self, inputs: torch.Tensor, *targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = (inputs, *targets)
        if not all(isinstance(t, torch.Tensor) and t.is_cuda for t in batch):
            raise ValueError("inputs and targets must be CUDA tensors (a CUDA graph runs on the GPU)")
        if self.static is None:
            self.static = [t.clone() for t in batch]
        elif [t.shape for t in batch] != [t.shape for t in self.static]:
            raise ValueError(
                f"inputs and targets must keep the first batch's shapes {[tuple(t.shape) for t in self.static]}, "
                f"got {[tuple(t.shape) for t in batch]}"
            )
        for buf, t in zip(self.static, batch):
            buf.copy_(t)
        self.calls += 1
        if self.calls <= self.warmup:  # eager, on a side stream
            self.stream = self.stream or torch.cuda.Stream()
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                out = self._eager(self.static[0], self.static[1:])
            torch.cuda.current_stream().wait_stream(self.stream)
            return out
        if self.graph is None:  # capture (this call's step), then replay it; the step's zero_grad sets the
            self.graph = (
                torch.cuda.CUDAGraph()
            )  # gradients to None, so the backward allocates them in the graph's pool
            with torch.cuda.graph(self.graph):
                self.out = self._eager(self.static[0], self.static[1:])
        self.graph.replay()
        return self.out


def optimizer_step(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: Callable, inputs: torch.Tensor,
                   *targets: torch.Tensor, autocast: Callable = contextlib.nullcontext,
                   grad_clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """One optimizer step: the gradients cleared (set to None), the forward under ``autocast()``,
    ``loss_fn(logits, *targets)``, its backward, the gradient norm clipped to ``grad_clip`` (None or 0: not
    clipped), ``opt.step()``. Returns (logits, loss), not detached."""
    opt.zero_grad(set_to_none=True)
    with autocast():
        logits = _logits(model, inputs)
    loss = loss_fn(logits, *targets)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return logits, loss


def without_option(argv: list[str], opt: str, takes_value: bool = True) -> list[str]:
    """``argv`` without every ``opt`` (and the value after it, when ``takes_value``) and ``opt=value``: the
    command line of a script's child process, before the options set per child are appended."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == opt:
            skip = takes_value
        elif not a.startswith(opt + "="):
            out.append(a)
    return out


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_float(name: str, value, minimum: float, strict: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    bad = not math.isfinite(value) or (value <= minimum if strict else value < minimum)
    if bad:
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {minimum}, got {value}")


def _logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    out = model(inputs)
    return out.logits if hasattr(out, "logits") else out  # a plain tensor, or a transformers-style output


@torch.no_grad()
def evaluate(model: nn.Module, batches: Sequence[TaskBatch], device: torch.device | str) -> dict[str, float]:
    """Loss and accuracy of ``model`` over ``batches`` (weighted by answer tokens / sequences).

    Returns:
        {"loss": mean cross-entropy per answer token, "token": token accuracy, "sequence": sequence accuracy}
    """
    was_training = model.training
    model.eval()
    loss = right = n_tok = seq_right = n_seq = 0.0
    for b in batches:
        inputs, targets, mask = b.to(device)
        logits = _logits(model, inputs)
        k, s = mask.sum().item(), mask.any(dim=1).sum().item()
        loss += masked_loss(logits, targets, mask).item() * k
        acc = masked_accuracy(logits, targets, mask)
        right += acc.token * k
        seq_right += acc.sequence * s
        n_tok, n_seq = n_tok + k, n_seq + s
    model.train(was_training)
    return {"loss": loss / n_tok, "token": right / n_tok, "sequence": seq_right / n_seq}


@torch.no_grad()
def last_logits(model: nn.Module, inputs: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """The logits at the last position of ``inputs`` (batch, T) -> (batch, V), for tasks scored there.

    With ``chunk``, the sequence goes through the model ``chunk`` tokens at a time, carrying the state in
    ``model.init_cache(batch)`` (``forward(ids, cache=..., num_last_tokens=1)``, as MambaLM and LSTMLM
    have it): the activations are those of ``batch · chunk`` tokens, not of ``batch · T``, and the result
    equals one pass over the whole sequence. Without ``chunk``, one pass, with ``num_last_tokens=1`` so
    that no (batch, T, V) logits tensor is made (an attention model needs every key anyway).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 2 or inputs.shape[1] < 1:
        got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must be a (batch, T) tensor of token ids with T >= 1, got {got}")
    if chunk is not None:
        _check_int("chunk", chunk, 1)
        if not callable(getattr(model, "init_cache", None)):
            raise TypeError(
                f"chunk needs a model with init_cache(batch) (a recurrent cache); {type(model).__name__} has none"
            )
    batch, T = inputs.shape
    if chunk is None or chunk >= T:
        return model(inputs, num_last_tokens=1)[:, -1]
    cache = model.init_cache(batch, device=inputs.device)
    for start in range(0, T, chunk):
        logits = model(inputs[:, start : start + chunk], cache=cache, num_last_tokens=1)
    return logits[:, -1]


def _validation_sets(
    task_fn, eval_fn, eval_lengths, eval_size, eval_batch, seed
) -> dict[str, list[TaskBatch]]:
    """One fixed validation set per key ("train" for the training distribution, else str(L))."""
    g = torch.Generator().manual_seed(seed + 1_000_003)  # a stream apart from the training data's
    sizes = [min(eval_batch, eval_size - i) for i in range(0, eval_size, eval_batch)]
    if not eval_lengths:
        return {"train": [task_fn(n, generator=g) for n in sizes]}
    return {str(L): [eval_fn(n, L, generator=g) for n in sizes] for L in eval_lengths}


def train(
    model: nn.Module,
    task_fn: TaskFn,
    steps: int,
    lr: float = 1e-3,
    batch: int = 32,
    *,
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
    log_every: int | None = None,
    eval_every: int | None = None,
    eval_fn: EvalFn | None = None,
    eval_lengths: Sequence[int] = (),
    eval_size: int = 256,
    eval_batch: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    budget_seconds: float | None = None,
    desc: str = "train",
) -> dict:
    """Train ``model`` on fresh batches of ``task_fn`` with AdamW at a constant learning rate.

    Args:
        model: any ``nn.Module`` with ``model(inputs (batch, T)) -> logits (batch, T, V)``.
        task_fn: ``task_fn(batch, generator=g) -> TaskBatch``, called once per step with the seeded generator.
        steps: optimizer steps. lr: constant learning rate. batch: sequences per step.
        weight_decay: AdamW's decoupled weight decay (0 = the paper's Adam). grad_clip: max gradient norm
            (None: no clipping).
        log_every: record the training loss (mean since the last record) and the batch's accuracy every this
            many steps (default: about 100 records).
        eval_every: evaluate on the validation sets every this many steps (default: only at the end).
        eval_fn, eval_lengths: ``eval_fn(batch, L, generator=g) -> TaskBatch``, one validation set per ``L``
            in ``eval_lengths`` (length extrapolation). Without them, one validation set from ``task_fn``,
            reported under the key "train".
        eval_size: sequences per validation set. eval_batch: sequences per forward pass there (default batch).
        seed: seeds the data stream (and the validation sets, from a separate stream).
        device: where to train (default: where the model's parameters are).
        progress: show a tqdm progress bar. budget_seconds: stop early (then evaluate) when the wall time
            passes this. desc: the progress bar's label.
    Returns:
        history: {"step", "loss", "accuracy", "time": lists per record; "eval_step", "eval_time" and
        "eval_loss" / "eval_accuracy" / "eval_seq_accuracy": {key: list per evaluation}; "steps_done",
        "wall_time", "stopped_early", "n_params" and the training settings}.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415  (imported here: tqdm.auto looks for ipywidgets)

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(task_fn):
        raise TypeError(
            f"task_fn must be callable (batch, generator=g) -> TaskBatch, got {type(task_fn).__name__}"
        )
    _check_int("steps", steps, 1)
    _check_float("lr", lr, 0.0, strict=True)
    _check_int("batch", batch, 1)
    _check_float("weight_decay", weight_decay, 0.0, strict=False)
    if grad_clip is not None:
        _check_float("grad_clip", grad_clip, 0.0, strict=True)
    log_every = max(1, steps // 100) if log_every is None else log_every
    _check_int("log_every", log_every, 1)
    if eval_every is not None:
        _check_int("eval_every", eval_every, 1)
    eval_lengths = list(eval_lengths)
    for L in eval_lengths:
        _check_int("eval_lengths[i]", L, 1)
    if eval_lengths and not callable(eval_fn):
        raise TypeError(
            "eval_fn must be callable (batch, L, generator=g) -> TaskBatch when eval_lengths is given"
        )
    _check_int("eval_size", eval_size, 1)
    eval_batch = batch if eval_batch is None else eval_batch
    _check_int("eval_batch", eval_batch, 1)
    _check_int("seed", seed, 0)
    if budget_seconds is not None:
        _check_float("budget_seconds", budget_seconds, 0.0, strict=False)

    first = next(model.parameters(), None)
    if first is None:
        raise ValueError("model has no parameters to train")
    device = torch.device(device) if device is not None else first.device
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    val = _validation_sets(task_fn, eval_fn, eval_lengths, eval_size, eval_batch, seed)

    hist: dict = {"step": [], "loss": [], "accuracy": [], "time": [], "eval_step": [], "eval_time": []}
    for name in ("eval_loss", "eval_accuracy", "eval_seq_accuracy"):
        hist[name] = {key: [] for key in val}

    def run_eval(step: int) -> None:
        hist["eval_step"].append(step)
        hist["eval_time"].append(time.perf_counter() - t0)
        for key, batches in val.items():
            r = evaluate(model, batches, device)
            hist["eval_loss"][key].append(r["loss"])
            hist["eval_accuracy"][key].append(r["token"])
            hist["eval_seq_accuracy"][key].append(r["sequence"])

    t0 = time.perf_counter()
    window = torch.zeros((), device=device, dtype=torch.float64)
    n_window, step, stopped = 0, 0, False
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress, leave=True)
    for step in bar:
        inputs, targets, mask = task_fn(batch, generator=g).to(device)
        logits, loss = optimizer_step(model, opt, masked_loss, inputs, targets, mask, grad_clip=grad_clip)
        window += loss.detach()
        n_window += 1
        out_of_time = budget_seconds is not None and time.perf_counter() - t0 > budget_seconds
        if step % log_every == 0 or step == steps or out_of_time:
            acc = masked_accuracy(logits.detach(), targets, mask)
            hist["step"].append(step)
            hist["loss"].append(window.item() / n_window)
            hist["accuracy"].append(acc.token)
            hist["time"].append(time.perf_counter() - t0)
            bar.set_postfix(loss=f"{hist['loss'][-1]:.3f}", acc=f"{acc.token:.2f}", refresh=False)
            window.zero_()
            n_window = 0
        if eval_every is not None and step % eval_every == 0 and step != steps:
            run_eval(step)
        if out_of_time:
            stopped = step < steps
            break
    bar.close()
    run_eval(step)
    hist.update(
        steps_done=step,
        wall_time=time.perf_counter() - t0,
        stopped_early=stopped,
        n_params=sum(p.numel() for p in model.parameters()),
        settings={
            "steps": steps,
            "lr": lr,
            "batch": batch,
            "weight_decay": weight_decay,
            "grad_clip": grad_clip,
            "seed": seed,
            "eval_size": eval_size,
            "eval_lengths": eval_lengths,
            "device": str(device),
        },
    )
    return hist


#: The CPU-sized comparison of notebook 08 and tests/test_train.py: induction heads, small enough to train
#: in seconds on one core, where S6 learns the task in a few hundred steps and LTI does not (measured with
#: seeds 0-3: S6 0.95-1.0 at every test length, LTI 0.14-0.32, chance 1/7). Selective copying needs
#: thousands of steps even for S6 (results/), too many for a CPU demo.
CPU_DEMO: dict = {
    "L": 32,  # training length
    "vocab": 8,  # 7 ordinary tokens + the special one: chance is 1/7
    "d_model": 16,
    "n_layer": 1,  # one layer is enough for induction heads with a selective SSM
    "d_state": 4,
    "batch": 16,
    "lr": 1e-2,
    "steps": 300,
    "eval_lengths": (16, 32, 64, 128),  # half to 4x the training length
    "eval_every": 50,
    "eval_size": 128,
    "seed": 0,
}


def cpu_demo(selective: bool, progress: bool = True, **overrides) -> tuple[nn.Module, dict]:
    """Train the :data:`CPU_DEMO` induction-heads model, S6 (``selective=True``) or LTI; return (model, history).

    ``overrides`` replace CPU_DEMO's entries (e.g. ``steps=100``). The model is built from ``seed`` so that
    the S6 and LTI models share their initialization wherever they share parameters.
    """
    from minimamba.config import MambaConfig  # noqa: PLC0415  (train.py itself works for any model)
    from minimamba.model import MambaLM  # noqa: PLC0415

    c = _demo_settings(overrides)
    torch.manual_seed(c["seed"])
    config = MambaConfig(
        d_model=c["d_model"],
        n_layer=c["n_layer"],
        vocab_size=c["vocab"],
        d_state=c["d_state"],
        selective=selective,
    )
    model = MambaLM(config)
    return model, _demo_train(model, c, progress, "S6" if selective else "LTI")


def cpu_demo_lstm(progress: bool = True, **overrides) -> tuple[nn.Module, dict]:
    """Train an LSTM (:class:`minimamba.lstm.LSTMLM`) on the :data:`CPU_DEMO` task; return (model, history).

    The same task, data stream, optimizer and steps as :func:`cpu_demo`; the model is the one
    ``scripts/run_synthetic.py``'s paper recipe builds (``minimamba.language.make_config("lstm", ...)``: the
    LSTM at twice the Mamba width, as the recipe's D = 128 against Mamba's 64), here 2 · ``d_model`` wide
    with ``n_layer`` layers. ``d_state`` does not apply to it.
    """
    from minimamba.language import build, make_config  # noqa: PLC0415

    c = _demo_settings(overrides)
    torch.manual_seed(c["seed"])
    model = build(make_config("lstm", c["vocab"], 2 * c["d_model"], c["n_layer"]))
    return model, _demo_train(model, c, progress, "LSTM")


def _demo_settings(overrides: dict) -> dict:
    unknown = set(overrides) - set(CPU_DEMO)
    if unknown:
        raise ValueError(f"unknown CPU_DEMO keys {sorted(unknown)}; known: {sorted(CPU_DEMO)}")
    return {**CPU_DEMO, **overrides}


def _demo_train(model: nn.Module, c: dict, progress: bool, desc: str) -> dict:
    from minimamba.tasks import induction_heads  # noqa: PLC0415

    return train(
        model,
        functools.partial(induction_heads, L=c["L"], vocab=c["vocab"]),
        c["steps"],
        c["lr"],
        c["batch"],
        eval_fn=functools.partial(induction_heads, vocab=c["vocab"]),
        eval_lengths=c["eval_lengths"],
        eval_every=c["eval_every"],
        eval_size=c["eval_size"],
        eval_batch=c["eval_size"],
        log_every=max(1, c["steps"] // 30),
        seed=c["seed"],
        progress=progress,
        desc=desc,
    )


def git_describe() -> str | None:
    """The commit a run was made from, with "+dirty" when the tree had changes (None outside git)."""
    import subprocess  # noqa: PLC0415

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def run_meta(device: torch.device | str | None = None, **extra) -> dict:
    """Where and with what a result was made: date, versions, device name, plus ``extra`` fields."""
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        import triton  # noqa: PLC0415

        meta["triton"] = triton.__version__
    except ImportError:
        meta["triton"] = None
    dev = torch.device(device) if device is not None else torch.device("cpu")
    meta["device"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.machine()})"
    meta.update(extra)
    return meta


def _jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, torch.device | torch.dtype):
        return str(obj)
    return obj


def save_results(path: str | Path, history: dict, config, meta: dict | None = None) -> Path:
    """Write ``{"config", "history", "meta"}`` as JSON (``config`` may be a dataclass such as MambaConfig).

    Returns:
        the path written (parent folders are created).
    """
    if not isinstance(history, dict):
        raise TypeError(f"history must be the dict returned by train(), got {type(history).__name__}")
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"config": _jsonable(config), "history": _jsonable(history), "meta": _jsonable(meta or {})}
    path.write_text(json.dumps(doc, indent=1, allow_nan=True) + "\n")
    return path


def load_results(path: str | Path, kind: str = "a results file") -> dict:
    """Read a file written by :func:`save_results`: a dict whose "config", "history" and "meta" are dicts.

    A file that is not JSON, or lacks one of the three, raises ValueError naming it as "not ``kind``".
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not {kind}: not JSON ({e})") from e
    keys = ("config", "history", "meta")
    missing = [k for k in keys if not isinstance(doc, dict) or not isinstance(doc.get(k), dict)]
    if missing:
        raise ValueError(
            f'{path} is not {kind}: missing keys {missing} (expected "config", "history" and "meta" objects)'
        )
    return doc


def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """``torch.save`` to a temporary file, then renamed over ``path``: a save interrupted (a run stopped by
    a time limit) leaves the previous checkpoint whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, every tensor on the CPU.

    On the CPU because RNG states must stay there (``torch.Generator.set_state`` and
    ``torch.set_rng_state`` take CPU byte tensors only); ``load_state_dict`` of a model or an optimizer
    copies the rest onto their parameters' device."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)
