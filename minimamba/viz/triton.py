"""Figures and widgets of notebook 06 (Triton): programs and masks, chunks with a carried state, bytes moved,
and the roofline.

Each widget is a thin wrapper around a pure function that returns the plotted data (``block_layout``,
``chunk_carry``, ``io_bytes``), so that pytest can check the numbers the reader sees.
"""

from __future__ import annotations

import inspect
import textwrap

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from minimamba import committed
from minimamba.viz import figure, show, with_static

__all__ = [
    "GPU",
    "benchmark_rows",
    "block_layout",
    "block_layout_widget",
    "chunk_carry",
    "chunk_carry_widget",
    "io_bytes",
    "io_bytes_widget",
    "measured_roofline_points",
    "plot_benchmark",
    "plot_block_layout",
    "plot_chunk_carry",
    "plot_io_bytes",
    "plot_roofline",
    "roofline_points",
    "source_paragraph",
]


def _committed_device() -> str:
    """The GPU of the committed benchmark, as bench.py named it ("NVIDIA H100 80GB HBM3, 132 SMs, ..."): its
    first field."""
    import json  # noqa: PLC0415

    return json.loads(committed.kernel_results("selective_scan").read_text())["device"].split(",")[0]


#: The GPU of the committed benchmark (kernels/selective_scan/results.json). Name and bandwidth: the device
#: and the device-to-device copy that kernels/selective_scan/bench.py measured on it, in the same run as its
#: timings. The rest holds for both Hopper cards, H100 SXM and H200 (132 SMs, 1.98 GHz boost clock, their
#: datasheets): fp32 FLOP/s, datasheet, without tensor cores; exp/s: 132 SMs × 16 results per clock (exp2f on
#: compute capability 9.0, the CUDA C++ Programming Guide's table of arithmetic instruction throughput) ×
#: 1.98 GHz.
GPU = {
    "name": _committed_device(),
    "bytes_per_s": committed.copy_bandwidth(),
    "flops_per_s": 67e12,
    "exps_per_s": 132 * 16 * 1.98e9,
}

#: FLOPs per (batch, channel, step, state) element of the selective scan besides the exponential:
#: Δ·A (1), Δu·B (1), h = Ā h + B̄u (2), y += C h (2), rounded up to 7 for the Δ·u and the bookkeeping.
SCAN_FLOPS_PER_ELEMENT = 7


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def source_paragraph(obj, contains: str, until: str | None = None) -> str:
    """The paragraph (lines between blank lines) of ``obj``'s source code that contains ``contains``.

    Lets a notebook show a kernel one stage at a time, found by a line it contains rather than by line
    numbers, so that the cell keeps working when the kernel above it changes. With ``until``: the lines
    from the first one containing ``contains`` through the first one from there on containing ``until``
    (blank lines included), for a stage that is part of a long paragraph or spans several.
    """
    fn = obj
    while not inspect.isroutine(fn) and hasattr(fn, "fn"):  # a @triton.jit kernel wraps the Python function
        fn = fn.fn
    src = inspect.getsource(fn)
    name = getattr(obj, "__name__", obj)
    if until is not None:
        lines = src.splitlines()
        start = next((i for i, line in enumerate(lines) if contains in line), None)
        if start is None:
            raise ValueError(f"no line of {name!r} contains {contains!r}")
        stop = next((i for i in range(start, len(lines)) if until in lines[i]), None)
        if stop is None:
            raise ValueError(f"no line of {name!r} from {contains!r} on contains {until!r}")
        return textwrap.dedent("\n".join(lines[start : stop + 1])).rstrip()
    paragraphs = [p for p in src.split("\n\n") if contains in p]
    if not paragraphs:
        raise ValueError(f"no paragraph of {name!r} contains {contains!r}")
    return textwrap.dedent(paragraphs[0].lstrip("\n")).rstrip()


# ------------------------------------------------------------------------------------------------------
# Programs, blocks and masks.


def block_layout(n: int, BLOCK: int) -> dict:
    """Which program handles which element of an n-element tensor split into blocks of BLOCK lanes.

    Returns a dict of arrays over the ``n_programs · BLOCK`` lanes: ``program`` (tl.program_id),
    ``offset`` (program · BLOCK + lane, the ``o_x`` of the kernel) and ``mask`` (offset < n), and the
    number of programs ``n_programs`` = cdiv(n, BLOCK).
    """
    _check_positive_int("n", n)
    _check_positive_int("BLOCK", BLOCK)
    n_programs = -(-n // BLOCK)
    program = np.repeat(np.arange(n_programs), BLOCK)
    offset = program * BLOCK + np.tile(np.arange(BLOCK), n_programs)
    return {"n_programs": n_programs, "program": program, "offset": offset, "mask": offset < n}


def plot_block_layout(n: int = 10, BLOCK: int = 4) -> Figure:
    """One square per lane, coloured by program; masked lanes hatched in grey.

    The figure is at most 9 inches wide (notebook width): with many lanes the squares and their labels
    shrink (down to 5 pt), and programs too narrow for "program p" are labelled "p" alone.
    """
    d = block_layout(n, BLOCK)
    lanes = len(d["offset"])
    width = min(9.0, max(4.0, 0.45 * lanes + 1.5))
    lane_in = (width - 1.0) / lanes  # inches per lane, about 1 inch of margins
    size = float(np.clip(lane_in * 72 * 0.45, 5, 8))  # points: a two-digit offset fits in its square
    fig, ax = plt.subplots(figsize=(width, 1.9), layout="constrained")
    cmap = plt.get_cmap("tab10")
    for x, (p, o, m) in enumerate(zip(d["program"], d["offset"], d["mask"])):
        ax.add_patch(
            plt.Rectangle(
                (x, 0),
                0.92,
                0.92,
                facecolor=cmap(p % 10) if m else "0.85",
                hatch=None if m else "//",
                edgecolor="k",
                lw=0.5,
            )
        )
        ax.text(x + 0.46, 0.46, str(o), ha="center", va="center", fontsize=size, color="k" if m else "0.4")
    long_names = BLOCK * lane_in >= 0.8  # "program 10" is about 0.7 inch at 8 pt
    for p in range(d["n_programs"]):
        name = f"program {p}" if long_names else str(p)
        ax.text(p * BLOCK + BLOCK / 2, 1.15, name, ha="center", fontsize=8 if long_names else size)
    ax.set_xlim(-0.2, lanes + 0.2)
    ax.set_ylim(-0.1, 1.5)
    ax.set_yticks([])
    ax.set_xlabel(
        "lane (number = offset o_x; grey = masked, o_x ≥ n)" + ("" if long_names else "; top: program")
    )
    ax.set_title(
        f"n = {n} elements, BLOCK = {BLOCK}: {d['n_programs']} programs, {int((~d['mask']).sum())} masked"
    )
    return fig


figure("06_blocks")(plot_block_layout)


def block_layout_widget() -> widgets.interactive:
    """Sliders for n and BLOCK over :func:`plot_block_layout`."""
    w = widgets.interactive(
        lambda n, BLOCK: show(plot_block_layout(n, BLOCK)),
        n=widgets.IntSlider(value=10, min=1, max=40, description="n"),
        BLOCK=widgets.Dropdown(options=[1, 2, 4, 8, 16], value=4, description="BLOCK"),
    )
    return with_static(w, lambda: plot_block_layout(**w.kwargs))


# ------------------------------------------------------------------------------------------------------
# Chunks with a carried state.


def chunk_carry(L: int = 48, BLOCK_L: int = 16, decay: float = 0.9, seed: int = 0) -> dict:
    """The chunked recurrence h_t = a_t h_{t-1} + b_t split into what each chunk computes (float64, numpy).

    Inside each chunk the scan starts from zero: ``H`` (the state from 0) and ``A`` (the product of the
    decays since the chunk start). The true state is ``h = H + A · carry`` with ``carry`` the state at the
    end of the previous chunk. Inputs: a_t = ``decay``, b_t ~ N(0, 1) with ``seed``.
    Returns t, a, b, H, A, h, the chunk ``starts`` and the ``carry`` entering each chunk.
    """
    _check_positive_int("L", L)
    _check_positive_int("BLOCK_L", BLOCK_L)
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay}")
    b = np.random.default_rng(seed).standard_normal(L)
    a = np.full(L, float(decay))
    H, A, h = np.empty(L), np.empty(L), np.empty(L)
    starts = np.arange(0, L, BLOCK_L)
    carries = np.empty(len(starts))
    carry = 0.0
    for i, s in enumerate(starts):
        carries[i] = carry
        state, prod = 0.0, 1.0
        for t in range(s, min(s + BLOCK_L, L)):
            state, prod = a[t] * state + b[t], prod * a[t]
            H[t], A[t] = state, prod
            h[t] = state + prod * carry
        carry = h[min(s + BLOCK_L, L) - 1]
    return {"t": np.arange(L), "a": a, "b": b, "H": H, "A": A, "h": h, "starts": starts, "carry": carries}


def plot_chunk_carry(L: int = 48, BLOCK_L: int = 16, decay: float = 0.9, seed: int = 0) -> Figure:
    """The true state h and the from-zero state H of each chunk, with the chunk boundaries."""
    d = chunk_carry(L, BLOCK_L, decay, seed)
    fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
    ax.plot(d["t"], d["h"], "k-", lw=2, label="h = H + A · carry (the state)")
    for i, s in enumerate(d["starts"]):
        sl = slice(s, s + BLOCK_L)
        ax.plot(d["t"][sl], d["H"][sl], "C1--", label="H: the chunk's scan from 0" if i == 0 else None)
        ax.axvline(s - 0.5, color="0.7", lw=0.8)
        ax.plot(s - 0.5, d["carry"][i], "C0o", ms=5, label="carry into the chunk" if i == 0 else None)
    ax.set_xlabel("step t (grey lines: chunk boundaries)")
    ax.set_ylabel("state")
    ax.set_title(f"chunks of BLOCK_L = {BLOCK_L}, a_t = {decay}")
    ax.legend(fontsize=8, loc="best")
    return fig


figure("06_chunk_carry")(plot_chunk_carry)


def chunk_carry_widget() -> widgets.interactive:
    """Sliders for BLOCK_L and the decay over :func:`plot_chunk_carry`."""
    w = widgets.interactive(
        lambda BLOCK_L, decay: show(plot_chunk_carry(48, BLOCK_L, decay)),
        BLOCK_L=widgets.Dropdown(options=[4, 8, 16, 32, 64], value=16, description="BLOCK_L"),
        decay=widgets.FloatSlider(value=0.9, min=0.0, max=1.0, step=0.05, description="a_t"),
    )
    return with_static(w, lambda: plot_chunk_carry(48, **w.kwargs))


# ------------------------------------------------------------------------------------------------------
# Bytes moved and the roofline.


def io_bytes(batch: int, d_inner: int, L: int, N: int, dtype_bytes: int = 4) -> dict:
    """Bytes the selective-scan forward moves through HBM, unfused (one PyTorch kernel per stage) and fused.

    Inputs and y have ``dtype_bytes`` per element; the unfused intermediates (batch, d_inner, L, N) are kept
    in fp32 (4 bytes), as the reference does. A, D and delta_bias are fp32. Stages:

    unfused: discretize A (read Δ, A; write Ā), discretize B (read Δ, u, B; write B̄u), scan (read Ā, B̄u;
    write h), contract with C (read h, C; write y), D skip and z gate (read y, u, z, D; write y).
    fused: read u, Δ, z, B, C, A, D, delta_bias once, write y once.

    Returns ``{"unfused": {stage: bytes}, "fused": {stage: bytes}, "unfused_total", "fused_total", "ratio"}``.
    """
    for name, v in (("batch", batch), ("d_inner", d_inner), ("L", L), ("N", N)):
        _check_positive_int(name, v)
    if dtype_bytes not in (2, 4, 8):
        raise ValueError(f"dtype_bytes must be 2, 4 or 8, got {dtype_bytes}")
    x = batch * d_inner * L * dtype_bytes  # one (batch, d_inner, L) tensor: u, delta, z or y
    bc = batch * N * L * dtype_bytes  # one (batch, N, L) tensor: B or C
    big = batch * d_inner * L * N * 4  # one (batch, d_inner, L, N) fp32 intermediate
    params = (d_inner * N + 2 * d_inner) * 4  # A, D, delta_bias
    unfused = {
        "discretize A": x + d_inner * N * 4 + big,
        "discretize B": 2 * x + bc + big,
        "scan": 3 * big,
        "contract C": big + bc + x,
        "D skip, z gate": 4 * x + d_inner * 4,
    }
    fused = {"read u, delta, z": 3 * x, "read B, C": 2 * bc, "read A, D, bias": params, "write y": x}
    u_tot, f_tot = sum(unfused.values()), sum(fused.values())
    return {
        "unfused": unfused,
        "fused": fused,
        "unfused_total": u_tot,
        "fused_total": f_tot,
        "ratio": u_tot / f_tot,
    }


def plot_io_bytes(
    batch: int = 1, d_inner: int = 1024, L: int = 2**15, N: int = 16, dtype_bytes: int = 2
) -> Figure:
    """Stacked bars: bytes moved by each stage, unfused vs fused."""
    d = io_bytes(batch, d_inner, L, N, dtype_bytes)
    fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
    for row, key in enumerate(("unfused", "fused")):
        left = 0.0
        for i, (stage, nbytes) in enumerate(d[key].items()):
            ax.barh(row, nbytes / 1e6, left=left, color=f"C{i + (0 if key == 'unfused' else 5)}", label=stage)
            left += nbytes / 1e6
        ax.text(left, row, f" {left:,.1f} MB", va="center", fontsize=9)
    ax.set_yticks([0, 1], ["unfused\n(PyTorch)", "fused\n(one kernel)"])
    ax.set_xlabel("HBM traffic of the forward (MB)")
    ax.set_xlim(0, d["unfused_total"] / 1e6 * 1.25)
    ax.set_title(
        f"(batch, d_inner, L, N) = ({batch}, {d_inner}, {L}, {N}), {8 * dtype_bytes}-bit inputs: "
        f"{d['ratio']:.0f}× fewer bytes fused"
    )
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    return fig


figure("06_io_bytes")(plot_io_bytes)


def io_bytes_widget() -> widgets.interactive:
    """Sliders for log2(L), N and the input width over :func:`plot_io_bytes`."""
    w = widgets.interactive(
        lambda log2_L, N, dtype_bytes: show(plot_io_bytes(1, 1024, 2**log2_L, N, dtype_bytes)),
        log2_L=widgets.IntSlider(value=15, min=9, max=19, description="log2 L"),
        N=widgets.Dropdown(options=[1, 4, 8, 16, 32, 64], value=16, description="N"),
        dtype_bytes=widgets.Dropdown(options=[("bf16", 2), ("fp32", 4)], value=2, description="inputs"),
    )
    return with_static(
        w, lambda: plot_io_bytes(1, 1024, 2 ** w.kwargs["log2_L"], w.kwargs["N"], w.kwargs["dtype_bytes"])
    )


def roofline_points(batch: int, d_inner: int, L: int, N: int, dtype_bytes: int = 4) -> dict:
    """Arithmetic intensity (FLOP per byte) of the unfused and the fused forward, and the FLOPs."""
    d = io_bytes(batch, d_inner, L, N, dtype_bytes)
    flops = SCAN_FLOPS_PER_ELEMENT * batch * d_inner * L * N
    return {
        "flops": flops,
        "exps": batch * d_inner * L * N,
        "unfused": flops / d["unfused_total"],
        "fused": flops / d["fused_total"],
    }


def measured_roofline_points(res: dict, dtype_bytes: int = 4) -> list[dict]:
    """The forward passes measured in ``res`` (bench.py's results.json) as roofline points.

    One dict per (implementation, shape) timed in the forward with inputs of ``dtype_bytes`` (4: fp32,
    2: bf16): ``impl``, ``shape``, ``ms``, ``intensity`` (FLOP per byte: the fused traffic for our kernel,
    the unfused traffic for the PyTorch scans) and ``flops_per_s`` achieved (the FLOPs of
    :func:`roofline_points` over the measured time). The reference loop and other libraries are left out.
    """
    if dtype_bytes not in (2, 4):
        raise ValueError(f"dtype_bytes must be 2 (bf16) or 4 (fp32), got {dtype_bytes}")
    if not isinstance(res, dict) or "times" not in res:
        raise TypeError("res must be the dict of a results.json written by bench.py (with a 'times' list)")
    dname = {2: "bf16", 4: "fp32"}[dtype_bytes]
    out = []
    for r in res["times"]:
        ours = r["impl"] == "triton (ours)"
        if r["mode"] != "fwd" or r["dtype"] != dname or not r.get("ms"):
            continue
        if not (ours or r["impl"].startswith("minimamba.scan")):
            continue
        pts = roofline_points(*r["shape"], dtype_bytes=dtype_bytes)
        out.append(
            {
                "impl": r["impl"],
                "shape": tuple(r["shape"]),
                "ms": r["ms"],
                "intensity": pts["fused" if ours else "unfused"],
                "flops_per_s": pts["flops"] / (r["ms"] * 1e-3),
            }
        )
    return out


def plot_roofline(
    batch: int = 8,
    d_inner: int = 1536,
    L: int = 8192,
    N: int = 16,
    dtype_bytes: int = 4,
    res: dict | None = None,
) -> Figure:
    """The roofline of the benchmark's GPU (:data:`GPU`: fp32, no tensor cores) with the unfused and fused
    selective-scan forward.

    Open circles: where each version could be at (batch, d_inner, L, N). Filled markers: the forward passes
    measured on that GPU (``res``, bench.py's results.json; the committed one when None), every shape.
    """
    if res is None:
        import json  # noqa: PLC0415

        from minimamba import committed  # noqa: PLC0415

        res = json.loads(committed.kernel_results("selective_scan").read_text())
    pts = roofline_points(batch, d_inner, L, N, dtype_bytes)
    intensity = np.logspace(-2, 3, 200)
    bw, peak = GPU["bytes_per_s"], GPU["flops_per_s"]
    exp_roof = GPU["exps_per_s"] * pts["flops"] / pts["exps"]  # FLOP/s if the exponentials are the limit
    fig, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
    ax.loglog(intensity, np.minimum(peak, bw * intensity) / 1e12, "k-", label="HBM and fp32 roofs")
    ax.axhline(exp_roof / 1e12, color="C3", ls=":", label="exp() roof (special-function units)")
    for key, color in (("unfused", "C0"), ("fused", "C2")):
        x = pts[key]
        ax.plot(x, min(peak, bw * x) / 1e12, "o", mfc="none", mew=1.5, color=color, ms=9,
                label=f"{key} at its roof: {x:.2g} FLOP/byte")  # fmt: skip
    measured = measured_roofline_points(res, dtype_bytes)
    for impl, color, marker, name in (
        ("triton (ours)", "C2", "D", "fused kernel, measured"),
        ("minimamba.scan", "C0", "s", "PyTorch scans, measured"),
    ):
        got = [m for m in measured if m["impl"].startswith(impl)]
        if got and impl != "triton (ours)":  # "minimamba.scan[chunked]" -> "PyTorch chunked scan"
            kinds = sorted({m["impl"].removeprefix("minimamba.scan[").rstrip("]") for m in got})
            name = f"PyTorch {', '.join(kinds)} scan, measured"
        if got:
            ax.plot([m["intensity"] for m in got], [m["flops_per_s"] / 1e12 for m in got], marker,
                    color=color, ms=6, ls="none", label=f"{name} ({len(got)} shapes)")  # fmt: skip
    ax.axvline(peak / bw, color="0.6", lw=0.8)
    ax.text(peak / bw * 1.1, 0.08, f"ridge {peak / bw:.0f} FLOP/byte", fontsize=8, color="0.4")
    ax.set_xlabel("arithmetic intensity (FLOP per byte of HBM traffic)")
    ax.set_ylabel("TFLOP/s")
    ax.set_title(f"{GPU['name']}, selective-scan forward ({8 * dtype_bytes}-bit inputs), N = {N}")
    ax.legend(fontsize=8, loc="upper left")
    return fig


figure("06_roofline")(plot_roofline)


# ------------------------------------------------------------------------------------------------------
# The GPU benchmark, as kernels/selective_scan/bench.py recorded it.


def plot_benchmark(res: dict) -> Figure:
    """The committed benchmark at notebook width: time against L, forward and forward + backward.

    Four series per panel, from :func:`benchmark_rows`: our kernel, the fastest PyTorch scan, mamba_ssm's
    CUDA kernel and the bytes floor; solid fp32, dashed bf16. Batch 8 as lines; the batch-1 sequence of
    65 536 steps as hollow markers.
    """
    if not isinstance(res, dict) or not {"times", "shapes", "device", "copy_bytes_per_s"} <= set(res):
        raise TypeError(
            "res must be the dict of a results.json written by bench.py (with 'times', 'shapes', 'device' and "
            f"'copy_bytes_per_s'), got {type(res).__name__}"
        )
    rows = benchmark_rows(res)
    series = (
        ("ours_ms", "ours (Triton)", "C2", "D"),
        ("pytorch_ms", "fastest PyTorch scan", "C0", "s"),
        ("mamba_ssm_ms", "mamba_ssm CUDA", "C1", "o"),
        ("floor_ms", "bytes floor", "0.4", "x"),
    )
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True, layout="constrained")
    for ax, mode in zip(axes, ("fwd", "fwd+bwd")):
        for dtype, ls in (("fp32", "-"), ("bf16", "--")):
            sel = [r for r in rows if r["mode"] == mode and r["dtype"] == dtype]
            for key, _, color, marker in series:
                b8 = sorted((r["shape"][2], r[key]) for r in sel if r["shape"][0] > 1 and r[key])
                b1 = [(r["shape"][2], r[key]) for r in sel if r["shape"][0] == 1 and r[key]]
                if b8:
                    ax.plot(*zip(*b8), ls=ls, marker=marker, color=color, ms=5, lw=1.5)
                if b1:
                    ax.plot(*zip(*b1), ls="none", marker=marker, mfc="none", color=color, ms=7)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_title({"fwd": "forward", "fwd+bwd": "forward + backward"}[mode], fontsize=11)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("time (ms, median)")
    handles = [plt.Line2D([], [], color=c, marker=m, lw=1.5, label=name) for _, name, c, m in series]
    handles += [
        plt.Line2D([], [], color="k", ls="-", label="fp32"),
        plt.Line2D([], [], color="k", ls="--", label="bf16"),
        plt.Line2D([], [], color="k", marker="o", mfc="none", ls="none", label="batch 1, L = 65536"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=9, frameon=False)
    device = res["device"].split(",")[0]
    fig.suptitle(f"d_inner = 1536, N = 16; batch 8 (lines) and batch 1 (hollow) on the {device}", fontsize=11)
    return fig


def benchmark_rows(res: dict) -> list[dict]:
    """One row per (mode, dtype, shape) our kernel ran in ``res`` (bench.py's results.json).

    Each row: ``mode``, ``dtype``, ``shape`` and the times in ms of our kernel (``ours_ms``), the fastest
    PyTorch scan of the package that ran (``pytorch_ms``, None if none did), mamba_ssm's CUDA kernel measured
    in the same run (``mamba_ssm_ms``, None where it was not) and the bytes floor at the copy bandwidth of
    the same run (``floor_ms``).
    """
    from minimamba.kernels.selective_scan import bench  # noqa: PLC0415  (imports the kernels)

    ms = {(r["impl"], r["mode"], r["dtype"], tuple(r["shape"])): r["ms"] for r in res["times"]}
    torch_impls = sorted({key[0] for key in ms if key[0].startswith("minimamba.scan")})
    rows = []
    for (impl, mode, dtype, shape), t in ms.items():
        if impl != bench.OURS or not t:
            continue
        pytorch = [ms.get((other, mode, dtype, shape)) for other in torch_impls]
        pytorch = [p for p in pytorch if p]
        rows.append(
            {
                "mode": mode,
                "dtype": dtype,
                "shape": shape,
                "ours_ms": t,
                "pytorch_ms": min(pytorch) if pytorch else None,
                "mamba_ssm_ms": ms.get((bench.MAMBA_SSM, mode, dtype, shape)),
                "floor_ms": bench.floor_ms(res, shape, dtype, mode),
            }
        )
    return rows
