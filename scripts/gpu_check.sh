#!/usr/bin/env bash
# The one prepared run for a lent GPU machine (an H200 through the device tool), a one-shot diagnostic that
# fits 6 minutes including the build, and whose every stage reports even when another fails:
#
#   1. versions (nvidia-smi, nvcc, compute-sanitizer, python, torch) before anything can fail;
#   2. build a wheel with EMMS_WITH_CUDA=ON against the image's own torch (it may differ from the project's
#      pin), or install the wheel given with --wheel when it was built against that same torch;
#   3. the CUDA tests on their own (test_cuda.py and every device-parametrized / GPU case, by -k), no -x,
#      -rA --durations=20, a junit XML;
#   4. the rest of the suite in parallel (pytest-xdist when importable; pytest-timeout per test when
#      importable, so that a hung test cannot eat the stage's summary);
#   5. compute-sanitizer memcheck and racecheck over one call of each op (every launch path);
#   6. benchmarks/bench_gpu.py, its table written row by row;
# then one PASS / FAIL line per stage and per benchmark target. Each stage runs under its own timeout, cut
# to what is left of the total budget. Results land in $OUT (at most 8 files, as the device tool returns):
#   summary.txt build.log cuda_tests.log cuda_tests.xml suite.log sanitizer.log bench_gpu.md emms_ext-*.whl
#
#   OUT=/some/dir bash scripts/gpu_check.sh [--cpu] [--wheel FILE]    # default OUT: benchmarks/out/gpu
#
# --cpu: the same stages on the CPU (a CPU build; the CUDA tests skip; the sanitizer's op script runs
# without compute-sanitizer; bench_gpu --device cpu --tiny), to dry-run the script without a GPU. On a slow
# machine give it more time: GPU_CHECK_BUDGET=1800 PYTHON=.venv/bin/python bash scripts/gpu_check.sh --cpu
# The machine has no internet: it uses the image's python3 and installs nothing from an index.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/benchmarks/out/gpu}
CPU=0
WHEEL=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) CPU=1 ;;
    --wheel) WHEEL=$2; shift ;;
    *) echo "gpu_check: unknown argument $1 (use --cpu, --wheel FILE)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=$(command -v "${PYTHON:-python3}")
[[ $PY = /* ]] || PY=$REPO/$PY  # absolute (not resolved: a venv's python must stay the venv's), the stages cd away
SCRATCH=$(mktemp -d)  # the install, the op script and the benchmark's log: not results, not in $OUT
trap 'rm -rf "$SCRATCH"' EXIT
SITE=$SCRATCH/site
TOTAL=${GPU_CHECK_BUDGET:-345}  # seconds for everything; the device tool's 6-minute slot, less the copy back
START=$(date +%s)
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
declare -a VERDICTS=()

log() { echo "$*" | tee -a "$SUMMARY"; }
step() { log "== $(date -u +%T) (+$(( $(date +%s) - START ))s) $*"; }
verdict() { VERDICTS+=("$1 $2${3:+ ($3)}"); log "   -> $1 $2${3:+ ($3)}"; }
# budget CAP RESERVE: a stage's timeout, at most CAP seconds and leaving RESERVE for the stages after it
# (both sized for the default budget on an H200, and scaled with GPU_CHECK_BUDGET). The reserves rank the
# stages: the CUDA tests, the sanitizer and the benchmark keep their time; the rest of the suite (CPU work
# that CI runs anyway) gets what is left.
budget() {
  local cap=$(( $1 * TOTAL / 345 )) reserve=$(( $2 * TOTAL / 345 ))
  local left=$(( TOTAL - ($(date +%s) - START) - reserve ))
  [ "$left" -gt "$cap" ] && left=$cap
  [ "$left" -lt 10 ] && left=10
  echo "$left"
}

# ---------------------------------------------------------------------------------------------- 1. versions
step "versions ($([ $CPU = 1 ] && echo 'CPU dry run' || echo GPU))"
{
  if [ $CPU = 0 ]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader || echo "nvidia-smi failed"
  fi
  echo "nvcc: $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'not found')"
  echo "compute-sanitizer: $(compute-sanitizer --version 2>/dev/null | grep -o 'Version [0-9.]*' | head -n 1 || echo 'not found')"
  echo "cpus: $(nproc); python: $("$PY" --version 2>&1) at $(command -v "$PY")"
  "$PY" -c "import torch; print('torch', torch.__version__, '| cuda', torch.version.cuda, '| GPU visible', torch.cuda.is_available())"
  "$PY" -c "import xdist, sys; print('pytest-xdist', xdist.__version__)" 2>/dev/null || echo "pytest-xdist: not importable (suite runs serially)"
} 2>&1 | tee -a "$SUMMARY"

# ---------------------------------------------------------------------------------------------- 2. build
step "build"
TORCH_VERSION=$("$PY" -c "import torch; print(torch.__version__)")
if [ $CPU = 1 ]; then export EMMS_WITH_CUDA=OFF; else export EMMS_WITH_CUDA=ON TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}; fi
rm -rf "$SITE"
built=0
if [ -n "$WHEEL" ] && [ -f "$WHEEL" ]; then
  if "$PY" -m pip install -q --no-deps --no-index --target "$SITE" "$WHEEL" > "$OUT/build.log" 2>&1 &&
     (cd "$SCRATCH" && PYTHONPATH=$SITE "$PY" -c "
import sys, torch, emms_ext
info = emms_ext.build_info()
sys.exit(0 if info['torch_version'] == torch.__version__ and info['cuda'] == ($CPU == 0) else 1)") >> "$OUT/build.log" 2>&1; then
    built=1
    cp "$WHEEL" "$OUT/" 2>/dev/null
    verdict PASS build "reused $(basename "$WHEEL")"
  else
    log "   the given wheel does not fit (other torch than $TORCH_VERSION, or CUDA on/off): building"
    rm -rf "$SITE"
  fi
fi
if [ $built = 0 ]; then
  rm -f "$OUT"/emms_ext-*.whl
  if CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) timeout "$(budget 180 150)" "$PY" -m pip wheel --no-build-isolation --no-deps \
       --no-index -w "$OUT" --config-settings=build-dir=build/gpu_check_$([ $CPU = 1 ] && echo cpu || echo cuda) . \
       >> "$OUT/build.log" 2>&1 &&
     "$PY" -m pip install -q --no-deps --no-index --target "$SITE" "$OUT"/emms_ext-*.whl >> "$OUT/build.log" 2>&1; then
    built=1
    verdict PASS build "$(basename "$OUT"/emms_ext-*.whl) against torch $TORCH_VERSION"
  else
    verdict FAIL build "see build.log"
    tail -n 30 "$OUT/build.log" | tee -a "$SUMMARY"
  fi
fi
if [ $built = 0 ]; then
  step "stopping: nothing to test without a build"
  printf '%s\n' "${VERDICTS[@]}" | sed 's/^/   /' | tee -a "$SUMMARY"
  exit 1
fi
export PYTHONPATH=$SITE
# Run from outside the source tree so that the wheel just installed, not ./emms_ext, is imported.
cd "$SCRATCH"
"$PY" -c "import emms_ext, torch; print('emms_ext', emms_ext.build_info(), '| from', emms_ext.__file__)" 2>&1 | tee -a "$SUMMARY"
if ! "$PY" -c "import emms_ext, sys; sys.exit(not emms_ext.__file__.startswith('$SITE'))" 2>/dev/null; then
  # an editable install of the source tree (a development venv, as in a --cpu dry run) shadows the wheel
  log "   note: emms_ext is imported from an editable install of the source tree, not from the wheel"
fi

# pytest's outcome as a verdict: 0 passed, 5 nothing collected, 124 / 137 the stage's timeout.
pytest_verdict() {  # NAME RC LOG
  local tail_line
  tail_line=$(grep -E '([0-9]+ (passed|failed|errors?|skipped|deselected).* in [0-9.]+s)|no tests ran' "$3" | tail -n 1 |
    tr -d '=' | sed 's/^ *//; s/ *$//')
  case $2 in
    0) verdict PASS "$1" "$tail_line" ;;
    124|137) verdict FAIL "$1" "timed out at $(grep -o '\[ *[0-9]*%\]' "$3" | tail -n 1 | tr -d '[ ]') of the tests" ;;
    *) verdict FAIL "$1" "rc $2: ${tail_line:-see log}" ;;
  esac
}
# The CUDA cases: test_cuda.py, every device-parametrized "cuda-..." case, the needs_cuda score tests; not the
# benchmark's CPU smoke run (its name says gpu).
CUDA_K="(cuda or gpu or tf32) and not smoke_run_on_cpu"

# ---------------------------------------------------------------------------------------------- 3. CUDA tests
step "CUDA tests (-k \"$CUDA_K\")"
workers=()  # a few processes share the GPU (memory is plenty); opcheck's tracing is CPU-bound
"$PY" -c "import xdist" 2>/dev/null && workers=(-n 4)
timeout "$(budget 120 110)" "$PY" -m pytest "$REPO/python_tests" -k "$CUDA_K" -rA --durations=20 -p no:cacheprovider \
  "${workers[@]}" --junitxml="$OUT/cuda_tests.xml" > "$OUT/cuda_tests.log" 2>&1
rc=$?
pytest_verdict "CUDA tests" $rc "$OUT/cuda_tests.log"
skipped_cuda=$(grep -c "SKIPPED.*needs a CUDA GPU" "$OUT/cuda_tests.log")
if [ $CPU = 0 ] && [ "$skipped_cuda" -gt 0 ]; then
  verdict FAIL "CUDA tests ran" "$skipped_cuda skipped for want of a GPU / CUDA build"
elif [ $CPU = 1 ]; then
  log "   (CPU dry run: $skipped_cuda CUDA tests skipped, as expected)"
fi

# ---------------------------------------------------------------------------------------------- 4. the rest
step "rest of the suite (-k \"not ($CUDA_K)\")"
parallel=()
"$PY" -c "import xdist" 2>/dev/null && parallel=(-n "$(nproc)")
"$PY" -c "import pytest_timeout" 2>/dev/null && parallel+=(--timeout=90)
timeout "$(budget 120 90)" "$PY" -m pytest "$REPO/python_tests" -k "not ($CUDA_K)" -q -rfE --durations=10 \
  -p no:cacheprovider "${parallel[@]}" > "$OUT/suite.log" 2>&1
pytest_verdict "rest of the suite ${parallel[*]:-(serial)}" $? "$OUT/suite.log"

# ---------------------------------------------------------------------------------------------- 5. sanitizer
step "compute-sanitizer over the four ops"
OPS_PY=$SCRATCH/sanitize_ops.py
cat > "$OPS_PY" <<'PY'
# One call of each op on every launch path of its kernels, then a sync; prints what ran.
import sys

import torch

import emms_ext

dev = sys.argv[1]
g = torch.Generator().manual_seed(0)
cuda = dev == "cuda"
optin = torch.cuda.get_device_properties(0).shared_memory_per_block_optin if cuda else 232448
k_optin = max(K for K in range(1, 400) if 8 * (5 * K * K + 8 * K) <= optin)
for K, M in [(3, 70), (8, 3), (35, 2), (k_optin + 1, 1)]:  # shared, shared, opted-in shared, global scratch
    Z = torch.randn(2 * K, K, generator=g, dtype=torch.float64)
    A = Z.T @ Z
    B = torch.stack([0.5 * A] * M)
    for mode in (0, 1, 2):
        torch.ops.emms.wlsr_simplex(A.to(dev), B.to(dev), mode, 3, 1e-9)
x = torch.randn(2, 300, 40, generator=g)
for C in (3, 200):  # tiled (C * 32 < N) and direct
    order, offsets = emms_ext.class_order(torch.randint(0, C, (300,), generator=g), C)
    emms_ext.class_sums(x.to(dev), order.to(dev), offsets.to(dev))
if cuda:  # invalid index values are checked on the device: never dereferenced
    bad = offsets.clone()
    bad[-1] = 299
    emms_ext.class_sums(x.to(dev), order.to(dev), bad.to(dev))
s = torch.rand(6, generator=g, dtype=torch.float64) + 0.1
emms_ext.logme_evidence(s.to(dev), torch.randn(40, 6, generator=g, dtype=torch.float64).to(dev),
                        torch.full((40,), 50.0, dtype=torch.float64).to(dev), 30, 8)
emms_ext.simplex_project(torch.randn(300, 7, generator=g).to(dev))
if cuda:
    torch.cuda.synchronize()
print(f"ops ran on {dev}: wlsr_simplex K = 3, 8, 35, {k_optin + 1}; class_sums tiled, direct; logme_evidence; simplex_project")
PY
: > "$OUT/sanitizer.log"
if [ $CPU = 1 ]; then
  if timeout 60 "$PY" "$OPS_PY" cpu >> "$OUT/sanitizer.log" 2>&1; then
    verdict PASS "sanitizer op script (CPU, without compute-sanitizer: skipped on a CPU dry run)"
  else
    verdict FAIL "sanitizer op script (CPU)" "see sanitizer.log"
  fi
elif ! command -v compute-sanitizer > /dev/null; then
  verdict FAIL sanitizer "compute-sanitizer not found"
else
  # Instrument our kernels only (torch's own would multiply the time), where this version can filter.
  filter=()
  compute-sanitizer --help 2>&1 | grep -q -- '--kernel-name' && filter=(--kernel-name kns=emms)
  # The caching allocator would hide an overrun inside one of its blocks: plain allocations here.
  for tool in memcheck racecheck; do
    echo "== $tool" >> "$OUT/sanitizer.log"
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$(budget 40 45)" compute-sanitizer --tool "$tool" --error-exitcode 99 \
      "${filter[@]}" "$PY" "$OPS_PY" cuda >> "$OUT/sanitizer.log" 2>&1
    rc=$?
    if [ $rc = 0 ]; then
      verdict PASS "compute-sanitizer $tool" "$(grep -o 'ERROR SUMMARY: [0-9]* errors*' "$OUT/sanitizer.log" | tail -n 1)"
    elif grep -q "Device not supported\|Unable to find injection\|Target application terminated before first instrumented API call" "$OUT/sanitizer.log"; then
      verdict FAIL "compute-sanitizer $tool" "the tool cannot run on this machine (see sanitizer.log), not a kernel error"
    else
      verdict FAIL "compute-sanitizer $tool" "rc $rc; $(grep -o 'ERROR SUMMARY: [0-9]* errors*' "$OUT/sanitizer.log" | tail -n 1)"
    fi
  done
fi

# ---------------------------------------------------------------------------------------------- 6. benchmark
step "benchmark (benchmarks/bench_gpu.py, row by row into bench_gpu.md)"
bench_args=()
[ $CPU = 1 ] && bench_args=(--device cpu --tiny)
timeout "$(budget 150 5)" "$PY" "$REPO/benchmarks/bench_gpu.py" "${bench_args[@]}" --out "$OUT/bench_gpu.md" \
  > /dev/null 2> "$SCRATCH/bench.err"  # the rows and targets are in bench_gpu.md as they are measured
rc=$?
if [ $rc != 0 ]; then  # the traceback (or the timeout) after the rows measured
  { echo; echo "bench_gpu.py exited with $rc:"; grep -v '^USDT' "$SCRATCH/bench.err" | tail -n 15; } >> "$OUT/bench_gpu.md"
fi
case $rc in
  0) verdict PASS benchmark "completed" ;;
  124|137) verdict FAIL benchmark "timed out; the rows measured are in bench_gpu.md" ;;
  *) verdict FAIL benchmark "rc $rc; see the end of bench_gpu.md" ;;
esac
while IFS= read -r line; do
  VERDICTS+=("$(echo "$line" | sed -E 's/^TARGET (.*) (PASS|FAIL)$/\2 target: \1/')")
done < <(grep '^TARGET ' "$OUT/bench_gpu.md")

# ---------------------------------------------------------------------------------------------- verdicts
step "done in $(( $(date +%s) - START ))s (budget ${TOTAL}s)"
printf '%s\n' "${VERDICTS[@]}" | sed 's/^/   /' | tee -a "$SUMMARY"
if printf '%s\n' "${VERDICTS[@]}" | grep -q '^FAIL'; then exit 1; fi
exit 0
