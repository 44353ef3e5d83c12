// CPU backend of emms::wlsr_simplex: models in parallel, each solved by the shared host-device routine
// in emms/wlsr.h in float64 whatever the input dtype (the problems are K x K, so precision is free).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "emms/prepare.h"
#include "emms/wlsr.h"

namespace emms {
namespace {

template <typename scalar_t>
void wlsr_kernel(const WlsrParams& p, const scalar_t* A, int64_t a_stride,  // [M or 1, K, K]
                 const scalar_t* B,                                         // [M, K, K]
                 scalar_t* t, scalar_t* objective, int64_t* iterations,     // [M, K], [M], [M]
                 int64_t M) {
  const int64_t KK = p.K * p.K;
  at::parallel_for(0, M, /*grain_size=*/std::max<int64_t>(1, 4096 / (KK + 1)), [&](int64_t begin, int64_t end) {
    std::vector<double> scratch(wlsr_model_scratch(p.K));
    for (int64_t m = begin; m < end; ++m)
      wlsr_solve_model(p, A, a_stride, B, t, objective, iterations, m, scratch.data());
  });
}

// A [K, K] or [M, K, K], B [M, K, K] -> t [M, K], objective [M], iterations [M] (int64).
std::tuple<at::Tensor, at::Tensor, at::Tensor> wlsr_simplex_cpu(const at::Tensor& A, const at::Tensor& B, int64_t mode,
                                                                int64_t max_iter, double tol) {
  const WlsrCall c = prepare_wlsr(A, B, mode, max_iter, tol, LowPrecision::kNative);
  EMMS_DISPATCH_FLOATING(c.dtype.compute(), "wlsr_simplex_cpu", [&] {
    wlsr_kernel<scalar_t>(c.params, c.A.const_data_ptr<scalar_t>(), c.a_stride, c.B.const_data_ptr<scalar_t>(),
                          c.t.mutable_data_ptr<scalar_t>(), c.objective.mutable_data_ptr<scalar_t>(),
                          c.iterations.mutable_data_ptr<int64_t>(), c.M);
  });
  return c.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CPU, m) { m.impl("wlsr_simplex", &wlsr_simplex_cpu); }

}  // namespace emms
