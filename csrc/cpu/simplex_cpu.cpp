// CPU backend of emms::simplex_project: rows of v [..., K] in parallel, each projected by the shared
// host-device routine in emms/simplex.h.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "emms/checks.h"
#include "emms/simplex.h"

namespace emms {
namespace {

template <typename scalar_t>
void simplex_project_kernel(const scalar_t* v, scalar_t* out, int64_t rows, int64_t K) {  // [rows, K]
  at::parallel_for(0, rows, /*grain_size=*/std::max<int64_t>(1, 32768 / std::max<int64_t>(K, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t r = begin; r < end; ++r)
                       simplex_project_row<double>(v + r * K, out + r * K, K);
                   });
}

at::Tensor simplex_project_cpu(const at::Tensor& v) {  // [..., K] -> [..., K]
  check_simplex_input(v, "simplex_project");
  const at::Tensor vc = v.contiguous();
  at::Tensor out = at::empty(vc.sizes(), vc.options());
  const int64_t K = vc.size(-1);
  const int64_t rows = K == 0 ? 0 : vc.numel() / K;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, vc.scalar_type(), "simplex_project_cpu", [&] {
    simplex_project_kernel<scalar_t>(vc.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), rows, K);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CPU, m) { m.impl("simplex_project", &simplex_project_cpu); }

}  // namespace emms
