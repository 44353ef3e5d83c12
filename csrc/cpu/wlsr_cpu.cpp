// CPU backend of emms::wlsr_simplex: models in parallel, each solved by the shared host-device routine
// in emms/wlsr.h in float64 whatever the input dtype (the problems are K x K, so precision is free).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "emms/checks.h"
#include "emms/wlsr.h"

namespace emms {
namespace {

template <typename scalar_t>
void wlsr_kernel(const WlsrParams& p, const scalar_t* A, int64_t a_stride,  // [M or 1, K, K]
                 const scalar_t* B,                                          // [M, K, K]
                 scalar_t* t, scalar_t* objective, int64_t* iterations,      // [M, K], [M], [M]
                 int64_t M) {
  const int64_t KK = p.K * p.K;
  at::parallel_for(0, M, /*grain_size=*/std::max<int64_t>(1, 4096 / (KK + 1)), [&](int64_t begin, int64_t end) {
    std::vector<double> scratch(wlsr_model_scratch(p.K));
    for (int64_t m = begin; m < end; ++m) wlsr_solve_model(p, A, a_stride, B, t, objective, iterations, m, scratch.data());
  });
}

// A [K, K] or [M, K, K], B [M, K, K] -> t [M, K], objective [M], iterations [M] (int64).
std::tuple<at::Tensor, at::Tensor, at::Tensor> wlsr_simplex_cpu(const at::Tensor& A, const at::Tensor& B,
                                                                int64_t mode, int64_t max_iter, double tol) {
  check_wlsr_inputs(A, B, mode, max_iter, tol, "wlsr_simplex");
  const at::Tensor Ac = A.contiguous(), Bc = B.contiguous();
  const int64_t M = Bc.size(0), K = Bc.size(1);
  at::Tensor t = at::empty({M, K}, Bc.options());
  at::Tensor objective = at::empty({M}, Bc.options());
  at::Tensor iterations = at::empty({M}, Bc.options().dtype(at::kLong));
  const int64_t a_stride = Ac.dim() == 3 ? K * K : 0;  // a shared A is read by every model
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, Bc.scalar_type(), "wlsr_simplex_cpu", [&] {
    const WlsrParams p = make_wlsr_params(K, mode, max_iter, tol, Bc.scalar_type());
    wlsr_kernel<scalar_t>(p, Ac.const_data_ptr<scalar_t>(), a_stride, Bc.const_data_ptr<scalar_t>(),
                          t.mutable_data_ptr<scalar_t>(), objective.mutable_data_ptr<scalar_t>(),
                          iterations.mutable_data_ptr<int64_t>(), M);
  });
  return {t, objective, iterations};
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CPU, m) { m.impl("wlsr_simplex", &wlsr_simplex_cpu); }

}  // namespace emms
