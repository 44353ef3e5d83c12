// CUDA glue of emms::wlsr_simplex: checks, device guard, current stream, dtype dispatch, and the global
// scratch buffer for K too large for the kernel's shared-memory path.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "emms/checks.h"
#include "emms/cuda_launch.h"

namespace emms {
namespace {

// A [K, K] or [M, K, K], B [M, K, K] -> t [M, K], objective [M], iterations [M] (int64).
std::tuple<at::Tensor, at::Tensor, at::Tensor> wlsr_simplex_cuda(const at::Tensor& A, const at::Tensor& B,
                                                                 int64_t mode, int64_t max_iter, double tol) {
  check_wlsr_inputs(A, B, mode, max_iter, tol, "wlsr_simplex");
  const c10::cuda::CUDAGuard guard(B.device());
  const bool low = B.scalar_type() == at::kHalf || B.scalar_type() == at::kBFloat16;
  const at::Tensor Ac = (low ? A.to(at::kFloat) : A).contiguous();
  const at::Tensor Bc = (low ? B.to(at::kFloat) : B).contiguous();
  const int64_t M = Bc.size(0), K = Bc.size(1);
  at::Tensor t = at::empty({M, K}, Bc.options());
  at::Tensor objective = at::empty({M}, Bc.options());
  at::Tensor iterations = at::empty({M}, Bc.options().dtype(at::kLong));
  at::Tensor work;
  if (!cuda::wlsr_uses_shared(K)) work = at::empty({M * cuda::wlsr_model_workspace(K)}, Bc.options().dtype(at::kDouble));
  double* work_ptr = work.defined() ? work.mutable_data_ptr<double>() : nullptr;
  const int64_t a_stride = Ac.dim() == 3 ? K * K : 0;
  const WlsrParams p = make_wlsr_params(K, mode, max_iter, tol, Bc.scalar_type());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (Bc.scalar_type() == at::kDouble) {
    C10_CUDA_CHECK(cuda::launch_wlsr_simplex<double>(p, Ac.const_data_ptr<double>(), a_stride, Bc.const_data_ptr<double>(),
                                                     t.mutable_data_ptr<double>(), objective.mutable_data_ptr<double>(),
                                                     iterations.mutable_data_ptr<int64_t>(), work_ptr, M, stream));
  } else {
    C10_CUDA_CHECK(cuda::launch_wlsr_simplex<float>(p, Ac.const_data_ptr<float>(), a_stride, Bc.const_data_ptr<float>(),
                                                    t.mutable_data_ptr<float>(), objective.mutable_data_ptr<float>(),
                                                    iterations.mutable_data_ptr<int64_t>(), work_ptr, M, stream));
  }
  if (low) return {t.to(B.scalar_type()), objective.to(B.scalar_type()), iterations};
  return {t, objective, iterations};
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CUDA, m) { m.impl("wlsr_simplex", &wlsr_simplex_cuda); }

}  // namespace emms
