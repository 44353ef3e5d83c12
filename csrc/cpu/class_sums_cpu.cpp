// CPU backend of emms::class_sums, float64 accumulation in a fixed order. Two kernels, the same bits:
// - row scan, for a batch of at least one model per thread when order is class_order's (every row once,
//   ascending inside its class): each (model, column block) reads the rows in memory order and adds each
//   into its class's accumulator. Sequential reads: 1.7-2.4x faster than the gather on zoo batches
//   (docs/design.md §5). Inside a class the rows are added in the same ascending order as the gather.
// - gather, otherwise (one large model: its column blocks would leave threads idle): (model, class) pairs
//   in parallel, each summing its segment of rows.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "emms/prepare.h"

namespace emms {
namespace {

template <typename scalar_t>
void class_sums_gather(const scalar_t* x, const int64_t* order, const int64_t* offsets, scalar_t* out, int64_t B,
                       int64_t N, int64_t C, int64_t D) {  // x [B, N, D] -> out [B, C, D]
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> acc_v(D);
    double* acc = acc_v.data();
    for (int64_t bc = begin; bc < end; ++bc) {
      const int64_t b = bc / C, c = bc % C;
      std::fill_n(acc, D, 0.0);
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

// Column blocks keep each thread's C x block float64 accumulators within 2 MB.
constexpr int64_t kAccumulatorDoubles = 262144;

template <typename scalar_t>
void class_sums_scan(const scalar_t* x, const int64_t* cls, scalar_t* out, int64_t B, int64_t N, int64_t C,
                     int64_t D) {  // cls [N]: class of every row
  const int64_t block = std::min(D, std::max<int64_t>(8, kAccumulatorDoubles / std::max<int64_t>(C, 1)));
  const int64_t nblocks = (D + block - 1) / block;
  at::parallel_for(0, B * nblocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> acc_v(C * block);
    double* acc = acc_v.data();
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / nblocks, d0 = (item % nblocks) * block, w = std::min(block, D - d0);
      std::fill_n(acc, C * block, 0.0);
      const scalar_t* xb = x + b * N * D + d0;
      for (int64_t i = 0; i < N; ++i) {
        const scalar_t* row = xb + i * D;
        double* a = acc + cls[i] * block;
        for (int64_t d = 0; d < w; ++d) a[d] += static_cast<double>(row[d]);
      }
      for (int64_t c = 0; c < C; ++c) {
        scalar_t* o = out + (b * C + c) * D + d0;
        for (int64_t d = 0; d < w; ++d) o[d] = static_cast<scalar_t>(acc[c * block + d]);
      }
    }
  });
}

// The class of every row when order lists each row once, ascending inside each class (class_order's
// output); empty otherwise.
std::vector<int64_t> row_classes(const int64_t* order, const int64_t* offsets, int64_t N, int64_t C) {
  std::vector<int64_t> cls(N, -1);
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t i = offsets[c]; i < offsets[c + 1]; ++i) {
      const int64_t row = order[i];
      if (cls[row] != -1 || (i > offsets[c] && order[i - 1] >= row)) return {};
      cls[row] = c;
    }
  }
  return cls;
}

at::Tensor class_sums_cpu(const at::Tensor& x, const at::Tensor& order, const at::Tensor& offsets) {
  const ClassSumsCall c = prepare_class_sums(x, order, offsets, LowPrecision::kNative);
  const int64_t* ord = c.order.const_data_ptr<int64_t>();
  const int64_t* off = c.offsets.const_data_ptr<int64_t>();
  // Values checked by prepare_class_sums; the row map is only worth building for the scan.
  const std::vector<int64_t> cls =
      c.B >= at::get_num_threads() ? row_classes(ord, off, c.N, c.C) : std::vector<int64_t>{};
  EMMS_DISPATCH_FLOATING(c.dtype.compute(), "class_sums_cpu", [&] {
    const scalar_t* xp = c.x.const_data_ptr<scalar_t>();
    scalar_t* op = c.out.mutable_data_ptr<scalar_t>();
    if (c.B >= at::get_num_threads() && (!cls.empty() || c.N == 0))
      class_sums_scan<scalar_t>(xp, cls.data(), op, c.B, c.N, c.C, c.D);
    else
      class_sums_gather<scalar_t>(xp, ord, off, op, c.B, c.N, c.C, c.D);
  });
  return c.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CPU, m) { m.impl("class_sums", &class_sums_cpu); }

}  // namespace emms
