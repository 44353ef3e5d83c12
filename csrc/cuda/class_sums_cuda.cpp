// CUDA glue of emms::class_sums: the shared prepare step (shapes, dtypes and devices only: the index
// values are checked on the device, no host copy, no sync; half / bfloat16 through float32), device guard,
// current stream, the kernels' workspace, launch.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "emms/cuda_launch.h"
#include "emms/prepare.h"

namespace emms {
namespace {

at::Tensor class_sums_cuda(const at::Tensor& x, const at::Tensor& order, const at::Tensor& offsets) {
  const ClassSumsCall c = prepare_class_sums(x, order, offsets, LowPrecision::kUpcast, IndexValues::kOnDevice);
  const c10::cuda::CUDAGuard guard(c.x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const cuda::ClassSumsPlan plan = cuda::class_sums_plan(c.B, c.N, c.C, c.D);
  const at::Tensor index_work = at::empty({plan.index_elems}, c.offsets.options());
  const at::Tensor partial = at::empty({plan.partial_elems}, c.x.options().dtype(at::kDouble));
  EMMS_DISPATCH_FLOAT_DOUBLE(c.dtype.compute(), "class_sums_cuda", [&] {
    C10_CUDA_CHECK(cuda::launch_class_sums<scalar_t>(
        c.x.const_data_ptr<scalar_t>(), c.order.const_data_ptr<int64_t>(), c.offsets.const_data_ptr<int64_t>(),
        c.out.mutable_data_ptr<scalar_t>(), c.B, c.N, c.C, c.D, plan, index_work.mutable_data_ptr<int64_t>(),
        partial.mutable_data_ptr<double>(), stream));
  });
  return c.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CUDA, m) { m.impl("class_sums", &class_sums_cuda); }

}  // namespace emms
