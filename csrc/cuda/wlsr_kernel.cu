// CUDA kernel of emms::wlsr_simplex: one thread per model runs the whole solve of emms/wlsr.h (the same
// code as the CPU backend) in float64. A zoo of thousands of models is one launch.
//
// Each solve needs 5K^2 + 8K doubles of scratch, kept in shared memory while one model fits in the 48 KB a
// block may use without opting in: 64 models per block at the paper's K = 3 (552 bytes each), one per
// block at K = 32 (43 KB). Larger K falls back to a global scratch buffer from the glue (correct for any
// K, slower). Each model's solve is sequential in its thread; a warp-cooperative solve (lanes sharing
// the O(K^3) loops) would speed up large K and is future work: at K <= 8 the solve is a negligible share
// of a zoo's time next to its Gram matrices.
#include <cuda_runtime.h>

#include "emms/cuda_launch.h"
#include "emms/wlsr.h"

namespace emms {
namespace cuda {
namespace {

constexpr int64_t kSharedBudget = 48 * 1024;  // dynamic shared memory a block gets without an opt-in
constexpr int64_t kMaxModelsPerBlock = 64;

template <typename T>
__global__ void wlsr_models(WlsrParams p, const T* __restrict__ A, int64_t a_stride, const T* __restrict__ B,
                            T* __restrict__ t, T* __restrict__ objective, int64_t* __restrict__ iterations,
                            double* __restrict__ global_work, int64_t M) {
  extern __shared__ double shared_work[];
  const int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= M) return;
  const int64_t per_model = wlsr_model_scratch(p.K);
  double* w = global_work ? global_work + m * per_model : shared_work + threadIdx.x * per_model;
  wlsr_solve_model(p, A, a_stride, B, t, objective, iterations, m, w);
}

}  // namespace

int64_t wlsr_model_workspace(int64_t K) { return wlsr_model_scratch(K); }

bool wlsr_uses_shared(int64_t K) {
  return wlsr_model_workspace(K) * static_cast<int64_t>(sizeof(double)) <= kSharedBudget;
}

template <typename T>
cudaError_t launch_wlsr_simplex(const WlsrParams& p, const T* A, int64_t a_stride, const T* B, T* t, T* objective,
                                int64_t* iterations, double* work, int64_t M, cudaStream_t stream) {
  if (M == 0) return cudaSuccess;
  const int64_t bytes_per_model = wlsr_model_workspace(p.K) * static_cast<int64_t>(sizeof(double));
  int threads = 64;
  size_t shared = 0;
  if (work == nullptr) {
    const int64_t fit = kSharedBudget / bytes_per_model;  // >= 1 when the glue chose the shared path
    threads = static_cast<int>(fit < kMaxModelsPerBlock ? fit : kMaxModelsPerBlock);
    shared = static_cast<size_t>(threads * bytes_per_model);
  }
  const int64_t blocks = (M + threads - 1) / threads;
  wlsr_models<T><<<static_cast<unsigned>(blocks), threads, shared, stream>>>(p, A, a_stride, B, t, objective,
                                                                             iterations, work, M);
  return cudaGetLastError();
}

template cudaError_t launch_wlsr_simplex<float>(const WlsrParams&, const float*, int64_t, const float*, float*, float*,
                                                int64_t*, double*, int64_t, cudaStream_t);
template cudaError_t launch_wlsr_simplex<double>(const WlsrParams&, const double*, int64_t, const double*, double*,
                                                 double*, int64_t*, double*, int64_t, cudaStream_t);

}  // namespace cuda
}  // namespace emms
