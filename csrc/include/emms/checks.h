#pragma once
// Argument checks of every op, run by its prepare step (emms/prepare.h) for every backend. They raise
// ValueError / TypeError in Python and state the contract (docs/design.md §5) next to what was seen, so a
// bad call never reaches a kernel.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <sstream>
#include <string>

namespace emms {

inline std::string shape_str(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes() << " " << t.scalar_type();
  return s.str();
}

inline void check_floating(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), op, ": ", name, " must be a floating-point tensor (got ",
                   shape_str(t), ")");
}

// v [..., K] of a floating dtype.
inline void check_simplex_input(const at::Tensor& v, const char* op) {
  check_floating(v, op, "v");
  TORCH_CHECK_VALUE(v.dim() >= 1, op, ": v must be [..., K] with at least one dimension (got ", shape_str(v), ")");
}

// A [K, K] or [M, K, K] and B [M, K, K] of one floating dtype on one device.
inline void check_wlsr_inputs(const at::Tensor& A, const at::Tensor& B, int64_t mode, int64_t max_iter, double tol,
                              const char* op) {
  check_floating(A, op, "A");
  check_floating(B, op, "B");
  TORCH_CHECK_VALUE(B.dim() == 3 && B.size(1) == B.size(2) && B.size(1) >= 1, op,
                    ": B must be [M, K, K] with K >= 1 (got ", shape_str(B), ")");
  const int64_t M = B.size(0), K = B.size(1);
  TORCH_CHECK_VALUE((A.dim() == 2 && A.size(0) == K && A.size(1) == K) ||
                        (A.dim() == 3 && A.size(0) == M && A.size(1) == K && A.size(2) == K),
                    op, ": A must be [K, K] or [M, K, K] with M = ", M, ", K = ", K, " from B (got ", shape_str(A),
                    ")");
  TORCH_CHECK_TYPE(A.scalar_type() == B.scalar_type(), op, ": A and B must share a dtype (got ", A.scalar_type(),
                   " and ", B.scalar_type(), ")");
  TORCH_CHECK_VALUE(A.device() == B.device(), op, ": A and B must be on one device (got ", A.device(), " and ",
                    B.device(), ")");
  TORCH_CHECK_VALUE(mode >= 0 && mode <= 2, op, ": mode must be 0 (exact), 1 (alternating) or 2 (reference) (got ",
                    mode, ")");
  TORCH_CHECK_VALUE(max_iter >= 1 && max_iter <= (int64_t(1) << 30), op, ": max_iter must be in [1, 2^30] (got ",
                    max_iter, ")");
  TORCH_CHECK_VALUE(tol >= 0.0, op, ": tol must be >= 0 (got ", tol, ")");
}

// x [B, N, D] or [N, D] floating, order [N] int64, offsets [C + 1] int64, all on x's device. The index
// values are checked by the caller (check_class_index_values) where reading them is cheap.
inline void check_class_sums_inputs(const at::Tensor& x, const at::Tensor& order, const at::Tensor& offsets,
                                    const char* op) {
  check_floating(x, op, "x");
  TORCH_CHECK_VALUE(x.dim() == 2 || x.dim() == 3, op, ": x must be [N, D] or [B, N, D] (got ", shape_str(x), ")");
  const int64_t N = x.size(-2);
  TORCH_CHECK_TYPE(order.scalar_type() == at::kLong && offsets.scalar_type() == at::kLong, op,
                   ": order and offsets must be int64 (got ", shape_str(order), " and ", shape_str(offsets), ")");
  TORCH_CHECK_VALUE(order.dim() == 1 && order.size(0) == N, op, ": order must be [N] with N = ", N, " from x (got ",
                    shape_str(order), ")");
  TORCH_CHECK_VALUE(offsets.dim() == 1 && offsets.size(0) >= 1, op, ": offsets must be [C + 1] (got ",
                    shape_str(offsets), ")");
  TORCH_CHECK_VALUE(order.device() == x.device() && offsets.device() == x.device(), op,
                    ": x, order and offsets must be on one device (got ", x.device(), ", ", order.device(), ", ",
                    offsets.device(), ")");
}

// offsets (CPU, contiguous) must run from 0 to N without decreasing; order values must lie in [0, N).
inline void check_class_index_values(const at::Tensor& order_cpu, const at::Tensor& offsets_cpu, int64_t N,
                                     const char* op) {
  const int64_t* off = offsets_cpu.const_data_ptr<int64_t>();
  const int64_t C = offsets_cpu.size(0) - 1;
  TORCH_CHECK_VALUE(off[0] == 0 && off[C] == N, op, ": offsets must start at 0 and end at N = ", N, " (got ", off[0],
                    " ... ", off[C], ")");
  for (int64_t c = 0; c < C; ++c)
    TORCH_CHECK_VALUE(off[c] <= off[c + 1], op, ": offsets must not decrease (offsets[", c, "] = ", off[c],
                      " > offsets[", c + 1, "] = ", off[c + 1], ")");
  const int64_t* ord = order_cpu.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < N; ++i)
    TORCH_CHECK_VALUE(ord[i] >= 0 && ord[i] < N, op, ": order values must lie in [0, N = ", N, ") (got ", ord[i],
                      " at position ", i, ")");
}

// sigma [k], proj [T, k], ynorm2 [T]: one float32 / float64 dtype, one device; 1 <= N, k <= min(N, D).
inline void check_logme_inputs(const at::Tensor& sigma, const at::Tensor& proj, const at::Tensor& ynorm2, int64_t N,
                               int64_t D, int64_t max_iter, double tol, double eps, const char* op) {
  TORCH_CHECK_TYPE(sigma.scalar_type() == at::kFloat || sigma.scalar_type() == at::kDouble, op,
                   ": sigma must be float32 or float64 (got ", shape_str(sigma), ")");
  TORCH_CHECK_VALUE(sigma.dim() == 1, op, ": sigma must be [k] (got ", shape_str(sigma), ")");
  const int64_t k = sigma.size(0);
  TORCH_CHECK_VALUE(proj.dim() == 2 && proj.size(1) == k, op, ": proj must be [T, k] with k = ", k, " from sigma (got ",
                    shape_str(proj), ")");
  const int64_t T = proj.size(0);
  TORCH_CHECK_VALUE(ynorm2.dim() == 1 && ynorm2.size(0) == T, op, ": ynorm2 must be [T] with T = ", T,
                    " from proj (got ", shape_str(ynorm2), ")");
  TORCH_CHECK_TYPE(proj.scalar_type() == sigma.scalar_type() && ynorm2.scalar_type() == sigma.scalar_type(), op,
                   ": sigma, proj and ynorm2 must share a dtype (got ", sigma.scalar_type(), ", ", proj.scalar_type(),
                   ", ", ynorm2.scalar_type(), ")");
  TORCH_CHECK_VALUE(proj.device() == sigma.device() && ynorm2.device() == sigma.device(), op,
                    ": sigma, proj and ynorm2 must be on one device (got ", sigma.device(), ", ", proj.device(), ", ",
                    ynorm2.device(), ")");
  TORCH_CHECK_VALUE(N >= 1, op, ": N must be >= 1 (got ", N, ")");
  TORCH_CHECK_VALUE(D >= k && N >= k, op, ": the rank k = ", k, " from sigma must be <= min(N, D) (got N = ", N,
                    ", D = ", D, ")");
  TORCH_CHECK_VALUE(max_iter >= 1 && max_iter <= (int64_t(1) << 30), op, ": max_iter must be in [1, 2^30] (got ",
                    max_iter, ")");
  TORCH_CHECK_VALUE(tol >= 0.0, op, ": tol must be >= 0 (got ", tol, ")");
  TORCH_CHECK_VALUE(eps >= 0.0, op, ": eps must be >= 0 (got ", eps, ")");
}

// G [D, D] or [M, D, D]: float32 / float64, contiguous (it is factored in place).
inline void check_cholesky_input(const at::Tensor& G, const char* op) {
  TORCH_CHECK_TYPE(G.scalar_type() == at::kFloat || G.scalar_type() == at::kDouble, op,
                   ": G must be float32 or float64 (got ", shape_str(G), ")");
  TORCH_CHECK_VALUE((G.dim() == 2 || G.dim() == 3) && G.size(-1) == G.size(-2), op,
                    ": G must be [D, D] or [M, D, D] (got ", shape_str(G), ")");
  TORCH_CHECK_VALUE(G.is_contiguous(), op, ": G must be contiguous: it is factored in place (got strides ", G.strides(),
                    " for ", shape_str(G), ")");
  TORCH_CHECK_VALUE(G.size(-1) <= INT32_MAX, op, ": D must fit LAPACK's 32-bit sizes (got ", shape_str(G), ")");
}

// L [D, D] or [M, D, D] (float32 / float64, contiguous; its lower triangle a Cholesky factor) and the
// right-hand sides Y [D, c] or [M, D, c] of L's dtype, batch and width.
inline void check_cholesky_solve_inputs(const at::Tensor& L, const at::Tensor& Y, const char* op) {
  TORCH_CHECK_TYPE(L.scalar_type() == at::kFloat || L.scalar_type() == at::kDouble, op,
                   ": L must be float32 or float64 (got ", shape_str(L), ")");
  TORCH_CHECK_VALUE((L.dim() == 2 || L.dim() == 3) && L.size(-1) == L.size(-2), op,
                    ": L must be [D, D] or [M, D, D] (got ", shape_str(L), ")");
  TORCH_CHECK_VALUE(L.is_contiguous(), op, ": L must be contiguous (got strides ", L.strides(), " for ", shape_str(L),
                    ")");
  TORCH_CHECK_TYPE(Y.scalar_type() == L.scalar_type(), op, ": Y must have L's dtype ", L.scalar_type(), " (got ",
                   shape_str(Y), ")");
  const bool batched = L.dim() == 3;
  TORCH_CHECK_VALUE(Y.dim() == L.dim() && Y.size(-2) == L.size(-1) && (!batched || Y.size(0) == L.size(0)), op,
                    ": Y must be ", batched ? "[M, D, c]" : "[D, c]", " with L's ", batched ? "M and D" : "D",
                    " (L is ", shape_str(L), ", got Y ", shape_str(Y), ")");
  TORCH_CHECK_VALUE(L.size(-1) <= INT32_MAX && Y.size(-1) <= INT32_MAX, op,
                    ": D and c must fit LAPACK's 32-bit sizes (got L ", shape_str(L), ", Y ", shape_str(Y), ")");
}

// d [D], e [D - 1] (D >= 1), shifts [g] and Y [D, c]: one floating dtype (float32 / float64), on one device.
inline void check_tridiagonal_solve_inputs(const at::Tensor& d, const at::Tensor& e, const at::Tensor& shifts,
                                           const at::Tensor& Y, const char* op) {
  TORCH_CHECK_TYPE(d.scalar_type() == at::kFloat || d.scalar_type() == at::kDouble, op,
                   ": d must be float32 or float64 (got ", shape_str(d), ")");
  const auto same_dtype = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK_TYPE(t.scalar_type() == d.scalar_type(), op, ": ", name, " must have d's dtype ", d.scalar_type(),
                     " (got ", shape_str(t), ")");
  };
  same_dtype(e, "e");
  same_dtype(shifts, "shifts");
  same_dtype(Y, "Y");
  TORCH_CHECK_VALUE(d.dim() == 1 && d.size(0) >= 1, op, ": d must be [D] with D >= 1 (got ", shape_str(d), ")");
  TORCH_CHECK_VALUE(e.dim() == 1 && e.size(0) == d.size(0) - 1, op, ": e must be [D - 1] = [", d.size(0) - 1, "] (got ",
                    shape_str(e), ")");
  TORCH_CHECK_VALUE(shifts.dim() == 1, op, ": shifts must be [g] (got ", shape_str(shifts), ")");
  TORCH_CHECK_VALUE(Y.dim() == 2 && Y.size(0) == d.size(0), op, ": Y must be [D, c] = [", d.size(0), ", c] (got ",
                    shape_str(Y), ")");
}

}  // namespace emms
