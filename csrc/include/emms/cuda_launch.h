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

// Scratch (float64 elements) one model's solve needs; the glue allocates M of them when
// wlsr_uses_shared(K) is false.
int64_t wlsr_model_workspace(int64_t K);
bool wlsr_uses_shared(int64_t K);

// A: [M or 1, K, K] (a_stride = K*K or 0), B: [M, K, K], t: [M, K], objective: [M], iterations: [M].
// work: M * wlsr_model_workspace(K) doubles, or nullptr when wlsr_uses_shared(K).
template <typename T>
cudaError_t launch_wlsr_simplex(const WlsrParams& p, const T* A, int64_t a_stride, const T* B, T* t, T* objective,
                                int64_t* iterations, double* work, int64_t M, cudaStream_t stream);

// x: [B, N, D], order: [N], offsets: [C + 1], out: [B, C, D]; T = float or double.
template <typename T>
cudaError_t launch_class_sums(const T* x, const int64_t* order, const int64_t* offsets, T* out, int64_t B, int64_t N,
                              int64_t C, int64_t D, cudaStream_t stream);

// sigma: [k], proj: [T, k], ynorm2: [T] (T = float or double) -> evidence, alpha, beta: [T], iterations: [T].
template <typename T>
cudaError_t launch_logme_evidence(const LogmeParams& p, const T* sigma, const T* proj, const T* ynorm2, T* evidence,
                                  T* alpha, T* beta, int64_t* iterations, int64_t targets, cudaStream_t stream);

}  // namespace cuda
}  // namespace emms
