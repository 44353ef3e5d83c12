// CPU backend of emms::logme_evidence: targets in parallel, each runs the fixed point of emms/logme.h.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "emms/logme.h"
#include "emms/prepare.h"

namespace emms {
namespace {

// sigma [k], proj [T, k], ynorm2 [T] -> evidence, alpha, beta, iterations [T] (T = targets).
template <typename scalar_t>
void logme_kernel(const LogmeParams& p, const scalar_t* sigma, const scalar_t* proj, const scalar_t* ynorm2,
                  scalar_t* evidence, scalar_t* alpha, scalar_t* beta, int64_t* iterations, int64_t targets) {
  // A target costs max_iter * k; a grain of 1 keeps both cores busy already for a few wide targets.
  at::parallel_for(0, targets, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const LogmeResult r = logme_fixed_point(sigma, proj + t * p.k, 1, static_cast<double>(ynorm2[t]), p);
      evidence[t] = static_cast<scalar_t>(r.evidence);
      alpha[t] = static_cast<scalar_t>(r.alpha);
      beta[t] = static_cast<scalar_t>(r.beta);
      iterations[t] = r.iterations;
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> logme_evidence_cpu(
    const at::Tensor& sigma, const at::Tensor& proj, const at::Tensor& ynorm2, int64_t N, int64_t D, int64_t max_iter,
    double tol, double eps) {  // [k], [T, k], [T] -> 3 x [T], [T] int64
  const LogmeCall c = prepare_logme(sigma, proj, ynorm2, N, D, max_iter, tol, eps);
  EMMS_DISPATCH_FLOAT_DOUBLE(c.sigma.scalar_type(), "logme_evidence_cpu", [&] {
    logme_kernel<scalar_t>(c.params, c.sigma.const_data_ptr<scalar_t>(), c.proj.const_data_ptr<scalar_t>(),
                           c.ynorm2.const_data_ptr<scalar_t>(), c.evidence.mutable_data_ptr<scalar_t>(),
                           c.alpha.mutable_data_ptr<scalar_t>(), c.beta.mutable_data_ptr<scalar_t>(),
                           c.iterations.mutable_data_ptr<int64_t>(), c.T);
  });
  return c.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CPU, m) { m.impl("logme_evidence", &logme_evidence_cpu); }

}  // namespace emms
