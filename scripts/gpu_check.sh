#!/usr/bin/env bash
# The one prepared run for a lent GPU machine (an H200 through the device tool): build the extension with
# CUDA, run the whole test suite (CUDA tests included), run the GPU benchmark; logs and the results table
# land under $OUT. Designed to finish in under 6 minutes. The machine has no internet: it uses the image's
# python3 (torch, nvcc, cmake, ninja, scikit-build-core, pybind11, pytest, scipy) and installs nothing.
#
#   OUT=/some/dir bash scripts/gpu_check.sh        # default OUT: benchmarks/out/gpu
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/benchmarks/out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SITE=/tmp/emms_site
status=0
step() { echo "== $(date +%T) $*" | tee -a "$OUT/summary.txt"; }

step "machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } 2>&1 | tee -a "$OUT/summary.txt"

step "build (EMMS_WITH_CUDA=ON, TORCH_CUDA_ARCH_LIST=9.0)"
rm -rf "$SITE"
if ! EMMS_WITH_CUDA=ON TORCH_CUDA_ARCH_LIST=9.0 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PY" -m pip install --no-build-isolation --no-deps --no-index -q --target "$SITE" \
    --config-settings=build-dir=build/gpu . > "$OUT/build.log" 2>&1; then
  step "BUILD FAILED (see build.log)"; tail -n 40 "$OUT/build.log"; exit 1
fi
export PYTHONPATH=$SITE
# Run from outside the source tree so that the CUDA build, not ./emms_ext, is imported.
cd /tmp
"$PY" -c "import emms_ext; print(emms_ext.build_info())" 2>&1 | tee -a "$OUT/summary.txt"

step "tests (python_tests, CUDA cases included)"
if ! timeout 150 "$PY" -m pytest "$REPO/python_tests" -q -x -p no:cacheprovider > "$OUT/tests.log" 2>&1; then
  status=1; step "TESTS FAILED"
fi
tail -n 5 "$OUT/tests.log" | tee -a "$OUT/summary.txt"

step "benchmark (benchmarks/bench_gpu.py)"
if ! timeout 200 "$PY" "$REPO/benchmarks/bench_gpu.py" --out "$OUT/bench_gpu.md" > "$OUT/bench.log" 2>&1; then
  status=1; step "BENCHMARK FAILED OR TIMED OUT"
fi
tail -n 40 "$OUT/bench.log"
step "done (status $status)"
exit $status
