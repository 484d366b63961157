"""One training step of a Mamba language model under torch.profiler: where the time goes.

    python scripts/profile_training.py --out results/profile_training.json                # ours, fused and readable
    PYTHONPATH=$(python scripts/build_peers.py path .peers):. \\
        python scripts/profile_training.py --out results/profile_training.json          # and mamba_ssm

A step is forward, cross-entropy on the next token, backward (no optimizer), for the 130M shape by default
(24 layers, d_model 768, vocab 50277, batch 8 × 2048 tokens), fp32 weights under bf16 autocast. It is
measured for

- ``fused``: ``MambaLM`` with the fused training path (``MambaMixer.fused_forward = True``: the Triton conv
  with its backward, conv + x_proj recomputed in the backward, the fused residual add + RMSNorm);
- ``fused-recompute``: the same, with ``MambaMixer.recompute_scan_states = True`` (the scan keeps no states
  for its backward and runs its forward again there: less memory, more time);
- ``readable``: ``MambaLM`` with the PyTorch ops of ``MambaMixer.forward`` (the scan is Triton's on a GPU
  in both);
- ``mamba_ssm``: mamba_ssm's ``MambaLMHeadModel`` (``mamba_inner_fn``, causal_conv1d's CUDA conv, its
  Triton add + RMSNorm) with the same weights, when it imports (build it with scripts/build_peers.py).

For each: the median step time over ``--steps`` rounds after ``--warmup`` steps (synchronized wall clock; each
round steps every path once, so the paths are timed interleaved), the
peak memory of one step, and the profiler's table of one step: the ``--top`` ops by self device time (self
CPU time on a CPU), with their call counts. Everything goes to the JSON file ``--out``; the tables are printed.
On a CPU (``--device cpu``, a tiny ``--d-model``/``--n-layer``/``--seqlen``) the fused path runs in Triton's
interpreter: a smoke test of the script, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

import minimamba  # noqa: F401  (first: configures Triton)
from minimamba.block import MambaMixer
from minimamba.config import MambaConfig
from minimamba.model import MambaLM
from minimamba.train import git_describe

PATHS = ("fused", "fused-recompute", "readable", "mamba_ssm")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _set_fused(model: torch.nn.Module, choice: bool, recompute: bool = False) -> None:
    for m in model.modules():
        if isinstance(m, MambaMixer):
            m.fused_forward = choice
            m.recompute_scan_states = recompute


def build_models(args, device: torch.device) -> dict:
    """{path: (model, logits_fn)} for the paths asked for; mamba_ssm's only if it imports (same weights)."""
    torch.manual_seed(0)
    cfg = MambaConfig(d_model=args.d_model, n_layer=args.n_layer, vocab_size=args.vocab)
    models, ours, skipped = {}, None, {}
    if "mamba_ssm" in args.paths:
        try:
            from mamba_ssm.models.config_mamba import MambaConfig as PeerConfig  # noqa: PLC0415
            from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel  # noqa: PLC0415
        except ImportError as e:
            skipped["mamba_ssm"] = f"not importable: {e}"
        else:
            peer_cfg = PeerConfig(
                d_model=args.d_model,
                n_layer=args.n_layer,
                vocab_size=args.vocab,
                ssm_cfg={"layer": "Mamba1"},
                rms_norm=True,
                residual_in_fp32=True,
                fused_add_norm=True,
                pad_vocab_size_multiple=8,
            )
            theirs = MambaLMHeadModel(peer_cfg, device=device, dtype=torch.float32)
            with tempfile.TemporaryDirectory() as tmp:  # our model gets their weights
                theirs.save_pretrained(tmp)
                ours = MambaLM.from_pretrained(tmp, device=device)
            models["mamba_ssm"] = (theirs, lambda ids: theirs(ids).logits)
    if ours is None:
        ours = MambaLM(cfg).to(device)
    for path in ("fused", "fused-recompute", "readable"):
        if path in args.paths:
            models[path] = (
                ours,
                _logits_with(ours, fused=path != "readable", recompute=path == "fused-recompute"),
            )
    return models, skipped


def _logits_with(model: MambaLM, fused: bool, recompute: bool = False):
    """model's logits with the fused training path on or off, the scan's states kept or recomputed (the
    paths share the weights)."""

    def logits(ids: torch.Tensor) -> torch.Tensor:
        _set_fused(model, fused, recompute)
        return model(ids)

    return logits


def make_step(logits_fn, model, ids, autocast: bool, device: torch.device):
    def step():
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = logits_fn(ids[:, :-1])  # (batch, L, padded vocab)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        return loss

    return step


def _time_of(evt, device: torch.device) -> float:
    """Self time in µs on the device (CUDA), or on the CPU."""
    return evt.self_device_time_total if device.type == "cuda" else evt.self_cpu_time_total


def profile_step(step, device: torch.device, top: int) -> tuple[list[dict], list[dict], str]:
    """One step under torch.profiler: the top ops by self time, every GPU kernel (name, launches, device
    µs; empty on a CPU), and the profiler's printed table."""
    from torch.autograd import DeviceType  # noqa: PLC0415
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        _sync(device)
    events = prof.key_averages()
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = events.table(sort_by=sort_by, row_limit=top)
    kernels = sorted(
        (
            {"name": e.key, "count": e.count, "device_us": e.self_device_time_total}
            for e in events
            if e.device_type == DeviceType.CUDA and e.self_device_time_total > 0
        ),
        key=lambda k: -k["device_us"],
    )
    # the share of each op: of all kernel time on a GPU (an op's self device time is the time of the kernels
    # it launched, so summing ops and kernels would count each kernel twice), of all self CPU time on a CPU
    total = sum(k["device_us"] for k in kernels) if kernels else sum(_time_of(e, device) for e in events)
    rows = sorted(
        (e for e in events if e.device_type != DeviceType.CUDA),
        key=lambda e: _time_of(e, device),
        reverse=True,
    )[:top]
    ops = [
        {
            "name": e.key,
            "count": e.count,
            "self_us": _time_of(e, device),
            "self_share": _time_of(e, device) / total if total else 0.0,
            "self_cpu_us": e.self_cpu_time_total,
        }
        for e in rows
    ]
    return ops, kernels, table


def measure(models: dict, args, device: torch.device) -> dict:
    """{path: result} for every path in ``models``: the step times in interleaved rounds (one step of each
    path per round, so that clocks and temperature drift alike for all), then per path the peak memory of
    one step and the profiler's table of one step."""
    ids = torch.randint(0, args.vocab, (args.batch, args.seqlen + 1), device=device)
    steps = {
        p: make_step(fn, model, ids, args.autocast == "bf16", device) for p, (model, fn) in models.items()
    }
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    _sync(device)
    times, losses = {p: [] for p in steps}, {}
    for _ in range(args.steps):
        for p, step in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            losses[p] = step()
            _sync(device)
            times[p].append(time.perf_counter() - t0)
    results = {}
    for p, step in steps.items():
        peak = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            step()
            _sync(device)
            peak = torch.cuda.max_memory_allocated(device) / 2**30
        ops, kernels, table = profile_step(step, device, args.top)
        ms = 1e3 * statistics.median(times[p])
        print(f"\n=== {p}: step {ms:.1f} ms (median of {args.steps}, interleaved)", end="")
        print("" if peak is None else f", peak memory {peak:.2f} GiB", flush=True)
        print(table, flush=True)
        results[p] = {
            "step_ms": ms,
            "steps_ms": [1e3 * t for t in times[p]],
            "peak_memory_gib": peak,
            "loss": losses[p].item(),
            "top_ops": ops,
            "kernels": kernels,
        }
    return results


def meta(args, device: torch.device) -> dict:
    import triton  # noqa: PLC0415

    doc = {
        "command": "python scripts/profile_training.py " + " ".join(sys.argv[1:]),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git": git_describe(),  # the code profiled
    }
    try:
        import mamba_ssm  # noqa: PLC0415

        doc["mamba_ssm"] = mamba_ssm.__version__
    except ImportError:
        pass
    return doc


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=pathlib.Path, required=True, help="the JSON file to write")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="what to measure")
    parser.add_argument("--d-model", type=_positive, default=768)
    parser.add_argument("--n-layer", type=_positive, default=24)
    parser.add_argument("--vocab", type=_positive, default=50277)
    parser.add_argument("--batch", type=_positive, default=8)
    parser.add_argument("--seqlen", type=_positive, default=2048, help="tokens per sequence fed to the model")
    parser.add_argument("--autocast", choices=["bf16", "none"], default="bf16", help="fp32 weights, autocast")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=_positive, default=10)
    parser.add_argument("--top", type=_positive, default=25, help="rows of the profiler table")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but no CUDA GPU is available")
    models, skipped = build_models(args, device)
    doc = {
        "meta": meta(args, device),
        "config": {
            k: getattr(args, k) for k in ("d_model", "n_layer", "vocab", "batch", "seqlen", "autocast")
        },
        "step": "forward, cross-entropy, backward; no optimizer",
        "skipped": skipped,
        "results": {},
    }
    for name, why in skipped.items():
        print(f"{name}: skipped ({why})", flush=True)
    doc["results"] = measure({p: models[p] for p in args.paths if p in models}, args, device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print("\nstep times: " + ", ".join(f"{p} {r['step_ms']:.1f} ms" for p, r in doc["results"].items()))
    if "mamba_ssm" in doc["results"]:
        ref = doc["results"]["mamba_ssm"]["step_ms"]
        print(
            "time ÷ mamba_ssm's: "
            + ", ".join(f"{p} {r['step_ms'] / ref:.2f}" for p, r in doc["results"].items())
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
