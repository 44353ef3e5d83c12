// CUDA glue of emms::simplex_project: the shared prepare step (half / bfloat16 in float32; the kernel's
// arithmetic is float64 either way), device guard, current stream, launch.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "emms/cuda_launch.h"
#include "emms/prepare.h"

namespace emms {
namespace {

at::Tensor simplex_project_cuda(const at::Tensor& v) {  // [..., K] -> [..., K]
  const SimplexCall c = prepare_simplex(v, LowPrecision::kUpcast);
  const c10::cuda::CUDAGuard guard(c.v.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  EMMS_DISPATCH_FLOAT_DOUBLE(c.dtype.compute(), "simplex_project_cuda", [&] {
    C10_CUDA_CHECK(cuda::launch_simplex_project<scalar_t>(c.v.const_data_ptr<scalar_t>(),
                                                          c.out.mutable_data_ptr<scalar_t>(), c.rows, c.K, stream));
  });
  return c.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CUDA, m) { m.impl("simplex_project", &simplex_project_cuda); }

}  // namespace emms
