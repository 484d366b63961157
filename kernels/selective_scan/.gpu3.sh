set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
P="python3 -m minimamba.kernels.selective_scan.profile"
timeout 100 python3 -m pytest -m gpu tests/test_triton_scan_gpu.py -q -x -p no:cacheprovider --tb=short -k "real_sizes or launch" 2>&1 | tail -3
timeout 60 $P --host --shape 1 64 16 16 2>&1 | grep -v Warn | head -60
for s in "8 1536 2048 16" "1 1536 65536 16"; do timeout 60 $P --shape $s 2>&1 | grep -v Warn; done
timeout 150 python3 - <<'PY' 2>&1 | grep -v Warn
import torch, triton
from minimamba.kernels.selective_scan import fwd as kfwd, bwd as kbwd
from minimamba.kernels.selective_scan.bench import make_inputs, ORDER
for shape in [(8, 1536, 2048, 16), (1, 1536, 65536, 16)]:
    for dname, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x = make_inputs(shape, dt); u, d, A, B, C, D, z, db = (x[k] for k in ORDER)
        B4, C4 = (t.unsqueeze(1).transpose(-1, -2).float().contiguous() for t in (B, C)); dy = torch.randn_like(u)
        _, _, hc = kfwd.selective_scan_fwd(u, d, A, B4, C4, D, z, db, None, True, True)
        out = []
        for cfg in [dict(num_warps=1, stages=st, target=t) for st in (1, 2) for t in (1, 528, 1056, 2112)]:
            ms = triton.testing.do_bench(lambda: kbwd.selective_scan_bwd(u, d, A, B4, C4, D, z, db, hc, dy, None, True, False, **cfg), return_mode="median")
            out.append((round(ms, 3), cfg["stages"], cfg["target"], kbwd.LAST[0].n_spills))
        print("bwd", shape, dname, sorted(out))
        out = []
        for cfg in [dict(num_warps=nw, stages=st, target=t) for nw in (1, 2, 4) for st in (3, 4) for t in (1, 264, 528, 1056)]:
            ms = triton.testing.do_bench(lambda: kfwd.selective_scan_fwd(u, d, A, B4, C4, D, z, db, None, True, True, **cfg), return_mode="median")
            out.append((round(ms, 3), cfg["num_warps"], cfg["stages"], cfg["target"]))
        print("fwd+save", shape, dname, sorted(out)[:8])
PY
timeout 100 ncu --clock-control none -k regex:bwd_kernel --launch-skip 1 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section Occupancy $P --shape 8 1536 2048 16 2>&1 | grep -v "^==PROF==" | grep -E "Throughput|Duration|Cycles Per|Stall|stalled|Occupancy|Warps Per|Registers|Est|cycles being" | head -30
