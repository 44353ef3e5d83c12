#pragma once
// The prepare step of every op, shared by its CPU and CUDA glue, which then differ only in the launch:
// the argument checks (emms/checks.h), the inputs as the kernels read them (contiguous, in the compute
// dtype), the parameters, and the outputs allocated on the inputs' device. Each op has a *Call struct
// holding all of it, a prepare_* function filling it, and Call::result() turning the outputs into what
// the op returns (docs/design.md §5). Host-only and torch-dependent.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <tuple>

#include "emms/checks.h"
#include "emms/dispatch.h"
#include "emms/macros.h"
#include "emms/params.h"

namespace emms {

// emms::simplex_project: v [..., K] -> [..., K].
struct SimplexCall {
  ComputeDtype dtype;
  at::Tensor v;    // [..., K] contiguous
  at::Tensor out;  // like v
  int64_t rows;    // rows of K (0 when K = 0)
  int64_t K;

  at::Tensor result() const { return dtype.output(out); }
};

inline SimplexCall prepare_simplex(const at::Tensor& v, LowPrecision low) {
  check_simplex_input(v, "simplex_project");
  const ComputeDtype dtype(v.scalar_type(), low);
  const at::Tensor vc = dtype.input(v);
  const int64_t K = vc.size(-1), rows = K == 0 ? 0 : vc.numel() / K;
  return SimplexCall{.dtype = dtype, .v = vc, .out = at::empty(vc.sizes(), vc.options()), .rows = rows, .K = K};
}

// Solver parameters for the input dtype. Reference mode mirrors lstsq in the released code, which drops
// singular values below eps*max(rows, cols) of the flattened labels; A holds their squares, formed in the
// input precision, hence K * eps of that precision on A's eigenvalues.
inline WlsrParams make_wlsr_params(int64_t K, int64_t mode, int64_t max_iter, double tol, at::ScalarType dtype) {
  const double eps = dtype == at::kDouble ? eps_of<double>::value : eps_of<float>::value;
  return WlsrParams{K, static_cast<int>(mode), static_cast<int>(max_iter), tol, static_cast<double>(K) * eps};
}

// emms::wlsr_simplex: A [K, K] or [M, K, K], B [M, K, K] -> t [M, K], objective [M], iterations [M] (int64).
struct WlsrCall {
  ComputeDtype dtype;
  at::Tensor A, B;   // contiguous
  int64_t M;         // models
  int64_t a_stride;  // K * K, or 0 for a shared A read by every model
  WlsrParams params;
  at::Tensor t, objective, iterations;  // [M, K], [M] in the compute dtype, [M] int64

  std::tuple<at::Tensor, at::Tensor, at::Tensor> result() const {
    return {dtype.output(t), dtype.output(objective), iterations};
  }
};

inline WlsrCall prepare_wlsr(const at::Tensor& A, const at::Tensor& B, int64_t mode, int64_t max_iter, double tol,
                             LowPrecision low) {
  check_wlsr_inputs(A, B, mode, max_iter, tol, "wlsr_simplex");
  const ComputeDtype dtype(B.scalar_type(), low);
  const at::Tensor Ac = dtype.input(A), Bc = dtype.input(B);
  const int64_t M = Bc.size(0), K = Bc.size(1);
  const at::TensorOptions o = Bc.options();
  return WlsrCall{.dtype = dtype,
                  .A = Ac,
                  .B = Bc,
                  .M = M,
                  .a_stride = Ac.dim() == 3 ? K * K : 0,
                  .params = make_wlsr_params(K, mode, max_iter, tol, dtype.original()),
                  .t = at::empty({M, K}, o),
                  .objective = at::empty({M}, o),
                  .iterations = at::empty({M}, o.dtype(at::kLong))};
}

// Where class_sums checks its index values: on the host (CPU tensors: a clear error) or inside the device
// kernels (no host copy and no sync; invalid values give NaN sums, csrc/cuda/class_sums_kernel.cu).
enum class IndexValues { kOnHost, kOnDevice };

// emms::class_sums: x [B, N, D] or [N, D], order [N], offsets [C + 1] (int64) -> [B, C, D] or [C, D].
struct ClassSumsCall {
  ComputeDtype dtype;
  bool batched;               // x was [B, N, D]; else [N, D], seen as [1, N, D]
  at::Tensor x;               // [B, N, D] contiguous
  at::Tensor order, offsets;  // contiguous int64
  int64_t B, N, C, D;
  at::Tensor out;  // [B, C, D] in the compute dtype

  at::Tensor result() const {
    const at::Tensor o = dtype.output(out);
    return batched ? o : o.squeeze(0);
  }
};

inline ClassSumsCall prepare_class_sums(const at::Tensor& x, const at::Tensor& order, const at::Tensor& offsets,
                                        LowPrecision low, IndexValues index_values = IndexValues::kOnHost) {
  check_class_sums_inputs(x, order, offsets, "class_sums");
  const ComputeDtype dtype(x.scalar_type(), low);
  const bool batched = x.dim() == 3;
  const at::Tensor xc = dtype.input(batched ? x : x.unsqueeze(0));
  const at::Tensor oc = order.contiguous(), fc = offsets.contiguous();
  const int64_t B = xc.size(0), N = xc.size(1), D = xc.size(2), C = fc.size(0) - 1;
  if (index_values == IndexValues::kOnHost) check_class_index_values(oc.cpu(), fc.cpu(), N, "class_sums");
  return ClassSumsCall{.dtype = dtype,
                       .batched = batched,
                       .x = xc,
                       .order = oc,
                       .offsets = fc,
                       .B = B,
                       .N = N,
                       .C = C,
                       .D = D,
                       .out = at::empty({B, C, D}, xc.options())};
}

// emms::logme_evidence: sigma [k], proj [T, k], ynorm2 [T] -> evidence, alpha, beta [T], iterations [T]
// (int64). Only float32 / float64 are taken (checked), so there is nothing to upcast.
struct LogmeCall {
  at::Tensor sigma, proj, ynorm2;  // contiguous [k], [T, k], [T]
  int64_t T;                       // targets
  LogmeParams params;
  at::Tensor evidence, alpha, beta, iterations;  // [T] x 3 in sigma's dtype, [T] int64

  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> result() const {
    return {evidence, alpha, beta, iterations};
  }
};

inline LogmeCall prepare_logme(const at::Tensor& sigma, const at::Tensor& proj, const at::Tensor& ynorm2, int64_t N,
                               int64_t D, int64_t max_iter, double tol, double eps) {
  check_logme_inputs(sigma, proj, ynorm2, N, D, max_iter, tol, eps, "logme_evidence");
  const at::Tensor sc = sigma.contiguous(), pc = proj.contiguous(), yc = ynorm2.contiguous();
  const int64_t k = sc.size(0), T = pc.size(0);
  const at::TensorOptions o = sc.options();
  return LogmeCall{.sigma = sc,
                   .proj = pc,
                   .ynorm2 = yc,
                   .T = T,
                   .params = LogmeParams{N, D, k, static_cast<int>(max_iter), tol, eps},
                   .evidence = at::empty({T}, o),
                   .alpha = at::empty({T}, o),
                   .beta = at::empty({T}, o),
                   .iterations = at::empty({T}, o.dtype(at::kLong))};
}

}  // namespace emms
