#pragma once
// Dense K x K linear algebra for one problem at a time, row-major, no allocation: the caller passes
// scratch. K is small (the number of foundation models), so simple O(K^3) loops are the right tool;
// on the GPU each problem runs inside one thread / warp with these exact routines. P is T* or an
// interleaved Strided<T> (emms/strided.h); the arithmetic is the same either way.
#include <math.h>

#include "emms/macros.h"
#include "emms/strided.h"

namespace emms {

// In-place Cholesky of the leading n x n block of a (row stride lda): lower triangle receives L.
// Returns false when a pivot is not positive (matrix not numerically positive definite).
template <typename P>
EMMS_HOST_DEVICE bool cholesky(P a, int64_t n, int64_t lda) {
  using T = scratch_elem_t<P>;
  for (int64_t j = 0; j < n; ++j) {
    T d = a[j * lda + j];
    for (int64_t k = 0; k < j; ++k) d -= a[j * lda + k] * a[j * lda + k];
    if (!(d > T(0))) return false;
    const T ljj = sqrt(d);
    a[j * lda + j] = ljj;
    for (int64_t i = j + 1; i < n; ++i) {
      T s = a[i * lda + j];
      for (int64_t k = 0; k < j; ++k) s -= a[i * lda + k] * a[j * lda + k];
      a[i * lda + j] = s / ljj;
    }
  }
  return true;
}

// Solves (L L') x = x in place, L from cholesky().
template <typename P>
EMMS_HOST_DEVICE void cholesky_solve(P l, int64_t n, int64_t lda, P x) {
  using T = scratch_elem_t<P>;
  for (int64_t i = 0; i < n; ++i) {
    T s = x[i];
    for (int64_t k = 0; k < i; ++k) s -= l[i * lda + k] * x[k];
    x[i] = s / l[i * lda + i];
  }
  for (int64_t i = n - 1; i >= 0; --i) {
    T s = x[i];
    for (int64_t k = i + 1; k < n; ++k) s -= l[k * lda + i] * x[k];
    x[i] = s / l[i * lda + i];
  }
}

// y = a x for a symmetric n x n matrix (row stride n).
template <typename P>
EMMS_HOST_DEVICE void symv(P a, P x, P y, int64_t n) {
  using T = scratch_elem_t<P>;
  for (int64_t i = 0; i < n; ++i) {
    T s = 0;
    for (int64_t j = 0; j < n; ++j) s += a[i * n + j] * x[j];
    y[i] = s;
  }
}

// x' a y.
template <typename P>
EMMS_HOST_DEVICE scratch_elem_t<P> bilinear(P a, P x, P y, int64_t n) {
  using T = scratch_elem_t<P>;
  T s = 0;
  for (int64_t i = 0; i < n; ++i) {
    T r = 0;
    for (int64_t j = 0; j < n; ++j) r += a[i * n + j] * y[j];
    s += x[i] * r;
  }
  return s;
}

// Cyclic Jacobi eigendecomposition of the symmetric n x n matrix a (destroyed: its diagonal ends as the
// eigenvalues); v receives the eigenvectors as columns. Jacobi is slow for big n but exact to rounding,
// branch-light and allocation-free: what a K x K pseudo-inverse needs.
template <typename P>
EMMS_HOST_DEVICE void jacobi_eigh(P a, P v, int64_t n) {
  using T = scratch_elem_t<P>;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) v[i * n + j] = (i == j) ? T(1) : T(0);
  for (int sweep = 0; sweep < 64; ++sweep) {
    T off = 0, diag = 0;
    for (int64_t p = 0; p < n; ++p) {
      diag += a[p * n + p] * a[p * n + p];
      for (int64_t q = p + 1; q < n; ++q) off += a[p * n + q] * a[p * n + q];
    }
    if (off <= T(eps_of<T>::value) * T(eps_of<T>::value) * diag || off == T(0)) break;
    for (int64_t p = 0; p < n; ++p) {
      for (int64_t q = p + 1; q < n; ++q) {
        const T apq = a[p * n + q];
        if (apq == T(0)) continue;
        const T theta = (a[q * n + q] - a[p * n + p]) / (T(2) * apq);
        const T t = (theta >= T(0) ? T(1) : T(-1)) / (fabs(theta) + sqrt(theta * theta + T(1)));
        const T c = T(1) / sqrt(t * t + T(1));
        const T s = t * c;
        for (int64_t k = 0; k < n; ++k) {  // a <- a J (columns p, q)
          const T akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (int64_t k = 0; k < n; ++k) {  // a <- J' a (rows p, q)
          const T apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (int64_t k = 0; k < n; ++k) {  // v <- v J
          const T vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
}

}  // namespace emms
