#!/usr/bin/env bash
# CUDA compile checks for CI (no GPU needed), run by .ci/run:
#   1. every csrc/cuda/*.cu compiled by nvcc alone for sm_90, warnings as errors (the kernels include no
#      torch header, so this needs only the toolkit);
#   2. a full EMMS_WITH_CUDA=ON build of the extension against torch==2.14.1 (CUDA 13.0, local wheel) in a
#      second venv, imported, asserting that every emms:: op has a CUDA kernel.
# Step 2 needs about 6 GB of disk for the CUDA torch; with less free it is skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
CUDA_VENV=${CUDA_VENV:-.venv-cuda}
CUDA_TORCH=${CUDA_TORCH:-torch==2.14.1}
NEED_GB=8

if [ ! -x "$NVCC" ]; then
  echo "check_cuda: nvcc not found (set NVCC=...): cannot compile the CUDA kernels" >&2
  exit 1
fi
echo "== nvcc $("$NVCC" --version | tail -n 2 | head -n 1): compiling csrc/cuda/*.cu for sm_90 with -Werror"
obj=$(mktemp -d)
trap 'rm -rf "$obj"' EXIT
for cu in csrc/cuda/*.cu; do
  "$NVCC" -std=c++17 -arch=sm_90 -Werror all-warnings -Xcompiler=-Wall,-Wextra,-Werror \
    -Icsrc/include -c "$cu" -o "$obj/$(basename "$cu").o"
  echo "   ok  $cu"
done

free_gb=$(df -Pk . | awk 'NR==2 {print int($4 / 1024 / 1024)}')
if [ "$free_gb" -lt "$NEED_GB" ] && [ ! -x "$CUDA_VENV/bin/python" ]; then
  echo "== SKIPPED the CUDA build against $CUDA_TORCH: ${free_gb} GB free, it needs about ${NEED_GB} GB" \
       "(a CUDA torch in $CUDA_VENV). Free disk space to run it."
  exit 0
fi

echo "== building with EMMS_WITH_CUDA=ON against $CUDA_TORCH in $CUDA_VENV"
[ -x "$CUDA_VENV/bin/python" ] || python3 -m venv "$CUDA_VENV"
"$CUDA_VENV/bin/python" -m pip install -q "$CUDA_TORCH" numpy scikit-build-core pybind11 ninja
EMMS_WITH_CUDA=ON TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" CUDA_HOME=/usr/local/cuda \
  "$CUDA_VENV/bin/python" -m pip install -q --no-build-isolation --no-deps \
  --config-settings=build-dir=build/cuda .

# Import from outside the source tree so that the installed CUDA build, not ./emms_ext, is tested.
(cd "$obj" && "$OLDPWD/$CUDA_VENV/bin/python" - <<'PY'
import torch
import emms_ext

info = emms_ext.build_info()
assert info["cuda"] and info["cuda_archs"], info
ops = sorted({s.name.split("::", 1)[1] for s in torch._C._jit_get_all_schemas() if s.name.startswith("emms::")})
assert ops, "no emms:: operator registered"
CPU_ONLY = {"cholesky_", "cholesky_solve", "tridiagonal_solve"}  # CPU only; CUDA uses torch's routines
missing = [op for op in ops if op not in CPU_ONLY
           and not torch._C._dispatch_has_kernel_for_dispatch_key(f"emms::{op}", "CUDA")]
assert not missing, f"ops without a CUDA kernel: {missing}"
print(f"   ok  CUDA build {info['version']} against torch {info['torch_version']} (archs {info['cuda_archs']}); "
      f"CUDA kernels for every op but the CPU-only {sorted(CPU_ONLY)}: {', '.join(ops)}")
PY
)
