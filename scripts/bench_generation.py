"""Mamba against the Transformer at inference, measured on one GPU (Mamba §4.5, Figure 8; App. E.5).

    python scripts/bench_generation.py --out results throughput context scan        # the paper's Figure 8
    PYTHONPATH=$(python scripts/build_peers.py path .peers):. \\
        python scripts/bench_generation.py --out results peer                       # against mamba_ssm

Each experiment writes ``<out>/generation_<name>.json`` with the command, device, versions and every number:

- ``throughput`` (Figure 8, right): parameter-matched pairs (``minimamba.transformer.matched_pairs``) with
  random weights in bf16, a 2048-token prompt and 128 generated tokens (greedy), batch 1, 2, 4, … 128 or until
  memory runs out; throughput = batch · 128 / time of the whole ``generate`` call (prefill included), the
  paper's definition. Mamba runs op by op (PyTorch step), with the fused Triton step kernels, and with those
  replayed from a CUDA graph; the Transformer++ with its preallocated KV cache, op by op and from a CUDA graph.
- ``context``: the time and memory of one decoding step (CUDA graph) after a prefill of 1K … 128K tokens
  (batch · context ≤ ``--max-tokens``), batch 1 and 16, for the 130M-class pair: the Transformer's step
  grows with the context, Mamba's does not.
- ``scan`` (Figure 8, left): the fused selective scan (ours) and the PyTorch chunked scan against causal
  attention through ``scaled_dot_product_attention`` (FlashAttention backend) and a naive attention that
  materializes the L × L matrix; batch 1, width 1024 (attention: 16 heads of 64), N = 16, bf16,
  L = 2^9 … 2^19 or until memory runs out; forward and forward + backward; the median of interleaved rounds.
- ``peer``: decoding against mamba_ssm's ``MambaLMHeadModel.generate`` (built by scripts/build_peers.py) with
  the same weights (saved by mamba_ssm, loaded by ``MambaLM.from_pretrained``): a 130M-shape model in fp32,
  a 16-token prompt, 256 new tokens, greedy, batch 1 and 64, with and without CUDA graphs; logits and tokens
  compared, then the time per generated token.

Times are medians of ``--reps`` runs after one warm-up run (which also captures the CUDA graphs). The
throughput sweep is long (the op-by-op variants of the 1.4B pair take seconds per call): it saves after every
measurement and continues with ``--resume``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import sys
import time
from dataclasses import replace
from functools import partial

import torch

import minimamba  # noqa: F401  (first: configures Triton)
from minimamba.config import MambaConfig
from minimamba.generate import generate
from minimamba.model import MambaLM
from minimamba.pretrained import mamba_ssm_twin
from minimamba.transformer import TransformerPP, matched_pairs

ROOT = pathlib.Path(__file__).resolve().parents[1]
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)


# ------------------------------------------------------------------------------------------------- helpers


def meta(args) -> dict:
    import triton  # noqa: PLC0415

    return {
        "command": "python scripts/bench_generation.py " + " ".join(sys.argv[1:]),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "reps": args.reps,
    }


def timed(fn, reps: int) -> tuple[float, list[float]]:
    """Median seconds of ``reps`` calls of fn() after one warm-up call (synchronized wall clock)."""
    fn()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def set_fused(model, fused: bool | None) -> None:
    for m in model.modules():
        if hasattr(m, "fused_step"):
            m.fused_step = fused


def forget_graph(model) -> None:
    model.__dict__.pop("_minimamba_graphed_step", None)


def build(config, dtype=torch.bfloat16):
    """The model with random weights, initialized on the GPU (a 1.4B model initializes slowly on a CPU)."""
    with torch.device("cuda"):
        model = MambaLM(config) if isinstance(config, MambaConfig) else TransformerPP(config)
    return model.to(dtype).eval()


#: (label, family, fused step, cuda graph)
VARIANTS = [
    ("Mamba, PyTorch step", "mamba", False, False),
    ("Mamba, fused step", "mamba", True, False),
    ("Mamba, fused step + CUDA graph", "mamba", True, True),
    ("Transformer++, eager", "transformer", None, False),
    ("Transformer++, CUDA graph", "transformer", None, True),
]


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e)


def write(out: pathlib.Path, name: str, doc: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"generation_{name}.json").write_text(json.dumps(doc, indent=1))


# ---------------------------------------------------------------------------------------------- experiments


def throughput(args) -> dict:
    """Figure 8, right. The file is rewritten after every measurement (``"complete": false`` until the end), so
    a run cut short keeps what it measured; ``--resume`` skips the (pair, variant, batch) already there."""
    path = args.out / "generation_throughput.json"
    previous = json.loads(path.read_text()) if args.resume and path.is_file() else {"rows": []}
    rows = previous["rows"]
    done = {(r["pair"], r["variant"], r["batch"]) for r in rows}
    # One meta per invocation that measured rows; each row names its invocation ("run", an index).
    runs = previous.get("runs", [previous["meta"]] if "meta" in previous else []) + [meta(args)]
    header = {
        "meta": runs[-1],
        "runs": runs,
        "prompt": args.prompt,
        "generated": args.gen,
        "dtype": "bf16",
        "complete": False,
    }
    pairs = [p for p in matched_pairs() if p.mamba_name in args.sizes]
    for pair in pairs:
        n_mamba, n_tpp = pair.counts()
        for family in ("mamba", "transformer"):
            tpp = replace(
                pair.transformer, max_len=args.prompt + args.gen
            )  # the cache holds prompt + generated
            model = build(pair.mamba if family == "mamba" else tpp)
            for label, fam, fused, graph in VARIANTS:
                if fam != family:
                    continue
                set_fused(model, fused)
                for batch in args.batches:
                    if (pair.mamba_name, label, batch) in done:
                        continue
                    prompt = torch.randint(0, 50277, (batch, args.prompt), device="cuda")
                    run = partial(generate, model, prompt, args.gen, temperature=0, cuda_graph=graph)
                    row = {"pair": pair.mamba_name, "model": family, "variant": label, "batch": batch}
                    row["run"] = len(runs) - 1
                    row["params"] = n_mamba if family == "mamba" else n_tpp
                    try:
                        seconds, all_s = timed(run, args.reps)
                        row |= {
                            "seconds": seconds,
                            "all_seconds": all_s,
                            "tokens_per_s": batch * args.gen / seconds,
                        }
                        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
                    except Exception as e:  # noqa: BLE001  (out of memory ends this variant's sweep)
                        if not is_oom(e):
                            raise
                        row["oom"] = True
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    write(args.out, "throughput", header | {"rows": rows})
                    forget_graph(model)
                    prompt = run = None
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                    if row.get("oom"):
                        break
            model = None  # noqa: F841  (free the weights before the next model)
            torch.cuda.empty_cache()
    return header | {"rows": rows, "complete": True}


def context(args) -> dict:
    """Time and memory of one decoding step against the context length."""
    rows = []
    pair = next(p for p in matched_pairs() if p.mamba_name == "mamba-130m")
    longest = max(args.contexts) + args.steps + 3
    for family, config in (
        ("mamba", pair.mamba),
        ("transformer", replace(pair.transformer, max_len=longest)),
    ):
        model = build(config)
        for batch in (1, 16):
            for ctx in [c for c in args.contexts if batch * c <= args.max_tokens]:
                row = {"model": family, "batch": batch, "context": ctx}
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                try:
                    row |= time_steps(model, torch.randint(0, 50277, (batch, ctx), device="cuda"), args.steps)
                except Exception as e:  # noqa: BLE001  (out of memory ends this batch's sweep)
                    if not is_oom(e):
                        raise
                    row["oom"] = True
                rows.append(row)
                print(json.dumps(row), flush=True)
                if row.get("oom"):
                    break
        model = None  # noqa: F841
        torch.cuda.empty_cache()
    return {"pair": "mamba-130m / transformer++-125m", "dtype": "bf16", "rows": rows}


def time_steps(model, prompt: torch.Tensor, steps: int) -> dict:
    """Prefill ``prompt`` into a cache, capture one step in a CUDA graph, time ``steps`` replays."""
    from minimamba.generate import GraphedStep, init_cache  # noqa: PLC0415

    batch, ctx = prompt.shape
    with torch.no_grad():
        cache = init_cache(model, batch, ctx + steps + 3)
        graphed = GraphedStep(model, cache)  # captured on the empty cache, restored after capture
        logits = model(prompt, cache=cache, num_last_tokens=1)[:, -1]
        token = logits.argmax(-1)
        graphed(token)  # one replay before timing
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            graphed(token)
        end.record()
        torch.cuda.synchronize()
    cache_bytes = cache.nbytes()
    return {
        "ms_per_step": start.elapsed_time(end) / steps,
        "cache_gib": cache_bytes / 2**30,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def fwd_bwd(fn, x) -> None:
    out = fn(x)
    out.backward(torch.ones_like(out))


def scan(args) -> dict:
    """Figure 8, left: the selective scan against attention, forward and forward + backward."""
    import torch.nn.functional as F  # noqa: PLC0415
    from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: PLC0415
    from triton.testing import do_bench  # noqa: PLC0415

    from minimamba.scan import selective_scan  # noqa: PLC0415

    d, N, heads = 1024, 16, 16
    hd = d // heads

    def scan_inputs(L):
        g = torch.Generator(device="cuda").manual_seed(L)
        r = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
        u, delta, z = (r(1, d, L).bfloat16().requires_grad_() for _ in range(3))
        A = (-torch.arange(1, N + 1.0, device="cuda").repeat(d, 1)).requires_grad_()
        B, C = (r(1, N, L).bfloat16().requires_grad_() for _ in range(2))
        Dv, bias = (
            torch.ones(d, device="cuda", requires_grad=True),
            torch.zeros(d, device="cuda", requires_grad=True),
        )
        return u, delta, A, B, C, Dv, z, bias

    def attn_inputs(L):
        g = torch.Generator(device="cuda").manual_seed(L)
        return [
            torch.randn(1, heads, L, hd, device="cuda", generator=g).bfloat16().requires_grad_()
            for _ in range(3)
        ]

    def naive(q, k, v):
        L = q.shape[2]
        s = (q @ k.transpose(-1, -2)) * hd**-0.5  # (1, heads, L, L): the matrix FlashAttention never writes
        s = s.masked_fill(torch.ones(L, L, dtype=torch.bool, device="cuda").triu(1), float("-inf"))
        return s.softmax(-1) @ v

    def flash(q, k, v):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    methods = {
        "selective scan (ours, Triton)": (
            "scan",
            lambda x: selective_scan(*x, delta_softplus=True, backend="triton"),
        ),
        "selective scan (PyTorch chunked)": (
            "scan",
            lambda x: selective_scan(*x, delta_softplus=True, backend="chunked"),
        ),
        "attention (SDPA, FlashAttention)": ("attn", lambda x: flash(*x)),
        "attention (naive, L x L matrix)": ("attn", lambda x: naive(*x)),
    }
    rows, dead = [], set()
    for p in range(args.scan_min, args.scan_max + 1):
        L = 2**p
        inputs = {}
        for mode in ("fwd", "fwd+bwd"):
            per = {name: [] for name in methods if (name, mode) not in dead}
            for _ in range(args.rounds):  # interleaved rounds: each method once per round
                for name in list(per):
                    kind, fn = methods[name]
                    try:
                        x = inputs.setdefault(kind, scan_inputs(L) if kind == "scan" else attn_inputs(L))
                        if mode == "fwd":
                            with torch.no_grad():
                                ms = do_bench(partial(fn, x), return_mode="median")
                        else:
                            ms = do_bench(partial(fwd_bwd, fn, x), return_mode="median", grad_to_none=list(x))
                        per[name].append(ms)
                    except Exception as e:  # noqa: BLE001
                        if not is_oom(e):
                            raise
                        dead.add((name, mode))
                        per.pop(name)
                        torch.cuda.empty_cache()
            for name, ms in per.items():
                row = {"method": name, "mode": mode, "L": L, "ms": statistics.median(ms), "rounds_ms": ms}
                rows.append(row)
                print(json.dumps(row), flush=True)
            for name in methods:
                if (name, mode) in dead and not any(
                    r["method"] == name and r["mode"] == mode and r.get("oom") for r in rows
                ):
                    rows.append({"method": name, "mode": mode, "L": L, "oom": True})
        del inputs
        torch.cuda.empty_cache()
    return {"batch": 1, "width": d, "N": N, "heads": heads, "dtype": "bf16", "rows": rows}


def peer(args) -> dict:
    """Decoding against mamba_ssm, same weights."""
    import mamba_ssm  # noqa: PLC0415

    theirs, ours = mamba_ssm_twin(device="cuda")
    doc = {
        "mamba_ssm": mamba_ssm.__version__,
        "model": "24 layers, d_model 768, vocab 50277, fp32, random weights",
    }
    ids = torch.randint(0, 50277, (4, 64), device="cuda")
    with torch.no_grad():
        a, b = theirs(ids).logits, ours(ids)
    doc["max_abs_logit_diff"] = (a - b).abs().max().item()
    rows = []
    for batch in (1, 64):
        prompt = torch.randint(0, 50277, (batch, args.peer_prompt), device="cuda")
        total = args.peer_prompt + args.peer_new
        runs = {
            "mamba_ssm, CUDA graph": partial(theirs.generate, prompt, max_length=total, cg=True, top_k=1),
            "mamba_ssm, no graph": partial(theirs.generate, prompt, max_length=total, cg=False, top_k=1),
            "ours, fused step + CUDA graph": partial(
                generate, ours, prompt, args.peer_new, temperature=0, cuda_graph=True
            ),
            "ours, fused step": partial(generate, ours, prompt, args.peer_new, temperature=0),
        }
        tokens = {name: fn() for name, fn in runs.items()}
        same = {
            name: bool(
                torch.equal(t[:, -args.peer_new :], tokens["mamba_ssm, CUDA graph"][:, -args.peer_new :])
            )
            for name, t in tokens.items()
        }
        times = {name: [] for name in runs}
        for _ in range(args.reps):  # interleaved: each implementation once per round
            for name, fn in runs.items():
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn()
                torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)
        for name in runs:
            s = statistics.median(times[name])
            row = {
                "batch": batch,
                "impl": name,
                "seconds": s,
                "all_seconds": times[name],
                "ms_per_token": 1e3 * s / args.peer_new,
                "tokens_per_s": batch * args.peer_new / s,
                "same_tokens_as_mamba_ssm_cg": same[name],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    doc |= {"prompt": args.peer_prompt, "generated": args.peer_new, "rows": rows}
    return doc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("experiments", nargs="+", choices=["throughput", "context", "scan", "peer"])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "results")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--resume", action="store_true", help="throughput: keep the rows already in --out")
    parser.add_argument("--sizes", nargs="+", default=["mamba-130m", "mamba-1.4b"])
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--prompt", type=int, default=2048)
    parser.add_argument("--gen", type=int, default=128)
    parser.add_argument("--contexts", type=int, nargs="+", default=[2**k for k in range(10, 18)])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument(
        "--max-tokens", type=int, default=2**19, help="context: largest batch · context prefilled"
    )
    parser.add_argument("--scan-min", type=int, default=9)
    parser.add_argument("--scan-max", type=int, default=19)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer-prompt", type=int, default=16)
    parser.add_argument("--peer-new", type=int, default=256)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("these benchmarks need a CUDA GPU")
    for name in args.experiments:
        doc = {"meta": meta(args)} | {
            "throughput": throughput,
            "context": context,
            "scan": scan,
            "peer": peer,
        }[name](args)
        write(args.out, name, doc)
        print(f"wrote {args.out / f'generation_{name}.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
