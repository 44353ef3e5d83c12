// CUDA glue of emms::logme_evidence: the shared prepare step, device guard, current stream, launch
// (float / double; the kernel's arithmetic is float64 either way).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "emms/cuda_launch.h"
#include "emms/prepare.h"

namespace emms {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> logme_evidence_cuda(
    const at::Tensor& sigma, const at::Tensor& proj, const at::Tensor& ynorm2, int64_t N, int64_t D, int64_t max_iter,
    double tol, double eps) {  // [k], [T, k], [T] -> 3 x [T], [T] int64
  const LogmeCall c = prepare_logme(sigma, proj, ynorm2, N, D, max_iter, tol, eps);
  const c10::cuda::CUDAGuard guard(c.sigma.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  EMMS_DISPATCH_FLOAT_DOUBLE(c.sigma.scalar_type(), "logme_evidence_cuda", [&] {
    C10_CUDA_CHECK(cuda::launch_logme_evidence<scalar_t>(
        c.params, c.sigma.const_data_ptr<scalar_t>(), c.proj.const_data_ptr<scalar_t>(),
        c.ynorm2.const_data_ptr<scalar_t>(), c.evidence.mutable_data_ptr<scalar_t>(),
        c.alpha.mutable_data_ptr<scalar_t>(), c.beta.mutable_data_ptr<scalar_t>(),
        c.iterations.mutable_data_ptr<int64_t>(), c.T, stream));
  });
  return c.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CUDA, m) { m.impl("logme_evidence", &logme_evidence_cuda); }

}  // namespace emms
