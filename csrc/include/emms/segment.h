#pragma once
// Per-class sums of feature rows (the vocabulary-label shortcut of docs/design.md §2: F = X'Y is the
// per-class sum of X, so no one-hot GEMM is needed). Samples are pre-sorted by class once per task
// (`order`, with class c owning order[offsets[c] : offsets[c+1]]), so each sum runs over a contiguous
// segment in a fixed order: deterministic on every backend, unlike atomics or index_add.
#include "emms/macros.h"

namespace emms {

// sum over i in [begin, end) of x[order[i] * ld + col], accumulated in acc_t.
template <typename acc_t, typename T>
EMMS_HOST_DEVICE acc_t segment_sum(const T* x, int64_t ld, const int64_t* order, int64_t begin, int64_t end,
                                   int64_t col) {
  acc_t s = 0;
  for (int64_t i = begin; i < end; ++i) s += static_cast<acc_t>(x[order[i] * ld + col]);
  return s;
}

}  // namespace emms
