// CPU backend of emms::cholesky_: LAPACK's potrf in place on each Gram of a batch. torch's cholesky_ex runs the
// same routine on a column-major copy and then zeroes the other triangle: at D = 2048 the copy and the
// zeroing cost 0.15 of the Gram's GEMM (docs/design.md §5). The potrf is the one torch links (libtorch_cpu
// exports its symbols: MKL on x86-64 builds); where a torch build exports none, the op falls back to
// cholesky_ex.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstdint>
#include <type_traits>

#include "emms/checks.h"
#include "emms/dispatch.h"

#if defined(__ELF__)
// Weak: resolved from libtorch_cpu when it exports them, null otherwise (no link or load error).
extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info) __attribute__((weak));
void spotrf_(const char* uplo, const int* n, float* a, const int* lda, int* info) __attribute__((weak));
}
#define EMMS_HAVE_LAPACK_SYMBOLS 1
#endif

namespace emms {
namespace {

template <typename scalar_t>
using Potrf = void (*)(const char*, const int*, scalar_t*, const int*, int*);

template <typename scalar_t>
Potrf<scalar_t> potrf() {
#ifdef EMMS_HAVE_LAPACK_SYMBOLS
  if constexpr (std::is_same_v<scalar_t, double>)
    return &dpotrf_;
  else
    return &spotrf_;
#else
  return nullptr;
#endif
}

// A row-major G read column-major (as LAPACK reads it) is G'. potrf with uplo 'U' on that view reads its
// upper triangle, i.e. G's lower triangle (the one cholesky_ex reads), and writes U with U'U = G' there:
// row-major, G's lower triangle then holds U' = L with L L' = G. The strict upper triangle is not touched.
at::Tensor cholesky_cpu(at::Tensor& G) {  // G [D, D] or [M, D, D] -> info [] or [M] int32
  check_cholesky_input(G, "cholesky_");
  const int64_t D = G.size(-1), M = G.dim() == 3 ? G.size(0) : 1;
  at::Tensor info = at::zeros({M}, G.options().dtype(at::kInt));
  bool done = D == 0;
  EMMS_DISPATCH_FLOAT_DOUBLE(G.scalar_type(), "cholesky_cpu", [&] {
    const Potrf<scalar_t> f = potrf<scalar_t>();
    if (done || f == nullptr) return;
    const char uplo = 'U';
    const int n = static_cast<int>(D);
    scalar_t* a = G.mutable_data_ptr<scalar_t>();
    int* out = info.mutable_data_ptr<int>();
    for (int64_t m = 0; m < M; ++m) f(&uplo, &n, a + m * D * D, &n, out + m);
    done = true;
  });
  if (!done) {  // no LAPACK symbols in this torch build: torch's own factorization, the same layout
    const at::Tensor G3 = G.view({M, D, D});
    auto [L, inf] = at::linalg_cholesky_ex(G3);
    G3.copy_(G3.triu(1) + L);
    info.copy_(inf);
  }
  return G.dim() == 3 ? info : info.squeeze(0);
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CPU, m) { m.impl("cholesky_", &cholesky_cpu); }

}  // namespace emms
