#pragma once
// What the CPU and CUDA glue of emms::logme_evidence share after the checks: contiguous inputs, the
// parameters, and the four outputs on the inputs' device.
#include <ATen/ATen.h>

#include <tuple>

#include "emms/logme.h"

namespace emms {

struct LogmeCall {
  at::Tensor sigma, proj, ynorm2;                   // contiguous [k], [T, k], [T]
  LogmeParams params;
  at::Tensor evidence, alpha, beta, iterations;     // [T] x 3 in sigma's dtype, [T] int64
};

inline LogmeCall prepare_logme(const at::Tensor& sigma, const at::Tensor& proj, const at::Tensor& ynorm2,
                               int64_t N, int64_t D, int64_t max_iter, double tol, double eps) {
  LogmeCall c;
  c.sigma = sigma.contiguous();
  c.proj = proj.contiguous();
  c.ynorm2 = ynorm2.contiguous();
  const int64_t k = c.sigma.size(0), T = c.proj.size(0);
  c.params = LogmeParams{N, D, k, static_cast<int>(max_iter), tol, eps};
  c.evidence = at::empty({T}, c.sigma.options());
  c.alpha = at::empty({T}, c.sigma.options());
  c.beta = at::empty({T}, c.sigma.options());
  c.iterations = at::empty({T}, c.sigma.options().dtype(at::kLong));
  return c;
}

}  // namespace emms
