// CUDA kernel of emms::logme_evidence: one thread per target, running the fixed point of emms/logme.h in
// registers. The eigenvalues are shared by every target and stay in L1/L2; the per-target work is
// max_iter * k flops, so there is nothing to gain from splitting a target over a warp at the k we see.
#include <cuda_runtime.h>

#include "emms/cuda_launch.h"
#include "emms/logme.h"

namespace emms {
namespace cuda {
namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void logme_targets(LogmeParams p, const T* __restrict__ sigma, const T* __restrict__ proj,
                              const T* __restrict__ ynorm2, T* __restrict__ evidence, T* __restrict__ alpha,
                              T* __restrict__ beta, int64_t* __restrict__ iterations, int64_t targets) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (t >= targets) return;
  const LogmeResult r = logme_fixed_point(sigma, proj + t * p.k, 1, static_cast<double>(ynorm2[t]), p);
  evidence[t] = static_cast<T>(r.evidence);
  alpha[t] = static_cast<T>(r.alpha);
  beta[t] = static_cast<T>(r.beta);
  iterations[t] = r.iterations;
}

}  // namespace

template <typename T>
cudaError_t launch_logme_evidence(const LogmeParams& p, const T* sigma, const T* proj, const T* ynorm2, T* evidence,
                                  T* alpha, T* beta, int64_t* iterations, int64_t targets, cudaStream_t stream) {
  if (targets == 0) return cudaSuccess;
  const int64_t blocks = (targets + kThreads - 1) / kThreads;  // gridDim.x allows 2^31 - 1 blocks
  logme_targets<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, sigma, proj, ynorm2, evidence, alpha,
                                                                           beta, iterations, targets);
  return cudaGetLastError();
}

template cudaError_t launch_logme_evidence<float>(const LogmeParams&, const float*, const float*, const float*, float*,
                                                  float*, float*, int64_t*, int64_t, cudaStream_t);
template cudaError_t launch_logme_evidence<double>(const LogmeParams&, const double*, const double*, const double*,
                                                   double*, double*, double*, int64_t*, int64_t, cudaStream_t);

}  // namespace cuda
}  // namespace emms
