#pragma once
// Every plain-old-data parameter struct that crosses from the tensor glue to the per-problem math and the
// raw-pointer kernels of every backend (docs/design.md §5). No torch type, no CUDA type: the .cu kernels
// and the host glue include it alike.
#include <cstdint>

namespace emms {

// The three solvers of emms::wlsr_simplex (docs/design.md §2). The integer values are the op's `mode`
// argument (docs/design.md §5); emms_ext/ops/operators.py maps the user-facing strings onto them.
enum WlsrMode : int {
  kExact = 0,        // min over the simplex of t'(A - B)t, solved to optimality (active set)
  kAlternating = 1,  // paper's Algorithm 1: W-step folded into b = B t, t-step a simplex QP
  kReference = 2,    // released code: one step, lambda = A^+ B t0, t1 = proj(lambda)
};

// emms::wlsr_simplex, one problem (emms/wlsr.h); built by make_wlsr_params (emms/prepare.h).
struct WlsrParams {
  int64_t K;          // number of foundation models (label embeddings)
  int mode;           // WlsrMode
  int max_iter;       // alternating: outer iterations at most
  double tol;         // alternating: stop when the relative decrease falls to tol or below
  double rel_cutoff;  // reference: eigenvalues of A below rel_cutoff * max eigenvalue count as zero
};

// emms::logme_evidence, one model's targets (emms/logme.h); built by prepare_logme (emms/prepare.h).
struct LogmeParams {
  int64_t N;     // samples
  int64_t D;     // feature width (>= k): the D - k zero eigenvalues of F'F still enter log|A|
  int64_t k;     // eigenvalues given (rank kept)
  int max_iter;  // fixed-point iterations at most (the released code: 11)
  double tol;    // stop when |t_new - t| / t <= tol (the released code: 1e-3)
  double eps;    // added to |m|^2 and |y - Fm|^2 in the updates (the released code: 1e-5)
};

}  // namespace emms
