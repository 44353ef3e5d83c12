#pragma once
// LogME's per-target evidence maximization (You et al., ICML 2021), one target per call.
//
// With the eigenvalues s_i (i < k) of F'F and the projections x_i = u_i'y of one target y [N] on the left
// singular vectors of the features F [N, D], the Bayesian linear model y ~ N(Fw, 1/beta), w ~ N(0, 1/alpha)
// has, for t = alpha / beta,
//     gamma = sum_i s_i / (s_i + t),   |m|^2 = sum_i s_i x_i^2 / (s_i + t)^2,
//     |y - Fm|^2 = sum_i x_i^2 t^2 / (s_i + t)^2 + (|y|^2 - sum_i x_i^2),
// and MacKay's fixed point alpha <- gamma / |m|^2, beta <- (N - gamma) / |y - Fm|^2 maximizes the evidence.
// Everything is O(k) per iteration: the N x D work (one eigendecomposition) is shared by every target.
// Arithmetic is float64 whatever the input dtype. The same code runs in a CPU loop and in one CUDA thread.
#include <math.h>

#include "emms/macros.h"
#include "emms/params.h"

namespace emms {

struct LogmeResult {
  double evidence;  // log p(y | F, alpha, beta) / N at the returned alpha, beta
  double alpha;
  double beta;
  int64_t iterations;
};

// sigma: [k] eigenvalues of F'F (>= 0); x: [k] projections of the target with element stride x_stride;
// ynorm2: |y|^2. NaN in any input gives NaN evidence.
template <typename scalar_t>
EMMS_HOST_DEVICE LogmeResult logme_fixed_point(const scalar_t* sigma, const scalar_t* x, int64_t x_stride,
                                               double ynorm2, const LogmeParams& p) {
  const double N = static_cast<double>(p.N);
  double x2sum = 0.0;
  for (int64_t i = 0; i < p.k; ++i) {
    const double xi = static_cast<double>(x[i * x_stride]);
    x2sum += xi * xi;
  }
  // The part of y outside the span of F; rounding may push it a hair below zero.
  double outside = ynorm2 - x2sum;
  outside = outside > 0.0 ? outside : 0.0;

  double alpha = 1.0, beta = 1.0, m2 = 0.0, res2 = 0.0;
  int64_t it = 0;
  while (it < p.max_iter) {
    ++it;
    const double t = alpha / beta;
    double gamma = 0.0;
    m2 = 0.0;
    res2 = outside;
    for (int64_t i = 0; i < p.k; ++i) {
      const double s = static_cast<double>(sigma[i]);
      const double xi = static_cast<double>(x[i * x_stride]);
      const double inv = 1.0 / (s + t);
      gamma += s * inv;
      m2 += s * xi * xi * inv * inv;
      res2 += xi * xi * (t * inv) * (t * inv);
    }
    alpha = gamma / (m2 + p.eps);
    beta = (N - gamma) / (res2 + p.eps);
    const double t_new = alpha / beta;
    if (!(fabs(t_new - t) / t > p.tol)) break;  // also stops on NaN
  }
  // log|alpha I + beta F'F| = sum_i log(alpha + beta s_i) + (D - k) log alpha; its (D - k) log alpha
  // cancels against the prior's D log alpha, leaving k log alpha (and nothing when k = 0, where alpha -> 0).
  double logdet = 0.0;
  for (int64_t i = 0; i < p.k; ++i) logdet += log(alpha + beta * static_cast<double>(sigma[i]));
  const double prior = p.k > 0 ? 0.5 * static_cast<double>(p.k) * log(alpha) : 0.0;
  const double two_pi = 6.283185307179586;
  const double ev =
      prior + 0.5 * N * log(beta) - 0.5 * logdet - 0.5 * beta * res2 - 0.5 * alpha * m2 - 0.5 * N * log(two_pi);
  return LogmeResult{ev / N, alpha, beta, it};
}

}  // namespace emms
