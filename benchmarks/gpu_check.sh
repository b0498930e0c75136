#!/usr/bin/env bash
# On a machine with a CUDA GPU: the GPU benchmark, then the tests that run on
# the GPU (the Triton kernels and every loss on CuPy / torch CUDA / JAX GPU
# arrays).  Everything lands in OUT_DIR (default benchmarks/results/gpu_check):
# the benchmark's gpu_<device>.json, bench.log, tests.log and the card's
# identity.  Each step has a time limit, so one short session gives numbers.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
#
# Environment: TUNE_SECONDS (run benchmarks/gpu_tune.py first, this long at
# most, and the benchmark with its best tile), BENCH_SECONDS, TEST_SECONDS,
# TESTS (pytest arguments; default the two GPU test files).
#
# Needs torch with CUDA, triton, hypothesis, pytest (xdist optional), keras,
# jax, array-api-strict and dask importable (the test extra; the repository's
# src/ on PYTHONPATH or losskit installed).
set -uo pipefail
python=${PYTHON:-python3}  # the interpreter with the packages (e.g. PYTHON=.venv/bin/python)
out=${1:-benchmarks/results/gpu_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem \
    --format=csv >"$out/card.txt" 2>&1
"$python" -c 'import torch, triton, sys; print(sys.version.split()[0], torch.__version__, triton.__version__, torch.cuda.get_device_name())' \
    >>"$out/card.txt" 2>&1
cat "$out/card.txt"

tuned=()
if [ -n "${TUNE_SECONDS:-}" ]; then  # the tile/warps sweep first; the benchmark uses its best
    timeout "$TUNE_SECONDS" "$python" benchmarks/gpu_tune.py --out "$out" 2>&1 | tee "$out/tune.log"
    echo "tune exit: $?"
    found=$(ls "$out"/gpu_tune_*.json 2>/dev/null | head -1)
    [ -n "$found" ] && tuned=(--tuned "$found")
fi
timeout "${BENCH_SECONDS:-330}" "$python" benchmarks/gpu.py --out "$out" "${tuned[@]}" 2>&1 | tee "$out/bench.log"
echo "benchmark exit: $?"

workers=()
"$python" -c 'import xdist' 2>/dev/null && workers=(-n 8)
timeout "${TEST_SECONDS:-200}" "$python" -m pytest ${TESTS:-tests/test_triton.py tests/test_gpu_arrays.py} \
    -q -p no:cacheprovider -p no:warnings -o addopts="" "${workers[@]}" -ra 2>&1 | tee "$out/tests.log" | tail -40
echo "tests exit: $?"
