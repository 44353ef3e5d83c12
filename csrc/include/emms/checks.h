#pragma once
// Argument checks shared by every backend's glue. They raise ValueError / TypeError in Python and state
// the contract next to what was seen, so a bad call never reaches a kernel.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <sstream>
#include <string>

#include "emms/macros.h"
#include "emms/params.h"

namespace emms {

inline std::string shape_str(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes() << " " << t.scalar_type();
  return s.str();
}

inline void check_floating(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), op, ": ", name,
                   " must be a floating-point tensor (got ", shape_str(t), ")");
}

// v [..., K] of a floating dtype.
inline void check_simplex_input(const at::Tensor& v, const char* op) {
  check_floating(v, op, "v");
  TORCH_CHECK_VALUE(v.dim() >= 1, op, ": v must be [..., K] with at least one dimension (got ", shape_str(v), ")");
}

// A [K, K] or [M, K, K] and B [M, K, K] of one floating dtype on one device.
inline void check_wlsr_inputs(const at::Tensor& A, const at::Tensor& B, int64_t mode, int64_t max_iter,
                              double tol, const char* op) {
  check_floating(A, op, "A");
  check_floating(B, op, "B");
  TORCH_CHECK_VALUE(B.dim() == 3 && B.size(1) == B.size(2) && B.size(1) >= 1, op,
                    ": B must be [M, K, K] with K >= 1 (got ", shape_str(B), ")");
  const int64_t M = B.size(0), K = B.size(1);
  TORCH_CHECK_VALUE((A.dim() == 2 && A.size(0) == K && A.size(1) == K) ||
                        (A.dim() == 3 && A.size(0) == M && A.size(1) == K && A.size(2) == K),
                    op, ": A must be [K, K] or [M, K, K] with M = ", M, ", K = ", K, " from B (got ",
                    shape_str(A), ")");
  TORCH_CHECK_TYPE(A.scalar_type() == B.scalar_type(), op, ": A and B must share a dtype (got ",
                   A.scalar_type(), " and ", B.scalar_type(), ")");
  TORCH_CHECK_VALUE(A.device() == B.device(), op, ": A and B must be on one device (got ", A.device(),
                    " and ", B.device(), ")");
  TORCH_CHECK_VALUE(mode >= 0 && mode <= 2, op,
                    ": mode must be 0 (exact), 1 (alternating) or 2 (reference) (got ", mode, ")");
  TORCH_CHECK_VALUE(max_iter >= 1 && max_iter <= (int64_t(1) << 30), op,
                    ": max_iter must be in [1, 2^30] (got ", max_iter, ")");
  TORCH_CHECK_VALUE(tol >= 0.0, op, ": tol must be >= 0 (got ", tol, ")");
}

// Solver parameters for B's dtype. Reference mode mirrors lstsq in the released code, which drops
// singular values below eps*max(rows, cols) of the flattened labels; A holds their squares, formed in the
// input precision, hence K * eps of that precision on A's eigenvalues.
inline WlsrParams make_wlsr_params(int64_t K, int64_t mode, int64_t max_iter, double tol, at::ScalarType dtype) {
  const double eps = dtype == at::kDouble ? eps_of<double>::value : eps_of<float>::value;
  return WlsrParams{K, static_cast<int>(mode), static_cast<int>(max_iter), tol, static_cast<double>(K) * eps};
}

}  // namespace emms
