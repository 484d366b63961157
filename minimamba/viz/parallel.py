"""Figures and tools of notebook 05 (parallel scan): the data flow of the Hillis–Steele and Blelloch
scans as explicit schedules, their work and depth, a counter of the bytes PyTorch allocates, the IO
accounting for the paper's model sizes, and the CPU benchmark read back from ``results/scan_cpu.json``.

A *schedule* is a list of levels; a level is a list of ``(src, dst)`` pairs meaning
``x[dst] ← x[src] ∘ x[dst]`` with the operator (a₁, b₁) ∘ (a₂, b₂) = (a₁a₂, a₂b₁ + b₂), every pair of a
level reading the values of the previous level (they run in parallel). :func:`run_schedule` executes one,
so the same data drives the diagram, the work/depth table and the tests.
"""

from __future__ import annotations

import json
import numbers
import pathlib
import weakref

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from minimamba import committed
from minimamba.viz import figure
from minimamba.viz.triton import io_bytes

__all__ = [
    "MAMBA_SIZES",
    "LiveBytes",
    "blelloch_levels",
    "bench_table",
    "hillis_steele_levels",
    "io_table",
    "load_bench",
    "plot_dataflow",
    "run_schedule",
    "work_depth",
]

Schedule = list[list[tuple[int, int]]]


def _check_L(L) -> None:
    if isinstance(L, bool) or not isinstance(L, numbers.Integral):
        raise TypeError(f"L must be an int, got {type(L).__name__}")
    if L < 1:
        raise ValueError(f"L must be >= 1, got {L}")


def hillis_steele_levels(L: int) -> Schedule:
    """Hillis & Steele (1986): at level k every position t >= 2^k absorbs position t - 2^k.
    ceil(log2 L) levels, L·ceil(log2 L) - (2^ceil(log2 L) - 1) combines."""
    _check_L(L)
    levels, offset = [], 1
    while offset < L:
        levels.append([(t - offset, t) for t in range(offset, L)])
        offset *= 2
    return levels


def blelloch_levels(L: int) -> Schedule:
    """The work-efficient up-sweep / down-sweep scan, inclusive form (Brent & Kung 1982; Blelloch 1990),
    for any L.

    Up-sweep, level d = 0, 1, …: position i = k·2^(d+1) + 2^(d+1) - 1 absorbs i - 2^d (a reduction tree:
    afterwards position 2^m - 1 holds the combination of everything up to it). Down-sweep, d going back
    down: position i = k·2^(d+1) + 2^(d+1) - 1 + 2^d absorbs i - 2^d, filling in the positions the tree
    skipped. At most 2(L - 1) combines in 2·ceil(log2 L) - 1 levels.
    """
    _check_L(L)
    depth = max(1, int(np.ceil(np.log2(L)))) if L > 1 else 0
    up = [[(i - 2**d, i) for i in range(2 ** (d + 1) - 1, L, 2 ** (d + 1))] for d in range(depth)]
    down = [
        [(i - 2**d, i) for i in range(2 ** (d + 1) - 1 + 2**d, L, 2 ** (d + 1))]
        for d in range(depth - 2, -1, -1)
    ]
    return [lvl for lvl in up + down if lvl]


def run_schedule(levels: Schedule, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Execute a schedule on a, b: (L, ...) (time first). Returns h: (L, ...), h_t = a_t h_{t-1} + b_t
    from h_{-1} = 0 when the schedule is a correct inclusive scan."""
    if (
        not isinstance(a, torch.Tensor)
        or not isinstance(b, torch.Tensor)
        or a.shape != b.shape
        or a.dim() < 1
    ):
        raise ValueError("a and b must be tensors of the same shape (L, ...)")
    A, B = a.clone(), b.clone()
    for level in levels:
        if not level:
            continue
        src = torch.tensor([s for s, _ in level])
        dst = torch.tensor([d for _, d in level])
        if len(set(dst.tolist())) != len(level) or int(dst.max()) >= a.shape[0] or int(src.min()) < 0:
            raise ValueError("a level must write each position at most once, inside 0..L-1")
        A_new, B_new = A[src] * A[dst], A[dst] * B[src] + B[dst]  # (a_s, b_s) ∘ (a_d, b_d), from old values
        A[dst], B[dst] = A_new, B_new
    return B


def work_depth(L: int, chunk: int | None = None) -> dict:
    """Combines (work) and parallel steps (depth) of each scan for length L.

    ``sequential``: L - 1 steps. ``hillis_steele`` and ``blelloch``: counted from their schedules.
    ``chunked`` with chunks of T = ``chunk`` (default about sqrt(L)): a loop of T - 1 steps inside all
    chunks at once, a scan of L/T - 1 steps across chunks, and a second pass of T steps: about 2L work.
    """
    _check_L(L)
    hs, bl = hillis_steele_levels(L), blelloch_levels(L)
    T = chunk or max(1, int(round(np.sqrt(L))))
    n = -(-L // T)
    return {
        "sequential": (max(L - 1, 0), max(L - 1, 0)),
        "hillis_steele": (sum(map(len, hs)), len(hs)),
        "blelloch": (sum(map(len, bl)), len(bl)),
        "chunked": ((T - 1) * n + (n - 1) + T * n, (T - 1) + (n - 1) + T),
    }


def _positions(L: int) -> np.ndarray:
    return np.arange(L)


@figure("05_scan_dataflow")
def plot_dataflow(L: int = 8) -> Figure:
    """The data flow of Hillis–Steele and Blelloch for length L: one row per level, an arrow for each
    combine (earlier element ∘ later element), a grey line where a value just passes through."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for ax, (name, levels) in zip(
        axes,
        (("Hillis–Steele", hillis_steele_levels(L)), ("Blelloch (up-sweep, down-sweep)", blelloch_levels(L))),
    ):
        x = _positions(L)
        n = len(levels)
        for k, level in enumerate(levels):
            dst = {d for _, d in level}
            for t in x:
                if t not in dst:
                    ax.plot([t, t], [k, k + 1], color="0.8", lw=1, zorder=1)
            for s, d in level:
                ax.annotate(
                    "", xy=(d, k + 1), xytext=(s, k),
                    arrowprops=dict(arrowstyle="->", color="C0", lw=1.2, shrinkA=4, shrinkB=4),
                )  # fmt: skip
                ax.plot([d, d], [k, k + 1], color="C0", lw=1.2, alpha=0.4)
            ax.plot(x, np.full(L, k), "o", color="k", ms=5, zorder=3)
        ax.plot(x, np.full(L, n), "o", color="C2", ms=6, zorder=3)
        work = sum(map(len, levels))
        ax.set(
            xlabel="position t", ylabel="level (time flows down)", title=f"{name}: depth {n}, work {work}",
            xticks=x, yticks=range(n + 1), ylim=(n + 0.4, -0.4),
        )  # fmt: skip
    return fig


class LiveBytes(TorchDispatchMode):
    """Count the bytes of every tensor storage PyTorch allocates inside the ``with`` block, on any device.

    ``peak``: the most bytes alive at once (allocated inside the block and not yet freed);
    ``total``: all bytes allocated; ``live``: still alive at the end. Views and in-place results reuse
    a storage and add nothing. Tensors created before the block (the inputs) are not counted.
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = self.total = 0
        self._seen: dict[int, int] = {}

    def _free(self, key: int, n: int) -> None:
        if self._seen.pop(key, None) is not None:
            self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key, n = storage.data_ptr(), storage.nbytes()
                if n == 0 or key in self._seen:
                    continue
                self._seen[key] = n
                self.live += n
                self.total += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, key, n)
        return out


#: the five pretrained Mamba sizes (Table 3 / the state-spaces checkpoints): name -> d_model; d_inner = 2 d_model
MAMBA_SIZES = {"130m": 768, "370m": 1024, "790m": 1536, "1.4b": 2048, "2.8b": 2560}


def io_table(batch: int = 8, L: int = 2048, N: int = 16, dtype_bytes: int = 2) -> list[dict]:
    """Bytes one selective-scan forward moves through memory, unfused vs fused, for each Mamba size
    (``minimamba.viz.triton.io_bytes``), and the size of one (batch, d_inner, L, N) fp32 tensor."""
    rows = []
    for name, d_model in MAMBA_SIZES.items():
        d_inner = 2 * d_model
        d = io_bytes(batch, d_inner, L, N, dtype_bytes)
        rows.append(
            {
                "model": name,
                "d_inner": d_inner,
                "state_tensor": batch * d_inner * L * N * 4,
                "unfused": d["unfused_total"],
                "fused": d["fused_total"],
                "ratio": d["ratio"],
            }
        )
    return rows


def load_bench(path: str | pathlib.Path | None = None) -> dict | None:
    """The CPU benchmark written by ``python -m minimamba.bench`` (``results/scan_cpu.json``), or None."""
    if path is None:
        path = committed.RESULTS / "scan_cpu.json"
    path = pathlib.Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def bench_table(result: dict, mode: str = "fwd") -> dict:
    """From a benchmark result: ``{(batch, d_inner, N): {L: {impl: seconds}}}`` for one mode, timed rows only."""
    out: dict = {}
    for r in result["rows"]:
        if r["mode"] != mode or r["seconds"] is None:
            continue
        out.setdefault((r["batch"], r["d_inner"], r["N"]), {}).setdefault(r["L"], {})[r["impl"]] = r[
            "seconds"
        ]
    return out
