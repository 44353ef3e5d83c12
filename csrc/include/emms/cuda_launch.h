#pragma once
// Launchers of the torch-free CUDA kernels (csrc/cuda/*.cu), called by the tensor glue (*_cuda.cpp).
// Raw pointers, sizes and a stream in; a cudaError_t out. No torch type crosses this boundary, so the .cu
// files compile with nvcc alone (CI has no GPU and no CUDA torch in its main environment; docs/design.md §5).
#include <cuda_runtime_api.h>

#include <cstdint>

#include "emms/params.h"

namespace emms {
namespace cuda {

// v, out: [rows, K] contiguous. T = float or double (the glue upcasts half / bfloat16).
template <typename T>
cudaError_t launch_simplex_project(const T* v, T* out, int64_t rows, int64_t K, cudaStream_t stream);

// How wlsr_simplex runs at K on a device: each model's wlsr_model_workspace(K) doubles of scratch sit in
// shared memory, interleaved across the block's threads, while one model fits in the 48 KB a block gets
// without opting in (up to 64 models a block) or, opting in, in the device's per-block maximum (227 KB on
// H100 / H200); beyond that in a global buffer of M * wlsr_model_workspace(K) doubles from the glue,
// interleaved across models (coalesced).
struct WlsrPlan {
  bool shared;           // scratch in shared memory (else `work` must be given)
  int threads;           // models per block
  int64_t shared_bytes;  // dynamic shared memory per block
};
int64_t wlsr_model_workspace(int64_t K);
cudaError_t wlsr_plan(int64_t K, int device, WlsrPlan* plan);

// A: [M or 1, K, K] (a_stride = K*K or 0), B: [M, K, K], t: [M, K], objective: [M], iterations: [M].
// work: M * wlsr_model_workspace(K) doubles when !plan.shared, else unused (nullptr).
template <typename T>
cudaError_t launch_wlsr_simplex(const WlsrParams& p, const T* A, int64_t a_stride, const T* B, T* t, T* objective,
                                int64_t* iterations, const WlsrPlan& plan, double* work, int64_t M,
                                cudaStream_t stream);

// Device workspace of class_sums for a [B, N, D] input with C classes (csrc/cuda/class_sums_kernel.cu).
struct ClassSumsPlan {
  bool tiled;             // two-level fixed-order reduction over row tiles (else a thread per class column)
  int64_t tiles;          // bound on the row tiles of all classes (tiled path)
  int64_t index_elems;    // int64 elements of index_work: C + 2
  int64_t partial_elems;  // float64 elements of partial: B * tiles * D (tiled path), else 0
};
ClassSumsPlan class_sums_plan(int64_t B, int64_t N, int64_t C, int64_t D);

// x: [B, N, D], order: [N], offsets: [C + 1], out: [B, C, D]; T = float or double. index_work and partial
// as class_sums_plan sizes them. Index values are checked on the device (invalid ones give NaN sums).
template <typename T>
cudaError_t launch_class_sums(const T* x, const int64_t* order, const int64_t* offsets, T* out, int64_t B, int64_t N,
                              int64_t C, int64_t D, const ClassSumsPlan& plan, int64_t* index_work, double* partial,
                              cudaStream_t stream);

// sigma: [k], proj: [T, k], ynorm2: [T] (T = float or double) -> evidence, alpha, beta: [T], iterations: [T].
template <typename T>
cudaError_t launch_logme_evidence(const LogmeParams& p, const T* sigma, const T* proj, const T* ynorm2, T* evidence,
                                  T* alpha, T* beta, int64_t* iterations, int64_t targets, cudaStream_t stream);

}  // namespace cuda
}  // namespace emms
