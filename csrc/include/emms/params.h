#pragma once
// Plain-old-data parameters shared by the tensor glue and the raw-pointer kernels of every backend.
#include <cstdint>

namespace emms {

// The three solvers of emms::wlsr_simplex (design.md section 2). The integer values are the op's
// `mode` argument; emms_ext/ops.py maps the user-facing strings onto them.
enum WlsrMode : int {
  kExact = 0,        // min over the simplex of t'(A - B)t, solved to optimality (active set)
  kAlternating = 1,  // paper's Algorithm 1: W-step folded into b = B t, t-step a simplex QP
  kReference = 2,    // released code: one step, lambda = A^+ B t0, t1 = proj(lambda)
};

struct WlsrParams {
  int64_t K;          // number of foundation models (label embeddings)
  int mode;           // WlsrMode
  int max_iter;       // alternating: outer iterations at most
  double tol;         // alternating: stop when the relative decrease falls to tol or below
  double rel_cutoff;  // reference: eigenvalues of A below rel_cutoff * max eigenvalue count as zero
};

}  // namespace emms
