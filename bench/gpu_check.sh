#!/usr/bin/env bash
# One command that checks fastreg on a lent GPU, in under 8 minutes on an H100/H200:
#
#   bench/gpu_check.sh [OUTPUT_FOLDER]        (from the repository root; PYTHON=... to choose)
#
# 1. the device: nvidia-smi and `python -m fastreg info`;
# 2. tests/test_gpu_cupy.py on the device (JUnit XML beside the log);
# 3. the GPU benchmark, `python -m fastreg bench --backend cupy --json`;
# 4. compute-sanitizer memcheck on bench/gpu_smoke.py (every kernel, every dtype, small), and
#    racecheck on the shared-memory kernels (dropconnect, prox), where compute-sanitizer exists.
#
# Everything goes under one folder (default bench/results/gpu-check-<gpu>-<date>), each file
# named with the GPU; summary.txt lists every step's exit code. Each step has its own time cap
# (the sum stays under 8 minutes) and a failed step does not stop the others; the exit code is
# 1 if any step failed.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
slug=$(printf '%s' "${gpu:-unknown-gpu}" | tr -cs 'A-Za-z0-9' '-' | sed 's/^-*//; s/-*$//')
out=${1:-bench/results/gpu-check-${slug}-$(date -u +%Y%m%dT%H%MZ)}
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
failed=0

# step NAME SECONDS COMMAND...: runs COMMAND under a time cap, output to $out/NAME-$slug.txt.
step() {
    local name=$1 cap=$2
    shift 2
    local log="$out/$name-$slug.txt" start=$SECONDS
    echo "== $name (at most ${cap} s): $*"
    timeout --kill-after=10 "$cap" "$@" >"$log" 2>&1
    local rc=$?
    tail -n 25 "$log"
    [ "$rc" -eq 124 ] && echo "!! $name ran past ${cap} s" | tee -a "$log"
    echo "$name rc=$rc $((SECONDS - start))s" | tee -a "$summary"
    [ "$rc" -ne 0 ] && failed=1
    return 0
}

step device 10 bash -c 'nvidia-smi; nvidia-smi --query-gpu=name,compute_cap,clocks.max.sm,clocks.max.mem,memory.total,driver_version --format=csv'
step info 25 "$PYTHON" -m fastreg info
# The GPU suite skips itself without a usable CuPy device: that must fail the check, not pass it.
step cupy 25 "$PYTHON" -c 'import sys, fastreg
if "cupy" not in fastreg.available_backends():
    sys.exit("no usable CuPy device: install cupy-cuda12x or cupy-cuda13x (and ml_dtypes)")
import cupy
print("CuPy", cupy.__version__, "device", cupy.cuda.Device().id, "bfloat16:", end=" ")
try:
    import ml_dtypes
    print(cupy.asarray(cupy.zeros(4, ml_dtypes.bfloat16)).dtype)
except Exception as error:
    print("unavailable,", type(error).__name__, error)'
step tests 130 "$PYTHON" -m pytest tests/test_gpu_cupy.py -q -p no:cacheprovider \
    -o addopts="-ra" --junitxml="$out/test_gpu_cupy-$slug.xml"
step bench 160 "$PYTHON" -m fastreg bench --backend cupy --budget 1.5 \
    --json "$out/bench-$slug.json"
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$sanitizer" ]; then
    step memcheck 75 "$sanitizer" --tool memcheck --error-exitcode 9 --print-limit 20 \
        "$PYTHON" bench/gpu_smoke.py
    step racecheck 40 "$sanitizer" --tool racecheck --error-exitcode 9 --print-limit 20 \
        "$PYTHON" bench/gpu_smoke.py --families dropconnect,prox
else
    echo "memcheck skipped: compute-sanitizer not found" | tee -a "$summary"
fi

echo "== summary ($out)"
cat "$summary"
exit "$failed"
