// CUDA kernel of emms::simplex_project: one thread per row, running the same host-device routine as the
// CPU backend (emms/simplex.h) in float64. Rows are independent and K is small (tens), so a thread per
// row keeps every load coalesced-enough and needs no synchronisation.
#include <cuda_runtime.h>

#include "emms/cuda_launch.h"
#include "emms/simplex.h"

namespace emms {
namespace cuda {
namespace {

template <typename T>
__global__ void simplex_project_rows(const T* __restrict__ v, T* __restrict__ out, int64_t rows, int64_t K) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  simplex_project_row<double>(v + r * K, out + r * K, K);
}

}  // namespace

template <typename T>
cudaError_t launch_simplex_project(const T* v, T* out, int64_t rows, int64_t K, cudaStream_t stream) {
  if (rows == 0 || K == 0) return cudaSuccess;
  constexpr int kThreads = 128;
  const int64_t blocks = (rows + kThreads - 1) / kThreads;
  simplex_project_rows<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(v, out, rows, K);
  return cudaGetLastError();
}

template cudaError_t launch_simplex_project<float>(const float*, float*, int64_t, int64_t, cudaStream_t);
template cudaError_t launch_simplex_project<double>(const double*, double*, int64_t, int64_t, cudaStream_t);

}  // namespace cuda
}  // namespace emms
