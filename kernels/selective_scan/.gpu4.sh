set -uo pipefail
export PYTHONUNBUFFERED=1
bash kernels/selective_scan/gpu_check.sh $OUT
export PYTHONPATH=$PWD
timeout 40 python3 -m minimamba.kernels.selective_scan.profile --host --shape 8 1536 512 16 --dtype bf16 2>&1 | grep -v Warn | head -8 | tee $OUT/host.log
