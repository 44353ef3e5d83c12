// The extension module emms_ext._C: build facts for Python (pybind11) and the one place where every
// emms::* operator schema is declared (the op ABI, docs/design.md §5). Backends (cpu/, cuda/) only add
// implementations with m.impl.
#include <pybind11/pybind11.h>
#include <torch/library.h>

#ifndef EMMS_VERSION
#define EMMS_VERSION "0+unknown"
#endif
#ifndef EMMS_TORCH_VERSION
#define EMMS_TORCH_VERSION "unknown"
#endif
#ifndef EMMS_CUDA_ARCHS
#define EMMS_CUDA_ARCHS ""
#endif
#ifndef EMMS_COMPILER
#define EMMS_COMPILER "unknown"
#endif

TORCH_LIBRARY(emms, m) {
  // v [..., K] -> [..., K]: Euclidean projection of every row onto the probability simplex.
  m.def("simplex_project(Tensor v) -> Tensor");
  // A [K, K] or [M, K, K], B [M, K, K] -> t [M, K], objective [M], iterations [M] (int64):
  // min over t in the simplex of the EMMS objective per model; mode 0 exact, 1 alternating, 2 reference.
  m.def("wlsr_simplex(Tensor A, Tensor B, int mode, int max_iter, float tol) -> (Tensor, Tensor, Tensor)");
  // x [B, N, D] (or [N, D]), order [N] int64 (samples sorted by class), offsets [C + 1] int64 ->
  // [B, C, D] (or [C, D]): per-class sums of the rows of x, accumulated in float64, in a fixed order.
  m.def("class_sums(Tensor x, Tensor order, Tensor offsets) -> Tensor");
  // sigma [k] (eigenvalues of F'F), proj [T, k] (targets projected on F's left singular vectors), ynorm2 [T]
  // (|y|^2 per target) -> evidence [T] (LogME, per sample), alpha [T], beta [T], iterations [T] (int64):
  // LogME's per-target fixed point for all T targets of one model; N samples, D feature width.
  m.def("logme_evidence(Tensor sigma, Tensor proj, Tensor ynorm2, int N, int D, int max_iter, float tol, "
        "float eps) -> (Tensor, Tensor, Tensor, Tensor)");
  // G [D, D] or [M, D, D] (CPU; float32 / float64; contiguous; symmetric, its lower triangle is read) ->
  // info [] or [M] int32 (0, or LAPACK's potrf info: the order of the first non-positive leading minor).
  // In place: G's lower triangle becomes the factor L (G = L L'); the strict upper triangle is not touched.
  // The one op that writes its input.
  m.def("cholesky_(Tensor(a!) G) -> Tensor");
  // L [D, D] or [M, D, D] (CPU; float32 / float64; contiguous; lower triangle read: cholesky_'s output),
  // Y [D, c] or [M, D, c] -> X of Y's shape: L^-1 Y (half) or (L L')^-1 Y, the same bits for any thread count.
  m.def("cholesky_solve(Tensor L, Tensor Y, bool half) -> Tensor");
  // d [D], e [D - 1] (CPU; float32 / float64: a symmetric tridiagonal T), shifts [g], Y [D, c] -> X [g, D, c],
  // info [g] int32: X[k] = (T + shifts[k] I)^-1 Y, info[k] 0 or (T + shifts[k] I not positive definite) the
  // 1-based index of the first non-positive pivot, X[k] then NaN. The same bits for any thread count.
  m.def("tridiagonal_solve(Tensor d, Tensor e, Tensor shifts, Tensor Y) -> (Tensor, Tensor)");
}

namespace {

// emms_ext._C.build_info(): the facts fixed at build time, as a dict (its docstring is at m.def below).
pybind11::dict build_info() {
  pybind11::dict d;
  d["version"] = EMMS_VERSION;
  d["torch_version"] = EMMS_TORCH_VERSION;
#ifdef EMMS_WITH_CUDA
  d["cuda"] = true;
#else
  d["cuda"] = false;
#endif
  d["cuda_archs"] = EMMS_CUDA_ARCHS;
  d["compiler"] = EMMS_COMPILER;
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "emms_ext compiled core: build facts; the operators live in torch.ops.emms";
  m.def(
      "build_info", &build_info,
      "Facts fixed at build time: package version, torch version built against, CUDA on/off and arch list, compiler.");
}
