#pragma once
// The dtype plumbing of the tensor glue (docs/design.md §5, Dtypes): which dtype a call computes in, and
// the one branch from a runtime dtype to a kernel template. Host-only and torch-dependent: the .cu kernels
// never include it.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

namespace emms {

// How a backend's kernels take float16 / bfloat16. The CPU kernels are instantiated for them and read them
// directly (no copy; they accumulate in float64 anyway). The torch-free CUDA kernels exist for float and
// double only, so the CUDA glue computes half / bfloat16 in float32 and casts the outputs back.
enum class LowPrecision { kNative, kUpcast };

// The dtype one call computes in, next to the caller's, to which its outputs return.
class ComputeDtype {
 public:
  ComputeDtype(at::ScalarType original, LowPrecision low) : original_(original), compute_(compute_for(original, low)) {}

  at::ScalarType original() const { return original_; }
  at::ScalarType compute() const { return compute_; }

  // An input of the original dtype as the kernel reads it: in the compute dtype, contiguous.
  at::Tensor input(const at::Tensor& t) const { return (upcast() ? t.to(compute_) : t).contiguous(); }
  // An output computed in the compute dtype, back in the original one.
  at::Tensor output(const at::Tensor& t) const { return upcast() ? t.to(original_) : t; }

 private:
  static at::ScalarType compute_for(at::ScalarType original, LowPrecision low) {
    const bool half = original == at::kHalf || original == at::kBFloat16;
    return low == LowPrecision::kUpcast && half ? at::kFloat : original;
  }
  bool upcast() const { return compute_ != original_; }

  at::ScalarType original_;
  at::ScalarType compute_;
};

}  // namespace emms

// The launch branch of the glue: runs the lambda (the trailing argument) with scalar_t = float or double,
// and raises for any other dtype. These are the dtypes the CUDA kernels are instantiated for (all that
// ComputeDtype leaves under LowPrecision::kUpcast) and the only ones logme_evidence takes.
#define EMMS_DISPATCH_FLOAT_DOUBLE(dtype, name, ...) AT_DISPATCH_FLOATING_TYPES(dtype, name, __VA_ARGS__)

// The same with scalar_t = at::Half and at::BFloat16 as well: the CPU kernels (LowPrecision::kNative).
#define EMMS_DISPATCH_FLOATING(dtype, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, name, __VA_ARGS__)
