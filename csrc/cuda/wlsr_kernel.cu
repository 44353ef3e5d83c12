// CUDA kernel of emms::wlsr_simplex: one thread per model runs the whole solve of emms/wlsr.h (the same
// code as the CPU backend) in float64. A zoo of thousands of models is one launch.
//
// Each solve needs 5K^2 + 8K doubles of scratch. Its layout is interleaved across threads (emms/strided.h):
// element i of the block's thread j at work[i * threads + j], so the warp's accesses to one element are
// consecutive doubles, free of bank conflicts (a contiguous per-thread layout puts every thread of a warp
// in one bank whenever the per-model size is a multiple of 32 words, e.g. K = 4 and 8: 16-way conflicts).
// The memory space is a template parameter, chosen once at launch (wlsr_plan), so the compiler emits
// shared-memory loads instead of generic ones:
//   * shared, up to 64 models a block while one model fits in the 48 KB a block gets without opting in
//     (K <= 34: 64 models at K = 3, 1 at K = 32), else opting in (cudaFuncSetAttribute) up to the device's
//     per-block maximum (227 KB on H100 / H200: K <= 75);
//   * global beyond, in the glue's buffer, element i of model m at work[i * M + m] (coalesced).
// Each model's solve is sequential in its thread; a warp-cooperative solve (lanes sharing the O(K^3)
// loops) would speed up large K and is future work: at K <= 8 the solve is a negligible share of a zoo's
// time next to its Gram matrices.
#include <cuda_runtime.h>

#include "emms/cuda_launch.h"
#include "emms/strided.h"
#include "emms/wlsr.h"

namespace emms {
namespace cuda {
namespace {

constexpr int64_t kDefaultShared = 48 * 1024;  // dynamic shared memory a block gets without an opt-in
constexpr int64_t kMaxModelsPerBlock = 64;

template <typename T, bool kShared>
__global__ void wlsr_models(WlsrParams p, const T* __restrict__ A, int64_t a_stride, const T* __restrict__ B,
                            T* __restrict__ t, T* __restrict__ objective, int64_t* __restrict__ iterations,
                            double* __restrict__ global_work, int64_t M) {
  extern __shared__ double shared_work[];
  const int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= M) return;
  if constexpr (kShared) {
    wlsr_solve_model(p, A, a_stride, B, t, objective, iterations, m,
                     Strided<double>{shared_work + threadIdx.x, static_cast<int64_t>(blockDim.x)});
  } else {
    wlsr_solve_model(p, A, a_stride, B, t, objective, iterations, m, Strided<double>{global_work + m, M});
  }
}

}  // namespace

int64_t wlsr_model_workspace(int64_t K) { return wlsr_model_scratch(K); }

cudaError_t wlsr_plan(int64_t K, int device, WlsrPlan* plan) {
  int optin = 0;
  const cudaError_t err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err != cudaSuccess) return err;
  const int64_t bytes = wlsr_model_workspace(K) * static_cast<int64_t>(sizeof(double));
  const int64_t budget = bytes <= kDefaultShared ? kDefaultShared : static_cast<int64_t>(optin);
  const int64_t fit = bytes > 0 ? budget / bytes : kMaxModelsPerBlock;
  if (fit >= 1) {
    const int64_t threads = fit < kMaxModelsPerBlock ? fit : kMaxModelsPerBlock;
    *plan = WlsrPlan{true, static_cast<int>(threads), threads * bytes};
  } else {
    *plan = WlsrPlan{false, static_cast<int>(kMaxModelsPerBlock), 0};
  }
  return cudaSuccess;
}

template <typename T>
cudaError_t launch_wlsr_simplex(const WlsrParams& p, const T* A, int64_t a_stride, const T* B, T* t, T* objective,
                                int64_t* iterations, const WlsrPlan& plan, double* work, int64_t M,
                                cudaStream_t stream) {
  if (M == 0) return cudaSuccess;
  const int64_t blocks = (M + plan.threads - 1) / plan.threads;
  if (plan.shared) {
    if (plan.shared_bytes > kDefaultShared) {
      const cudaError_t err = cudaFuncSetAttribute(wlsr_models<T, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   static_cast<int>(plan.shared_bytes));
      if (err != cudaSuccess) return err;
    }
    wlsr_models<T, true>
        <<<static_cast<unsigned>(blocks), plan.threads, static_cast<size_t>(plan.shared_bytes), stream>>>(
            p, A, a_stride, B, t, objective, iterations, nullptr, M);
  } else {
    if (work == nullptr) return cudaErrorInvalidValue;
    wlsr_models<T, false><<<static_cast<unsigned>(blocks), plan.threads, 0, stream>>>(p, A, a_stride, B, t, objective,
                                                                                      iterations, work, M);
  }
  return cudaGetLastError();
}

template cudaError_t launch_wlsr_simplex<float>(const WlsrParams&, const float*, int64_t, const float*, float*, float*,
                                                int64_t*, const WlsrPlan&, double*, int64_t, cudaStream_t);
template cudaError_t launch_wlsr_simplex<double>(const WlsrParams&, const double*, int64_t, const double*, double*,
                                                 double*, int64_t*, const WlsrPlan&, double*, int64_t, cudaStream_t);

}  // namespace cuda
}  // namespace emms
