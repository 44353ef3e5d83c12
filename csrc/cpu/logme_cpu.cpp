// CPU backend of emms::logme_evidence: targets in parallel, each runs the fixed point of emms/logme.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "emms/checks.h"
#include "emms/logme.h"
#include "emms/logme_glue.h"

namespace emms {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> logme_evidence_cpu(
    const at::Tensor& sigma, const at::Tensor& proj, const at::Tensor& ynorm2, int64_t N, int64_t D,
    int64_t max_iter, double tol, double eps) {  // [k], [T, k], [T] -> 3 x [T], [T] int64
  check_logme_inputs(sigma, proj, ynorm2, N, D, max_iter, tol, eps, "logme_evidence");
  LogmeCall c = prepare_logme(sigma, proj, ynorm2, N, D, max_iter, tol, eps);
  const at::Tensor &sc = c.sigma, &pc = c.proj, &yc = c.ynorm2;
  at::Tensor &evidence = c.evidence, &alpha = c.alpha, &beta = c.beta, &iterations = c.iterations;
  const int64_t k = sc.size(0), T = pc.size(0);
  const LogmeParams& p = c.params;
  AT_DISPATCH_FLOATING_TYPES(sc.scalar_type(), "logme_evidence_cpu", [&] {
    const scalar_t* s = sc.const_data_ptr<scalar_t>();
    const scalar_t* x = pc.const_data_ptr<scalar_t>();
    const scalar_t* y2 = yc.const_data_ptr<scalar_t>();
    scalar_t* ev = evidence.mutable_data_ptr<scalar_t>();
    scalar_t* al = alpha.mutable_data_ptr<scalar_t>();
    scalar_t* be = beta.mutable_data_ptr<scalar_t>();
    int64_t* its = iterations.mutable_data_ptr<int64_t>();
    // A target costs max_iter * k; a grain of 1 keeps both cores busy already for a few wide targets.
    at::parallel_for(0, T, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const LogmeResult r = logme_fixed_point(s, x + t * k, 1, static_cast<double>(y2[t]), p);
        ev[t] = static_cast<scalar_t>(r.evidence);
        al[t] = static_cast<scalar_t>(r.alpha);
        be[t] = static_cast<scalar_t>(r.beta);
        its[t] = r.iterations;
      }
    });
  });
  return {evidence, alpha, beta, iterations};
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CPU, m) { m.impl("logme_evidence", &logme_evidence_cpu); }

}  // namespace emms
