// CPU backend of emms::tridiagonal_solve: (T + s_k I) X_k = Y for a symmetric tridiagonal T and a list of
// shifts s_k, all at once (docs/design.md §3, gcv's ridge grid, and §5). Per shift, T + s_k I = L D L'
// (unit lower bidiagonal L, LAPACK's pttrf recurrence), then L y = Y, x = D^-1 y, L' x = ... (pttrs's). Each
// (shift, chunk of kColumns right-hand sides) is one task on one thread, computed in a fixed order: the bits
// do not depend on the thread count, and a grid of ridges needs no Python loop over SciPy calls (which hold
// the GIL) nor a stacked copy of their outputs.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "emms/checks.h"
#include "emms/dispatch.h"

namespace emms {
namespace {

constexpr int64_t kColumns = 64;  // right-hand sides per task: a row of them is one contiguous, vectorized loop

// Factor T + s I (diagonal d [n], off-diagonal e [n - 1]) into the pivots piv [n] and multipliers l [n - 1];
// returns 0, or the 1-based index of the first pivot that is not positive (pttrf's info).
template <typename scalar_t>
int32_t factor(const scalar_t* d, const scalar_t* e, scalar_t s, int64_t n, scalar_t* piv, scalar_t* l) {
  piv[0] = d[0] + s;
  if (!(piv[0] > scalar_t(0))) return 1;
  for (int64_t i = 1; i < n; ++i) {
    l[i - 1] = e[i - 1] / piv[i - 1];
    piv[i] = d[i] + s - l[i - 1] * e[i - 1];
    if (!(piv[i] > scalar_t(0))) return static_cast<int32_t>(i + 1);
  }
  return 0;
}

// Columns [c0, c1) of X [n, c] (holding Y) overwritten with (L D L')^-1 Y.
template <typename scalar_t>
void substitute(const scalar_t* piv, const scalar_t* l, int64_t n, int64_t c, int64_t c0, int64_t c1, scalar_t* X) {
  for (int64_t i = 1; i < n; ++i) {
    const scalar_t li = l[i - 1];
    scalar_t* row = X + i * c;
    const scalar_t* prev = row - c;
    for (int64_t j = c0; j < c1; ++j) row[j] -= li * prev[j];
  }
  {
    scalar_t* row = X + (n - 1) * c;
    for (int64_t j = c0; j < c1; ++j) row[j] /= piv[n - 1];
  }
  for (int64_t i = n - 2; i >= 0; --i) {
    const scalar_t li = l[i], pi = piv[i];
    scalar_t* row = X + i * c;
    const scalar_t* next = row + c;
    for (int64_t j = c0; j < c1; ++j) row[j] = row[j] / pi - li * next[j];
  }
}

std::tuple<at::Tensor, at::Tensor> tridiagonal_solve_cpu(const at::Tensor& d_in, const at::Tensor& e_in,
                                                         const at::Tensor& shifts_in, const at::Tensor& Y) {
  check_tridiagonal_solve_inputs(d_in, e_in, shifts_in, Y, "tridiagonal_solve");
  const at::Tensor d = d_in.contiguous(), e = e_in.contiguous(), shifts = shifts_in.contiguous();
  const int64_t n = d.size(0), c = Y.size(1), g = shifts.size(0);
  at::Tensor X = at::empty({g, n, c}, Y.options());
  at::Tensor info = at::zeros({g}, Y.options().dtype(at::kInt));
  if (g == 0) return {X, info};
  X.copy_(Y.unsqueeze(0).expand({g, n, c}));
  EMMS_DISPATCH_FLOAT_DOUBLE(d.scalar_type(), "tridiagonal_solve_cpu", [&] {
    const scalar_t* dp = d.const_data_ptr<scalar_t>();
    const scalar_t* ep = e.const_data_ptr<scalar_t>();
    const scalar_t* sp = shifts.const_data_ptr<scalar_t>();
    scalar_t* xp = X.mutable_data_ptr<scalar_t>();
    int32_t* ip = info.mutable_data_ptr<int32_t>();
    const int64_t chunks = std::max<int64_t>(1, (c + kColumns - 1) / kColumns);
    // The factorization is O(n): each task redoes its shift's, so that no task waits for another.
    at::parallel_for(0, g * chunks, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> piv(n), l(std::max<int64_t>(n - 1, 1));
      for (int64_t t = begin; t < end; ++t) {
        const int64_t k = t / chunks, c0 = (t % chunks) * kColumns, c1 = std::min(c, c0 + kColumns);
        const int32_t bad = factor(dp, ep, sp[k], n, piv.data(), l.data());
        scalar_t* Xk = xp + k * n * c;
        if (bad != 0) {  // not positive definite: no solution is returned for this shift
          if (c0 == 0) ip[k] = bad;
          for (int64_t i = 0; i < n; ++i)
            std::fill(Xk + i * c + c0, Xk + i * c + c1, std::numeric_limits<scalar_t>::quiet_NaN());
          continue;
        }
        if (c1 > c0) substitute(piv.data(), l.data(), n, c, c0, c1, Xk);
      }
    });
  });
  return {X, info};
}

}  // namespace

TORCH_LIBRARY_IMPL(emms, CPU, m) { m.impl("tridiagonal_solve", &tridiagonal_solve_cpu); }

}  // namespace emms
