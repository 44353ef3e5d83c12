// CPU backend of emms::class_sums: (batch, class) pairs in parallel; each sums its segment of rows in
// float64 with a row-wise inner loop over D (contiguous, vectorizable).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "emms/checks.h"
#include "emms/segment.h"

namespace emms {
namespace {

template <typename scalar_t>
void class_sums_kernel(const scalar_t* x, const int64_t* order, const int64_t* offsets, scalar_t* out,
                       int64_t B, int64_t N, int64_t C, int64_t D) {  // x [B, N, D] -> out [B, C, D]
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
  check_class_sums_inputs(x, order, offsets, "class_sums");
  const at::Tensor xc = (x.dim() == 2 ? x.unsqueeze(0) : x).contiguous();
  const at::Tensor oc = order.contiguous(), fc = offsets.contiguous();
  const int64_t B = xc.size(0), N = xc.size(1), D = xc.size(2), C = fc.size(0) - 1;
  check_class_index_values(oc, fc, N, "class_sums");
  at::Tensor out = at::empty({B, C, D}, xc.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "class_sums_cpu", [&] {
    class_sums_kernel<scalar_t>(xc.const_data_ptr<scalar_t>(), oc.const_data_ptr<int64_t>(),
                                fc.const_data_ptr<int64_t>(), out.mutable_data_ptr<scalar_t>(), B, N, C, D);
  });
  return x.dim() == 2 ? out.squeeze(0) : out;
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CPU, m) { m.impl("class_sums", &class_sums_cpu); }

}  // namespace emms
