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

// Threshold theta of the shifted row u = v - shift, such that proj(v) = max(u - theta, 0).
// v: [K] with element stride `stride`. Returns NaN when any v_i is non-finite.
template <typename acc_t, typename scalar_t>
EMMS_HOST_DEVICE acc_t simplex_threshold(const scalar_t* v, int64_t K, int64_t stride, acc_t shift) {
  acc_t sum = 0;
  for (int64_t i = 0; i < K; ++i) sum += static_cast<acc_t>(v[i * stride]) - shift;
  acc_t theta = (sum - acc_t(1)) / static_cast<acc_t>(K);
  int64_t count = K;
  for (int64_t pass = 0; pass <= K; ++pass) {
    acc_t s = 0;
    int64_t c = 0;
    for (int64_t i = 0; i < K; ++i) {
      const acc_t ui = static_cast<acc_t>(v[i * stride]) - shift;
      if (ui > theta) {
        s += ui;
        ++c;
      }
    }
    if (c == 0) break;  // cannot happen for finite v: the largest entry is always above theta
    theta = (s - acc_t(1)) / static_cast<acc_t>(c);
    if (c == count) break;  // same active set twice: theta is the fixed point
    count = c;
  }
  return theta;
}

// out = proj(v); both [K] with strides. out may alias v. Rows with a non-finite entry become NaN.
// The projection is invariant to adding a constant to every entry, so the row is first shifted by its
// maximum: sums then stay O(K) and "+1" is never lost against entries of 1e16 or more.
template <typename acc_t, typename in_t, typename out_t>
EMMS_HOST_DEVICE void simplex_project_row(const in_t* v, out_t* out, int64_t K, int64_t in_stride = 1,
                                          int64_t out_stride = 1) {
  acc_t vmax = K > 0 ? static_cast<acc_t>(v[0]) : acc_t(0);
  bool finite = true;
  for (int64_t i = 0; i < K; ++i) {
    const acc_t vi = static_cast<acc_t>(v[i * in_stride]);
    finite = finite && is_finite_d(static_cast<double>(vi));
    vmax = vi > vmax ? vi : vmax;
  }
  if (!finite) {
    for (int64_t i = 0; i < K; ++i) out[i * out_stride] = static_cast<out_t>(NAN);
    return;
  }
  const acc_t theta = simplex_threshold<acc_t>(v, K, in_stride, vmax);
  for (int64_t i = 0; i < K; ++i) {
    const acc_t d = (static_cast<acc_t>(v[i * in_stride]) - vmax) - theta;
    out[i * out_stride] = static_cast<out_t>(d > acc_t(0) ? d : acc_t(0));
  }
}

}  // namespace emms
