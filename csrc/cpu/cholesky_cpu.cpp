// CPU backend of emms::cholesky_ and emms::cholesky_solve: a tiled Cholesky factorization in place on each
// Gram of a batch and the triangular solves with its factor, with the same bits whatever the thread count
// (docs/design.md §5). torch's cholesky_ex runs LAPACK's potrf on a column-major copy and then zeroes a
// triangle (0.15 of the Gram's GEMM at D = 2048), and MKL's threaded potrf and TRSM round differently with 1
// and 2 threads at widths off their blocks (scores then differ in their last bits). Here the matrix is cut
// into fixed tiles of kTile columns and the right-hand sides into fixed chunks; every tile or chunk
// operation is one single-threaded LAPACK / BLAS call (potrf on a diagonal tile, TRSM on a panel tile, GEMM
// on a row of trailing tiles, TRSM on a chunk of right-hand sides), and the threads share out whole
// operations, or whole models of a batch. Which thread runs an operation then changes nothing in its
// result. The routines are the ones torch links (libtorch_cpu exports their symbols: MKL on x86-64 builds);
// where a torch build exports none, the ops fall back to torch's (thread-dependent) routines.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "emms/checks.h"
#include "emms/dispatch.h"

#if defined(__ELF__)
// Weak: resolved from libtorch_cpu when it exports them, null otherwise (no link or load error).
extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info) __attribute__((weak));
void spotrf_(const char* uplo, const int* n, float* a, const int* lda, int* info) __attribute__((weak));
void dgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c, const int* ldc)
    __attribute__((weak));
void dtrsm_(const char* side, const char* uplo, const char* ta, const char* diag, const int* m, const int* n,
            const double* alpha, const double* a, const int* lda, double* b, const int* ldb) __attribute__((weak));
void strsm_(const char* side, const char* uplo, const char* ta, const char* diag, const int* m, const int* n,
            const float* alpha, const float* a, const int* lda, float* b, const int* ldb) __attribute__((weak));
// MKL's per-thread thread count, Fortran interface (the one name both torch builds export for it: their C
// name is an alias of the same code, which reads its argument through a pointer). Returns the previous
// count; 0 = the global setting.
int mkl_set_num_threads_local_(const int* n) __attribute__((weak));
}
#define EMMS_HAVE_BLAS_SYMBOLS 1
#endif

namespace emms {
namespace {

// Tile width: wide enough that the single-threaded GEMMs run near a core's peak, narrow enough that the
// sequential diagonal potrf stays small and a D = 768 Gram gives several threads work at every step (192
// measured best among 128-384 at D = 2048 and 768; it depends on nothing but this constant).
constexpr int kTile = 192;

template <typename scalar_t>
struct Lapack {
  using Potrf = void (*)(const char*, const int*, scalar_t*, const int*, int*);
  using Gemm = void (*)(const char*, const char*, const int*, const int*, const int*, const scalar_t*, const scalar_t*,
                        const int*, const scalar_t*, const int*, const scalar_t*, scalar_t*, const int*);
  using Trsm = void (*)(const char*, const char*, const char*, const char*, const int*, const int*, const scalar_t*,
                        const scalar_t*, const int*, scalar_t*, const int*);
  Potrf potrf = nullptr;
  Gemm gemm = nullptr;
  Trsm trsm = nullptr;
  Lapack() {
#ifdef EMMS_HAVE_BLAS_SYMBOLS
    if constexpr (std::is_same_v<scalar_t, double>)
      potrf = &dpotrf_, gemm = &dgemm_, trsm = &dtrsm_;
    else
      potrf = &spotrf_, gemm = &sgemm_, trsm = &strsm_;
#endif
  }
  bool ok() const { return potrf != nullptr && gemm != nullptr && trsm != nullptr; }
};

// The BLAS single-threaded on this thread while in scope: a tile operation must not split itself across
// threads in a way that depends on how many there are. (Without MKL's per-thread setting, e.g. an OpenBLAS
// build, a BLAS called inside at::parallel_for's region runs sequentially anyway.)
struct SequentialBlas {
  int before = -1;
  SequentialBlas() {
#ifdef EMMS_HAVE_BLAS_SYMBOLS
    const int one = 1;
    if (&mkl_set_num_threads_local_ != nullptr) before = mkl_set_num_threads_local_(&one);
#endif
  }
  ~SequentialBlas() {
#ifdef EMMS_HAVE_BLAS_SYMBOLS
    if (before >= 0) mkl_set_num_threads_local_(&before);
#endif
  }
};

// Runs f(t) for t in [0, n): in order, or (`parallel`) with every thread taking the next task from a shared
// counter until none is left, so uneven tasks (listed heaviest first) balance. Which thread runs a task
// changes nothing in its result.
template <typename F>
void for_tasks(int64_t n, bool parallel, const F& f) {
  if (!parallel || n <= 1 || at::get_num_threads() == 1) {
    const SequentialBlas seq;
    for (int64_t t = 0; t < n; ++t) f(t);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(n, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    const SequentialBlas seq;
    for (int64_t t = next++; t < n; t = next++) f(t);
  });
}

// One n x n Gram at `a`. A row-major G read column-major (as LAPACK reads it) is G' = G; in that view
// a(i, j) = a[i + j n] and the factorization computes U (U'U = G) in the upper triangle, i.e. row-major G's
// lower triangle ends up holding U' = L with L L' = G. The strict upper triangle of G (the view's strict lower
// one) is never written. Right-looking over tiles: factor diagonal tile k, solve the tiles right of it, update
// the trailing rows of tiles. Returns 0 or the 1-based order of the first leading minor found not positive
// definite.
template <typename scalar_t>
int factor_one(const Lapack<scalar_t>& lp, scalar_t* a, int n, bool parallel) {
  const auto at = [&](int i, int j) { return a + i + static_cast<int64_t>(j) * n; };
  const int nt = (n + kTile - 1) / kTile;
  const auto width = [&](int t) { return std::min(kTile, n - t * kTile); };
  const scalar_t one = 1, minus_one = -1, zero = 0;
  for (int k = 0; k < nt; ++k) {
    const int k0 = k * kTile, kb = width(k);
    int info = 0;
    {
      const SequentialBlas seq;
      lp.potrf("U", &kb, at(k0, k0), &n, &info);
    }
    if (info != 0) return k0 + info;
    // Panel: U_kk' X = A(k, j) for each tile j right of the diagonal, solved as X' U_kk = A(k, j)' on a
    // transposed copy: MKL's right-side TRSM runs 2.2x its left-side one at these shapes (36 vs 16 GFLOP/s
    // on one core, kb = 192), which made the panels 40% of the factorization.
    for_tasks(nt - k - 1, parallel, [&](int64_t t) {
      const int j = k + 1 + static_cast<int>(t), jb = width(j);
      scalar_t* p = at(k0, j * kTile);
      std::vector<scalar_t> s(static_cast<size_t>(jb) * kb);  // s(c, r) = p(r, c), jb x kb column-major
      for (int c = 0; c < jb; ++c)
        for (int r = 0; r < kb; ++r) s[c + static_cast<size_t>(r) * jb] = p[r + static_cast<int64_t>(c) * n];
      lp.trsm("R", "U", "N", "N", &jb, &kb, &one, at(k0, k0), &n, s.data(), &jb);
      for (int c = 0; c < jb; ++c)
        for (int r = 0; r < kb; ++r) p[r + static_cast<int64_t>(c) * n] = s[c + static_cast<size_t>(r) * jb];
    });
    // Trailing update A(i, j) -= A(k, i)' A(k, j) of the upper triangle, one row of tiles i per task (the
    // longest first): one wide GEMM right of the diagonal tile, and the diagonal tile through a scratch
    // product, because its strict lower part (G's strict upper triangle) must stay.
    for_tasks(nt - k - 1, parallel, [&](int64_t t) {
      const int i = k + 1 + static_cast<int>(t), ib = width(i), i0 = i * kTile, c0 = i0 + ib, rest = n - c0;
      if (rest > 0)
        lp.gemm("T", "N", &ib, &rest, &kb, &minus_one, at(k0, i0), &n, at(k0, c0), &n, &one, at(i0, c0), &n);
      std::vector<scalar_t> s(static_cast<size_t>(ib) * ib);
      lp.gemm("T", "N", &ib, &ib, &kb, &one, at(k0, i0), &n, at(k0, i0), &n, &zero, s.data(), &ib);
      for (int c = 0; c < ib; ++c) {
        scalar_t* col = at(i0, i0 + c);
        for (int r = 0; r <= c; ++r) col[r] -= s[r + static_cast<size_t>(c) * ib];
      }
    });
  }
  return 0;
}

at::Tensor cholesky_cpu(at::Tensor& G) {  // G [D, D] or [M, D, D] -> info [] or [M] int32
  check_cholesky_input(G, "cholesky_");
  const int64_t D = G.size(-1), M = G.dim() == 3 ? G.size(0) : 1;
  at::Tensor info = at::zeros({M}, G.options().dtype(at::kInt));
  bool done = D == 0 || M == 0;
  EMMS_DISPATCH_FLOAT_DOUBLE(G.scalar_type(), "cholesky_cpu", [&] {
    const Lapack<scalar_t> lp;
    if (done || !lp.ok()) return;
    scalar_t* a = G.mutable_data_ptr<scalar_t>();
    int* out = info.mutable_data_ptr<int>();
    const int n = static_cast<int>(D);
    // Whole models across threads when there are enough of them, else the tiles of each model: the same
    // tile operations in the same order per model either way.
    const bool across_models = M >= at::get_num_threads();
    for_tasks(across_models ? M : 0, true, [&](int64_t m) { out[m] = factor_one(lp, a + m * D * D, n, false); });
    if (!across_models)
      for (int64_t m = 0; m < M; ++m) out[m] = factor_one(lp, a + m * D * D, n, true);
    done = true;
  });
  if (!done) {  // no BLAS symbols in this torch build: torch's own factorization, the same layout
    const at::Tensor G3 = G.view({M, D, D});
    auto [L, inf] = at::linalg_cholesky_ex(G3);
    G3.copy_(G3.triu(1) + L);
    info.copy_(inf);
  }
  return G.dim() == 3 ? info : info.squeeze(0);
}

// Right-hand sides per task and the tiles a solve walks over the factor: fixed, so the work splits the same
// way for any thread count (256 x 384 measured best among 128-512 x 192-384 at D = 768 and 2048: wide enough
// GEMMs, and a few chunks to share out).
constexpr int64_t kRhsChunk = 256;
constexpr int kSolveTile = 384;

// One chunk of `rows` right-hand sides, read column-major as B [rows, n] with leading dimension ld (the
// columns of a row-major Y [n, c] are the rows of its column-major view). With U = L' (L's lower triangle
// read column-major), L X = Y is X' U = Y': forward over the tiles of U, a TRSM on the diagonal tile, then
// the columns right of it updated by one GEMM per tile (the tasks); L' X2 = X is X2' U' = X', backward the
// same way. The tiles depend on n only, so the result is the same whether the tile updates are spread over
// threads (`parallel`, for a single chunk) or not (chunks already spread).
template <typename scalar_t>
void solve_chunk(const Lapack<scalar_t>& lp, const scalar_t* u, int n, scalar_t* b, int ld, int rows, bool half,
                 bool parallel) {
  const auto U = [&](int i, int j) { return u + i + static_cast<int64_t>(j) * n; };
  const auto B = [&](int j) { return b + static_cast<int64_t>(j) * ld; };
  const int nt = (n + kSolveTile - 1) / kSolveTile;
  const auto width = [&](int t) { return std::min(kSolveTile, n - t * kSolveTile); };
  const scalar_t one = 1, minus_one = -1;
  // Leading tiles of B that are exactly zero stay zero (U is finite): skipped, which changes no bit and
  // makes L^-1 from the identity cost D^3/3 instead of D^3.
  int first = 0;
  for (bool zero = true; zero && first < nt; first += zero) {
    for (int j = first * kSolveTile; zero && j < first * kSolveTile + width(first); ++j)
      for (int r = 0; zero && r < rows; ++r) zero = B(j)[r] == scalar_t(0);
  }
  for (int k = first; k < nt; ++k) {  // X' U = Y'
    const int k0 = k * kSolveTile, kb = width(k);
    {
      const SequentialBlas seq;
      lp.trsm("R", "U", "N", "N", &rows, &kb, &one, U(k0, k0), &n, B(k0), &ld);
    }
    for_tasks(nt - k - 1, parallel, [&](int64_t t) {
      const int j = k + 1 + static_cast<int>(t), j0 = j * kSolveTile, jb = width(j);
      lp.gemm("N", "N", &rows, &jb, &kb, &minus_one, B(k0), &ld, U(k0, j0), &n, &one, B(j0), &ld);
    });
  }
  if (half) return;
  for (int k = nt - 1; k >= 0; --k) {  // X2' U' = X'
    const int k0 = k * kSolveTile, kb = width(k);
    {
      const SequentialBlas seq;
      lp.trsm("R", "U", "T", "N", &rows, &kb, &one, U(k0, k0), &n, B(k0), &ld);
    }
    for_tasks(k, parallel, [&](int64_t j) {
      const int j0 = static_cast<int>(j) * kSolveTile, jb = width(static_cast<int>(j));
      lp.gemm("N", "T", &rows, &jb, &kb, &minus_one, B(k0), &ld, U(j0, k0), &n, &one, B(j0), &ld);
    });
  }
}

at::Tensor cholesky_solve_cpu(const at::Tensor& L, const at::Tensor& Y, bool half) {
  check_cholesky_solve_inputs(L, Y, "cholesky_solve");
  at::Tensor X = Y.clone(at::MemoryFormat::Contiguous);
  const int64_t D = L.size(-1), c = Y.size(-1), M = L.dim() == 3 ? L.size(0) : 1;
  if (D == 0 || c == 0 || M == 0) return X;
  bool done = false;
  EMMS_DISPATCH_FLOAT_DOUBLE(L.scalar_type(), "cholesky_solve_cpu", [&] {
    const Lapack<scalar_t> lp;
    if (!lp.ok()) return;
    const scalar_t* l = L.const_data_ptr<scalar_t>();
    scalar_t* x = X.mutable_data_ptr<scalar_t>();
    const int n = static_cast<int>(D), ld = static_cast<int>(c);
    const int64_t chunks = (c + kRhsChunk - 1) / kRhsChunk;
    const auto solve = [&](int64_t t, bool parallel) {
      const int64_t m = t / chunks, r0 = (t % chunks) * kRhsChunk;
      const int rows = static_cast<int>(std::min(kRhsChunk, c - r0));
      solve_chunk(lp, l + m * D * D, n, x + m * D * c + r0, ld, rows, half, parallel);
    };
    // Chunks across threads when there are enough of them, else each chunk's tile updates: the same
    // operations per chunk either way.
    const bool across_chunks = M * chunks >= at::get_num_threads();
    for_tasks(across_chunks ? M * chunks : 0, true, [&](int64_t t) { solve(t, false); });
    if (!across_chunks)
      for (int64_t t = 0; t < M * chunks; ++t) solve(t, true);
    done = true;
  });
  if (!done) {  // no BLAS symbols in this torch build: torch's solves on the lower triangle
    const at::Tensor L3 = L.dim() == 3 ? L : L.unsqueeze(0), X3 = X.dim() == 3 ? X : X.unsqueeze(0);
    X3.copy_(half ? at::linalg_solve_triangular(L3, X3, /*upper=*/false) : at::cholesky_solve(X3, L3.tril()));
  }
  return X;
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CPU, m) {
  m.impl("cholesky_", &cholesky_cpu);
  m.impl("cholesky_solve", &cholesky_solve_cpu);
}

}  // namespace emms
