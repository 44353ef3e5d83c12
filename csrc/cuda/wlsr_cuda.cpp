// CUDA glue of emms::wlsr_simplex: the shared prepare step (half / bfloat16 in float32), device guard,
// current stream, the launch plan (shared or global scratch for K), the global scratch buffer when K needs
// it, launch.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "emms/cuda_launch.h"
#include "emms/prepare.h"

namespace emms {
namespace {

// A [K, K] or [M, K, K], B [M, K, K] -> t [M, K], objective [M], iterations [M] (int64).
std::tuple<at::Tensor, at::Tensor, at::Tensor> wlsr_simplex_cuda(const at::Tensor& A, const at::Tensor& B, int64_t mode,
                                                                 int64_t max_iter, double tol) {
  const WlsrCall c = prepare_wlsr(A, B, mode, max_iter, tol, LowPrecision::kUpcast);
  const c10::cuda::CUDAGuard guard(c.B.device());
  cuda::WlsrPlan plan{};
  C10_CUDA_CHECK(cuda::wlsr_plan(c.params.K, c.B.device().index(), &plan));
  at::Tensor work;  // interleaved global scratch, only when a model's scratch exceeds what shared memory holds
  if (!plan.shared) work = at::empty({c.M * cuda::wlsr_model_workspace(c.params.K)}, c.B.options().dtype(at::kDouble));
  double* work_ptr = work.defined() ? work.mutable_data_ptr<double>() : nullptr;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  EMMS_DISPATCH_FLOAT_DOUBLE(c.dtype.compute(), "wlsr_simplex_cuda", [&] {
    C10_CUDA_CHECK(cuda::launch_wlsr_simplex<scalar_t>(
        c.params, c.A.const_data_ptr<scalar_t>(), c.a_stride, c.B.const_data_ptr<scalar_t>(),
        c.t.mutable_data_ptr<scalar_t>(), c.objective.mutable_data_ptr<scalar_t>(),
        c.iterations.mutable_data_ptr<int64_t>(), plan, work_ptr, c.M, stream));
  });
  return c.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CUDA, m) { m.impl("wlsr_simplex", &wlsr_simplex_cuda); }

}  // namespace emms
