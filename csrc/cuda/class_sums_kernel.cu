// CUDA kernel of emms::class_sums: one thread per (batch, class, feature column). Consecutive threads
// read consecutive columns of the same row, so every load is coalesced; each thread walks its class's
// segment in a fixed order with a float64 accumulator: deterministic, no atomics.
#include <cuda_runtime.h>

#include "emms/cuda_launch.h"
#include "emms/segment.h"

namespace emms {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

template <typename T>
__global__ void class_sums_columns(const T* __restrict__ x, const int64_t* __restrict__ order,
                                   const int64_t* __restrict__ offsets, T* __restrict__ out, int64_t N, int64_t C,
                                   int64_t D, int64_t first_row) {
  const int64_t bc = first_row + blockIdx.y;  // batch * C + class
  const int64_t d = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (d >= D) return;
  const int64_t b = bc / C, c = bc % C;
  out[bc * D + d] = static_cast<T>(segment_sum<double>(x + b * N * D, D, order, offsets[c], offsets[c + 1], d));
}

}  // namespace

template <typename T>
cudaError_t launch_class_sums(const T* x, const int64_t* order, const int64_t* offsets, T* out, int64_t B, int64_t N,
                              int64_t C, int64_t D, cudaStream_t stream) {
  if (B == 0 || C == 0 || D == 0) return cudaSuccess;
  const int64_t col_blocks = (D + kThreads - 1) / kThreads;
  const int64_t rows = B * C;
  for (int64_t first = 0; first < rows; first += kMaxGridY) {  // gridDim.y is at most 65535
    const int64_t count = rows - first < kMaxGridY ? rows - first : kMaxGridY;
    const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(count));
    class_sums_columns<T><<<grid, kThreads, 0, stream>>>(x, order, offsets, out, N, C, D, first);
  }
  return cudaGetLastError();
}

template cudaError_t launch_class_sums<float>(const float*, const int64_t*, const int64_t*, float*, int64_t, int64_t,
                                              int64_t, int64_t, cudaStream_t);
template cudaError_t launch_class_sums<double>(const double*, const int64_t*, const int64_t*, double*, int64_t, int64_t,
                                               int64_t, int64_t, cudaStream_t);

}  // namespace cuda
}  // namespace emms
