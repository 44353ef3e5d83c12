// CUDA glue of emms::logme_evidence: checks, device guard, current stream, dtype dispatch (float / double;
// the kernel's arithmetic is float64 either way).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "emms/checks.h"
#include "emms/cuda_launch.h"
#include "emms/logme_glue.h"

namespace emms {
namespace {

template <typename T>
void launch(const LogmeParams& p, const at::Tensor& s, const at::Tensor& x, const at::Tensor& y2, at::Tensor& ev,
            at::Tensor& al, at::Tensor& be, at::Tensor& its, cudaStream_t stream) {
  C10_CUDA_CHECK(cuda::launch_logme_evidence<T>(p, s.const_data_ptr<T>(), x.const_data_ptr<T>(), y2.const_data_ptr<T>(),
                                                ev.mutable_data_ptr<T>(), al.mutable_data_ptr<T>(),
                                                be.mutable_data_ptr<T>(), its.mutable_data_ptr<int64_t>(), x.size(0),
                                                stream));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> logme_evidence_cuda(
    const at::Tensor& sigma, const at::Tensor& proj, const at::Tensor& ynorm2, int64_t N, int64_t D,
    int64_t max_iter, double tol, double eps) {  // [k], [T, k], [T] -> 3 x [T], [T] int64
  check_logme_inputs(sigma, proj, ynorm2, N, D, max_iter, tol, eps, "logme_evidence");
  const c10::cuda::CUDAGuard guard(sigma.device());
  LogmeCall c = prepare_logme(sigma, proj, ynorm2, N, D, max_iter, tol, eps);
  const at::Tensor &sc = c.sigma, &pc = c.proj, &yc = c.ynorm2;
  at::Tensor &evidence = c.evidence, &alpha = c.alpha, &beta = c.beta, &iterations = c.iterations;
  const LogmeParams& p = c.params;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (sc.scalar_type() == at::kDouble) {
    launch<double>(p, sc, pc, yc, evidence, alpha, beta, iterations, stream);
  } else {
    launch<float>(p, sc, pc, yc, evidence, alpha, beta, iterations, stream);
  }
  return {evidence, alpha, beta, iterations};
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CUDA, m) { m.impl("logme_evidence", &logme_evidence_cuda); }

}  // namespace emms
