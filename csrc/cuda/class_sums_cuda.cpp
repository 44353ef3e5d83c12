// CUDA glue of emms::class_sums: checks (the small index tensors are validated on the host, one sync),
// device guard, current stream, dtype dispatch (half / bfloat16 through float32).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "emms/checks.h"
#include "emms/cuda_launch.h"

namespace emms {
namespace {

at::Tensor class_sums_cuda(const at::Tensor& x, const at::Tensor& order, const at::Tensor& offsets) {
  check_class_sums_inputs(x, order, offsets, "class_sums");
  const c10::cuda::CUDAGuard guard(x.device());
  const bool low = x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16;
  const at::Tensor x3 = x.dim() == 2 ? x.unsqueeze(0) : x;
  const at::Tensor xc = (low ? x3.to(at::kFloat) : x3).contiguous();
  const at::Tensor oc = order.contiguous(), fc = offsets.contiguous();
  const int64_t B = xc.size(0), N = xc.size(1), D = xc.size(2), C = fc.size(0) - 1;
  check_class_index_values(oc.cpu(), fc.cpu(), N, "class_sums");
  at::Tensor out = at::empty({B, C, D}, xc.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (xc.scalar_type() == at::kDouble) {
    C10_CUDA_CHECK(cuda::launch_class_sums<double>(xc.const_data_ptr<double>(), oc.const_data_ptr<int64_t>(),
                                                   fc.const_data_ptr<int64_t>(), out.mutable_data_ptr<double>(), B, N,
                                                   C, D, stream));
  } else {
    C10_CUDA_CHECK(cuda::launch_class_sums<float>(xc.const_data_ptr<float>(), oc.const_data_ptr<int64_t>(),
                                                  fc.const_data_ptr<int64_t>(), out.mutable_data_ptr<float>(), B, N, C,
                                                  D, stream));
  }
  if (low) out = out.to(x.scalar_type());
  return x.dim() == 2 ? out.squeeze(0) : out;
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CUDA, m) { m.impl("class_sums", &class_sums_cuda); }

}  // namespace emms
