#pragma once
// Euclidean projection onto the probability simplex {w : w_i >= 0, sum_i w_i = 1}.
//
// Michelot's fixed point: theta_0 = (sum v - 1) / K, then theta_{j+1} = (sum_{v_i > theta_j} v_i - 1) / |S_j|.
// theta only grows and the active set only shrinks, so it stops after at most K passes at the exact
// threshold of the sort-based algorithm, without sorting and without scratch memory: the same code
// runs in a CPU loop and in one CUDA thread.
#include <math.h>

#include "emms/macros.h"

namespace emms {

// Threshold theta such that proj(v) = max(v - theta, 0). v: [K] with element stride `stride`.
// Returns NaN when any v_i is non-finite, so that callers emit a NaN row instead of garbage.
template <typename acc_t, typename scalar_t>
EMMS_HOST_DEVICE acc_t simplex_threshold(const scalar_t* v, int64_t K, int64_t stride = 1) {
  acc_t sum = 0;
  for (int64_t i = 0; i < K; ++i) {
    const acc_t vi = static_cast<acc_t>(v[i * stride]);
    if (!is_finite_d(static_cast<double>(vi))) return static_cast<acc_t>(NAN);
    sum += vi;
  }
  acc_t theta = (sum - acc_t(1)) / static_cast<acc_t>(K);
  int64_t count = K;
  for (int64_t pass = 0; pass <= K; ++pass) {
    acc_t s = 0;
    int64_t c = 0;
    for (int64_t i = 0; i < K; ++i) {
      const acc_t vi = static_cast<acc_t>(v[i * stride]);
      if (vi > theta) { s += vi; ++c; }
    }
    if (c == 0) break;  // cannot happen for finite v: the largest entry is always above theta
    theta = (s - acc_t(1)) / static_cast<acc_t>(c);
    if (c == count) break;  // same active set twice: theta is the fixed point
    count = c;
  }
  return theta;
}

// out = proj(v); both [K] with strides. out may alias v.
template <typename acc_t, typename in_t, typename out_t>
EMMS_HOST_DEVICE void simplex_project_row(const in_t* v, out_t* out, int64_t K, int64_t in_stride = 1,
                                          int64_t out_stride = 1) {
  const acc_t theta = simplex_threshold<acc_t>(v, K, in_stride);
  for (int64_t i = 0; i < K; ++i) {
    const acc_t d = static_cast<acc_t>(v[i * in_stride]) - theta;  // NaN stays NaN
    out[i * out_stride] = static_cast<out_t>(d > acc_t(0) || d != d ? d : acc_t(0));
  }
}

}  // namespace emms
