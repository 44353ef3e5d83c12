// CPU backend of emms::simplex_project: rows of v [..., K] in parallel, each projected by the shared
// host-device routine in emms/simplex.h.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "emms/prepare.h"
#include "emms/simplex.h"

namespace emms {
namespace {

template <typename scalar_t>
void simplex_project_kernel(const scalar_t* v, scalar_t* out, int64_t rows, int64_t K) {  // [rows, K]
  at::parallel_for(0, rows, /*grain_size=*/std::max<int64_t>(1, 32768 / std::max<int64_t>(K, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t r = begin; r < end; ++r) simplex_project_row<double>(v + r * K, out + r * K, K);
                   });
}

at::Tensor simplex_project_cpu(const at::Tensor& v) {  // [..., K] -> [..., K]
  const SimplexCall c = prepare_simplex(v, LowPrecision::kNative);
  EMMS_DISPATCH_FLOATING(c.dtype.compute(), "simplex_project_cpu", [&] {
    simplex_project_kernel<scalar_t>(c.v.const_data_ptr<scalar_t>(), c.out.mutable_data_ptr<scalar_t>(), c.rows, c.K);
  });
  return c.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CPU, m) { m.impl("simplex_project", &simplex_project_cpu); }

}  // namespace emms
