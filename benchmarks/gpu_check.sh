#!/usr/bin/env bash
# The prepared device check (issues 7 and 8), for one run on a lent CUDA machine (the device tool's README):
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=480)
# The machine has torch and accelerate but not diffusers: carry its wheel in .whl/ (ignored by git), made here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl diffusers==0.42.1
# It writes outputs/gpu.json (or $OUT/gpu.json) and prints the tables; about 3-5 minutes on an H100/H200.
set -euo pipefail
if ls .whl/*.whl >/dev/null 2>&1; then
  site="$(mktemp -d)"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  export PYTHONPATH="$site"
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-outputs}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 420 python3 benchmarks/benchmark_gpu.py --json "$out/gpu.json"
