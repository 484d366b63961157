#!/usr/bin/env bash
# One call on a CUDA machine: the GPU tests, the benchmark (with mamba_ssm when it is built), the profiles.
#   bash kernels/selective_scan/gpu_check.sh OUT_DIR [bench options, e.g. --sweep]
# Run from the repository root; uses the machine's own torch and triton. mamba_ssm is measured when
# scripts/build_peers.py has built it into .peers/ (`python scripts/build_peers.py download .peers` where
# PyPI is reachable, then `python scripts/build_peers.py build .peers` on the GPU machine); mambapy comes
# from wheels in .whl/ when present (pip download --no-deps mambapy==1.2.0 -d .whl).
set -uo pipefail
OUT_DIR=${1:?usage: gpu_check.sh OUT_DIR [bench options]}
shift
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
if ls .whl/*.whl >/dev/null 2>&1; then
  SITE=$(mktemp -d)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    && export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -d .peers ]; then
  export PYTHONPATH=$(python3 scripts/build_peers.py path .peers)${PYTHONPATH:+:$PYTHONPATH}
fi
# minimamba.kernels lives in kernels/: `import minimamba` finds it in a source checkout (PYTHONPATH=.)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT_DIR/nvidia-smi.txt"
timeout 300 python3 -m pytest -m gpu tests/test_triton_scan_gpu.py tests/test_teaching_kernels.py -q -s -p no:cacheprovider -p no:logging --tb=short 2>&1 | tee "$OUT_DIR/pytest_gpu.log"
# the benchmark, the host-time layer on against off, and (with mamba_ssm) its checkpoint through MambaLM:
# results.json, RESULTS.md and scan_gpu.png in OUT_DIR, from this one run
timeout 540 python3 -m minimamba.kernels.selective_scan.bench --all --out "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/bench.log"
timeout 60 python3 -m minimamba.kernels.selective_scan.profile 2>&1 | tee "$OUT_DIR/profile.log"
# one sequence: the two forward kernels alone (the time kernel is the default there)
for dt in fp32 bf16; do for k in time channel; do
  timeout 60 python3 -m minimamba.kernels.selective_scan.profile --shape 1 1536 65536 16 --dtype $dt --forward $k 2>&1 | grep -v "^bwd" | tee -a "$OUT_DIR/profile.log"
done
# and 8 sequences of 8192 steps with the time kernel forced (the channel kernel's shape)
timeout 60 python3 -m minimamba.kernels.selective_scan.profile --shape 8 1536 8192 16 --dtype $dt --forward time 2>&1 | grep -v "^bwd" | tee -a "$OUT_DIR/profile.log"
done
# host time per call (a shape whose GPU time is negligible), and one call at L = 512 kernel by kernel
timeout 60 python3 -m minimamba.kernels.selective_scan.profile --host --shape 1 64 16 16 2>&1 | tee "$OUT_DIR/host.log"
timeout 60 python3 -m minimamba.kernels.selective_scan.profile --floor 2>&1 | tee -a "$OUT_DIR/host.log"
timeout 60 python3 -m minimamba.kernels.selective_scan.profile --breakdown --shape 8 1536 512 16 2>&1 | tee -a "$OUT_DIR/host.log"
