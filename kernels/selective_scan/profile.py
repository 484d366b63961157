"""Profile the kernels on a GPU: registers, spills, time; a target for ``ncu``.

    python -m minimamba.kernels.selective_scan.profile                 # fwd then bwd, default launch sizes
    ncu --clock-control none -k regex:fwd_kernel --launch-skip 1 --launch-count 1 \\
        python -m minimamba.kernels.selective_scan.profile
    python -m minimamba.kernels.selective_scan.profile --sweep         # backward launch sizes
"""

from __future__ import annotations

import argparse

import torch
import triton

from . import bwd as kbwd
from . import fwd as kfwd
from .bench import ORDER, make_inputs, sweep


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--shape", type=int, nargs=4, default=(8, 1536, 2048, 16))
    p.add_argument("--sweep", action="store_true")
    a = p.parse_args(argv)
    shape = tuple(a.shape)
    if a.sweep:
        cb = [(1, 64, 4), (2, 32, 4), (2, 64, 4), (4, 16, 4), (4, 32, 4), (4, 32, 8), (8, 16, 4), (2, 16, 2),
              (1, 32, 2), (2, 32, 8)]  # fmt: skip
        for s in (shape, (1, 1536, 65536, 16)):
            for dt in (torch.float32, torch.bfloat16):
                rows = sweep(s, dt, [], cb)
                ok = sorted((r for r in rows if "ms" in r), key=lambda r: r["ms"])
                print(
                    s,
                    dt,
                    [
                        (
                            r["block_d"],
                            r["block_l"],
                            r["num_warps"],
                            round(r["ms"], 3),
                            r["regs"],
                            r["spills"],
                        )
                        for r in ok
                    ],
                )
                bad = [r for r in rows if "error" in r]
                if bad:
                    print("failed:", bad[0])
        return
    x = make_inputs(shape, torch.float32)
    u, delta, A, B, C, D, z, db = (x[k] for k in ORDER)
    B4, C4 = B.unsqueeze(1), C.unsqueeze(1)
    cfg_f = kfwd.default_config(*shape, u.device)
    cfg_b = kbwd.default_config(*shape, u.device)
    for _ in range(2):
        kfwd.selective_scan_fwd(u, delta, A, B4, C4, D, z, db, None, True, False)
    k = kfwd.LAST[0]
    ms = triton.testing.do_bench(
        lambda: kfwd.selective_scan_fwd(u, delta, A, B4, C4, D, z, db, None, True, False)
    )
    print(f"fwd {shape} {cfg_f}: {ms:.3f} ms, {k.n_regs} registers, {k.n_spills} spills")
    _, _, hc = kfwd.selective_scan_fwd(u, delta, A, B4, C4, D, z, db, None, True, True, cfg_b["block_l"])
    dy = torch.randn_like(u)
    for _ in range(2):
        kbwd.selective_scan_bwd(u, delta, A, B4, C4, D, z, db, hc, dy, None, True, False, cfg_b["block_l"])
    k = kbwd.LAST[0]
    ms = triton.testing.do_bench(
        lambda: kbwd.selective_scan_bwd(
            u, delta, A, B4, C4, D, z, db, hc, dy, None, True, False, cfg_b["block_l"]
        )
    )
    print(f"bwd {shape} {cfg_b}: {ms:.3f} ms, {k.n_regs} registers, {k.n_spills} spills")


if __name__ == "__main__":
    main()
