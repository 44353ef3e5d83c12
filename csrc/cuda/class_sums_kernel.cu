// CUDA kernels of emms::class_sums. Samples come sorted by class (`order`, class c owning the segment
// order[offsets[c] : offsets[c+1]]); every sum runs in a fixed order with float64 accumulators and no
// atomics, so the result is bitwise reproducible on a device (it matches the CPU's sequential sums to
// float64 rounding). Nothing is copied to the host: the index values are checked on the device.
//
//   1. class_index (one block): checks offsets (0 ... N, not decreasing) and counts each class's row
//      tiles of kRowsPerTile rows into tile_start [C + 1] (exclusive prefix sums).
//   2. Tiled path, used when the classes are large on average (C * kRowsPerTile < N), which is when a
//      thread per (batch, class, column) would leave the GPU idle (C = 10, D = 768: 60 blocks of 128 on
//      132 SMs): class_tile_sums sums each (batch, row tile, column) into a float64 partial, a block per
//      (tile, column block) with a column per thread (coalesced row loads); class_tile_reduce adds each
//      class's partials in tile order. A two-level fixed-order reduction instead of float atomics into
//      the output: atomics would make the float64 sum depend on the order blocks finish.
//      Direct path otherwise: class_sums_columns, a thread per (batch, class, column) walks its segment.
// Both paths depend only on (N, C), never on the batch size, so a model's sums do not depend on which
// models share its batch. Invalid index values (offsets not running from 0 to N without decreasing, an
// order value outside [0, N)) are never dereferenced: the whole output (bad offsets) or the class (bad
// order value) becomes NaN. The CPU kernel raises on them instead (it reads the indices on the host).
#include <cuda_runtime.h>
#include <math.h>

#include "emms/cuda_launch.h"

namespace emms {
namespace cuda {
namespace {

constexpr int kThreads = 128;         // columns per block
constexpr int64_t kRowsPerTile = 32;  // rows per partial sum of the tiled path
constexpr int kIndexThreads = 1024;
constexpr int64_t kMaxGrid = 65535;  // gridDim.y and gridDim.z limit

// index_work: [0, C] tile_start, [C + 1] 1 if the offsets are valid else 0.
__global__ void class_index(const int64_t* __restrict__ offsets, int64_t* __restrict__ index_work, int64_t N,
                            int64_t C) {
  __shared__ int64_t chunk_tiles[kIndexThreads];
  const int64_t per_thread = (C + kIndexThreads - 1) / kIndexThreads;
  const int64_t c0 = threadIdx.x * per_thread, c1 = c0 + per_thread < C ? c0 + per_thread : C;
  int ok = threadIdx.x == 0 ? (offsets[0] == 0 && offsets[C] == N) : 1;
  int64_t tiles = 0;
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t n = offsets[c + 1] - offsets[c];
    ok = ok && n >= 0;
    tiles += n > 0 ? (n + kRowsPerTile - 1) / kRowsPerTile : 0;
  }
  chunk_tiles[threadIdx.x] = tiles;
  const int valid = __syncthreads_and(ok);
  if (threadIdx.x == 0) {  // exclusive scan of kIndexThreads chunk totals: cheap next to any launch
    int64_t run = 0;
    for (int i = 0; i < kIndexThreads; ++i) {
      const int64_t t = chunk_tiles[i];
      chunk_tiles[i] = run;
      run += t;
    }
    index_work[C] = valid ? run : 0;
    index_work[C + 1] = valid;
  }
  __syncthreads();
  int64_t start = chunk_tiles[threadIdx.x];
  for (int64_t c = c0; c < c1; ++c) {
    index_work[c] = valid ? start : 0;
    const int64_t n = offsets[c + 1] - offsets[c];
    start += n > 0 ? (n + kRowsPerTile - 1) / kRowsPerTile : 0;
  }
}

// A thread per (batch, tile, column): partial[b, tile, d] = sum of x[b, order[i], d] over the tile's rows.
template <typename T>
__global__ void class_tile_sums(const T* __restrict__ x, const int64_t* __restrict__ order,
                                const int64_t* __restrict__ offsets, const int64_t* __restrict__ index_work,
                                double* __restrict__ partial, int64_t B, int64_t N, int64_t C, int64_t D,
                                int64_t tiles) {
  const int64_t tile = blockIdx.x;
  if (tile >= index_work[C]) return;  // fewer tiles than the bound (0 when the offsets are invalid)
  int64_t lo = 0, hi = C;             // the class c with tile_start[c] <= tile < tile_start[c + 1]
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (index_work[mid] <= tile)
      lo = mid;
    else
      hi = mid;
  }
  const int64_t first = offsets[lo] + (tile - index_work[lo]) * kRowsPerTile;
  const int64_t end = first + kRowsPerTile < offsets[lo + 1] ? first + kRowsPerTile : offsets[lo + 1];
  for (int64_t b = blockIdx.z; b < B; b += gridDim.z) {
    const T* xb = x + b * N * D;
    for (int64_t d = static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x; d < D;
         d += static_cast<int64_t>(gridDim.y) * kThreads) {
      double s = 0;
      for (int64_t i = first; i < end; ++i) {
        const int64_t row = order[i];
        s += row >= 0 && row < N ? static_cast<double>(xb[row * D + d]) : static_cast<double>(NAN);
      }
      partial[(b * tiles + tile) * D + d] = s;
    }
  }
}

// A thread per (batch, class, column): the class's partials added in tile order.
template <typename T>
__global__ void class_tile_reduce(const double* __restrict__ partial, const int64_t* __restrict__ index_work,
                                  T* __restrict__ out, int64_t B, int64_t C, int64_t D, int64_t tiles) {
  const bool valid = index_work[C + 1] != 0;
  const int64_t total = B * C * D;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t d = e % D, bc = e / D, c = bc % C, b = bc / C;
    double s = valid ? 0.0 : static_cast<double>(NAN);
    if (valid)
      for (int64_t tile = index_work[c]; tile < index_work[c + 1]; ++tile) s += partial[(b * tiles + tile) * D + d];
    out[e] = static_cast<T>(s);
  }
}

// A thread per (batch, class, column) walking the class's segment: enough threads when classes are small.
template <typename T>
__global__ void class_sums_columns(const T* __restrict__ x, const int64_t* __restrict__ order,
                                   const int64_t* __restrict__ offsets, const int64_t* __restrict__ index_work,
                                   T* __restrict__ out, int64_t N, int64_t C, int64_t D, int64_t first_row) {
  const int64_t bc = first_row + blockIdx.y;  // batch * C + class
  const int64_t d = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (d >= D) return;
  const int64_t b = bc / C, c = bc % C;
  double s = index_work[C + 1] != 0 ? 0.0 : static_cast<double>(NAN);
  if (index_work[C + 1] != 0) {
    const T* xb = x + b * N * D;
    for (int64_t i = offsets[c]; i < offsets[c + 1]; ++i) {
      const int64_t row = order[i];
      s += row >= 0 && row < N ? static_cast<double>(xb[row * D + d]) : static_cast<double>(NAN);
    }
  }
  out[bc * D + d] = static_cast<T>(s);
}

}  // namespace

ClassSumsPlan class_sums_plan(int64_t B, int64_t N, int64_t C, int64_t D) {
  ClassSumsPlan plan{};
  if (B == 0 || C == 0 || D == 0) return plan;
  plan.index_elems = C + 2;
  plan.tiled = C * kRowsPerTile < N;
  if (plan.tiled) {
    plan.tiles = (N + kRowsPerTile - 1) / kRowsPerTile + C;  // sum over c of ceil(n_c / R) <= ceil(N / R) + C
    plan.partial_elems = B * plan.tiles * D;
  }
  return plan;
}

template <typename T>
cudaError_t launch_class_sums(const T* x, const int64_t* order, const int64_t* offsets, T* out, int64_t B, int64_t N,
                              int64_t C, int64_t D, const ClassSumsPlan& plan, int64_t* index_work, double* partial,
                              cudaStream_t stream) {
  if (B == 0 || C == 0 || D == 0) return cudaSuccess;
  class_index<<<1, kIndexThreads, 0, stream>>>(offsets, index_work, N, C);
  const int64_t col_blocks = (D + kThreads - 1) / kThreads;
  if (plan.tiled) {
    const dim3 grid(static_cast<unsigned>(plan.tiles),
                    static_cast<unsigned>(col_blocks < kMaxGrid ? col_blocks : kMaxGrid),
                    static_cast<unsigned>(B < kMaxGrid ? B : kMaxGrid));
    class_tile_sums<T><<<grid, kThreads, 0, stream>>>(x, order, offsets, index_work, partial, B, N, C, D, plan.tiles);
    const int64_t total = B * C * D, reduce_threads = 256;
    const int64_t blocks = (total + reduce_threads - 1) / reduce_threads;
    class_tile_reduce<T><<<static_cast<unsigned>(blocks < (int64_t{1} << 30) ? blocks : (int64_t{1} << 30)),
                           reduce_threads, 0, stream>>>(partial, index_work, out, B, C, D, plan.tiles);
    return cudaGetLastError();
  }
  const int64_t rows = B * C;
  for (int64_t first = 0; first < rows; first += kMaxGrid) {  // gridDim.y is at most 65535
    const int64_t count = rows - first < kMaxGrid ? rows - first : kMaxGrid;
    const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(count));
    class_sums_columns<T><<<grid, kThreads, 0, stream>>>(x, order, offsets, index_work, out, N, C, D, first);
  }
  return cudaGetLastError();
}

template cudaError_t launch_class_sums<float>(const float*, const int64_t*, const int64_t*, float*, int64_t, int64_t,
                                              int64_t, int64_t, const ClassSumsPlan&, int64_t*, double*, cudaStream_t);
template cudaError_t launch_class_sums<double>(const double*, const int64_t*, const int64_t*, double*, int64_t, int64_t,
                                               int64_t, int64_t, const ClassSumsPlan&, int64_t*, double*, cudaStream_t);

}  // namespace cuda
}  // namespace emms
