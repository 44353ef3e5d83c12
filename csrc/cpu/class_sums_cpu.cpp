// CPU backend of emms::class_sums: (batch, class) pairs in parallel; each sums its segment of rows in
// float64 with a row-wise inner loop over D (contiguous, vectorizable).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "emms/prepare.h"

namespace emms {
namespace {

template <typename scalar_t>
void class_sums_kernel(const scalar_t* x, const int64_t* order, const int64_t* offsets, scalar_t* out, int64_t B,
                       int64_t N, int64_t C, int64_t D) {  // x [B, N, D] -> out [B, C, D]
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(D);
    for (int64_t bc = begin; bc < end; ++bc) {
      const int64_t b = bc / C, c = bc % C;
      std::fill(acc.begin(), acc.end(), 0.0);
      const scalar_t* xb = x + b * N * D;
      for (int64_t i = offsets[c]; i < offsets[c + 1]; ++i) {
        const scalar_t* row = xb + order[i] * D;
        for (int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(row[d]);
      }
      scalar_t* o = out + (b * C + c) * D;
      for (int64_t d = 0; d < D; ++d) o[d] = static_cast<scalar_t>(acc[d]);
    }
  });
}

at::Tensor class_sums_cpu(const at::Tensor& x, const at::Tensor& order, const at::Tensor& offsets) {
  const ClassSumsCall c = prepare_class_sums(x, order, offsets, LowPrecision::kNative);
  EMMS_DISPATCH_FLOATING(c.dtype.compute(), "class_sums_cpu", [&] {
    class_sums_kernel<scalar_t>(c.x.const_data_ptr<scalar_t>(), c.order.const_data_ptr<int64_t>(),
                                c.offsets.const_data_ptr<int64_t>(), c.out.mutable_data_ptr<scalar_t>(), c.B, c.N, c.C,
                                c.D);
  });
  return c.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CPU, m) { m.impl("class_sums", &class_sums_cpu); }

}  // namespace emms
