// CUDA glue of emms::simplex_project: checks, device guard, current stream, dtype dispatch. Half and
// bfloat16 are computed in float32 (the kernel's arithmetic is float64 either way).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "emms/checks.h"
#include "emms/cuda_launch.h"

namespace emms {
namespace {

at::Tensor simplex_project_cuda(const at::Tensor& v) {  // [..., K] -> [..., K]
  check_simplex_input(v, "simplex_project");
  const c10::cuda::CUDAGuard guard(v.device());
  const bool low = v.scalar_type() == at::kHalf || v.scalar_type() == at::kBFloat16;
  const at::Tensor vc = (low ? v.to(at::kFloat) : v).contiguous();
  at::Tensor out = at::empty(vc.sizes(), vc.options());
  const int64_t K = vc.size(-1);
  const int64_t rows = K == 0 ? 0 : vc.numel() / K;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (vc.scalar_type() == at::kDouble) {
    C10_CUDA_CHECK(cuda::launch_simplex_project<double>(vc.const_data_ptr<double>(), out.mutable_data_ptr<double>(),
                                                         rows, K, stream));
  } else {
    C10_CUDA_CHECK(cuda::launch_simplex_project<float>(vc.const_data_ptr<float>(), out.mutable_data_ptr<float>(),
                                                        rows, K, stream));
  }
  return low ? out.to(v.scalar_type()) : out;
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CUDA, m) { m.impl("simplex_project", &simplex_project_cuda); }

}  // namespace emms
