"""Profile the kernels on a GPU: time, registers and spills at the default launch sizes; a target for ``ncu``.

    python -m minimamba.kernels.selective_scan.profile                 # fwd then bwd, default launch sizes
    python -m minimamba.kernels.selective_scan.profile --dtype bf16 --shape 1 1536 65536 16
    ncu --clock-control none -k regex:fwd_kernel --launch-skip 1 --launch-count 1 \\
        python -m minimamba.kernels.selective_scan.profile
"""

from __future__ import annotations

import argparse

import torch
import triton

from . import bwd as kbwd
from . import fwd as kfwd
from .bench import DTYPES, ORDER, make_inputs


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--shape", type=int, nargs=4, default=(8, 1536, 2048, 16))
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    a = p.parse_args(argv)
    shape = tuple(a.shape)
    x = make_inputs(shape, DTYPES[a.dtype])
    u, delta, A, B, C, D, z, db = (x[k] for k in ORDER)
    B4, C4 = (t.unsqueeze(1).transpose(-1, -2).float().contiguous() for t in (B, C))  # (batch, 1, L, N)
    dy = torch.randn_like(u)

    def fwd():
        return kfwd.selective_scan_fwd(u, delta, A, B4, C4, D, z, db, None, True, True)

    _, _, hc = fwd()

    def bwd():
        return kbwd.selective_scan_bwd(u, delta, A, B4, C4, D, z, db, hc, dy, None, True, False)

    for name, fn, mod in (("fwd", fwd, kfwd), ("bwd", bwd, kbwd)):
        fn()
        k = mod.LAST[0]
        ms = triton.testing.do_bench(fn, return_mode="median")
        cfg = mod.default_config(*shape, u.device)
        print(f"{name} {shape} {a.dtype} {cfg}: {ms:.3f} ms, {k.n_regs} registers, {k.n_spills} spills")


if __name__ == "__main__":
    main()
