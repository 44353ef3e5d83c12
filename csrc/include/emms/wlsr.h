#pragma once
// One EMMS weighted-least-squares problem in its K x K form (docs/design.md §2):
//
//   min over t in the simplex of  t'(A - B)t,   A_kl = <Z_k, Z_l>,  B_kl = <Z_k, P Z_l>,
//
// solved three ways (WlsrMode). Everything here works on one problem held in caller-provided scratch,
// so the CPU backend runs it in a parallel loop and the CUDA backend in one thread / warp per model. The
// scratch pointer type P is T* (CPU) or an interleaved Strided<T> (CUDA, emms/strided.h).
#include <math.h>

#include "emms/macros.h"
#include "emms/params.h"
#include "emms/simplex.h"
#include "emms/small_linalg.h"

namespace emms {

// Whatever the arithmetic did (indefinite H, overflow, cancellation against huge b), a solver must hand
// back a point of the simplex: keeps t if it is one (true), else replaces it by the vertex e_j (false).
template <typename P>
EMMS_HOST_DEVICE bool on_simplex_or_vertex(P t, int64_t K, int64_t j) {
  using T = scratch_elem_t<P>;
  T sum = 0;
  bool valid = true;
  for (int64_t i = 0; i < K; ++i) {
    valid = valid && is_finite_d(static_cast<double>(t[i])) && t[i] >= T(0);
    sum += t[i];
  }
  if (valid && fabs(sum - T(1)) <= T(1e-6)) return true;
  for (int64_t i = 0; i < K; ++i) t[i] = T(0);
  t[j] = T(1);
  return false;
}

// Scratch needed by simplex_qp for K unknowns.
EMMS_HOST_DEVICE int64_t simplex_qp_workspace(int64_t K) { return K * K + 5 * K; }

// Minimizes phi(t) = t'Ht - 2 b't over the probability simplex, H symmetric positive semi-definite
// [K, K] row-major, b [K] (nullptr means 0). Primal active-set method (Nocedal & Wright 16.5): it ends
// at a point satisfying the KKT conditions, i.e. the exact optimum up to rounding, in a finite number of
// steps (about K in practice). A relative jitter K*eps*max(H_ii) keeps the equality-constrained
// subproblems solvable when H is singular (identical embedders, perfect fits); it is retried larger if a
// pivot still fails. Returns the number of steps, or -1 (with t still on the simplex) if it did not
// converge, which only an indefinite H can cause.
template <typename P>
EMMS_HOST_DEVICE int simplex_qp(P H, P b, int64_t K, P t, P work) {
  using T = scratch_elem_t<P>;
  P chol = work;       // [K, K] Cholesky of H_SS + jitter I
  P u = chol + K * K;  // [K] compact H_SS^-1 b_S, then the compact minimizer
  P v = u + K;         // [K] compact H_SS^-1 1
  P x = v + K;         // [K] minimizer on the free set, zero elsewhere
  P g = x + K;         // [K] half-gradient H t - b
  P fr = g + K;        // [K] 1 where t_i is free (the complement of the active bounds)
  const T eps = T(eps_of<T>::value);

  // On the simplex, b and b + c 1 define the same problem (1't = 1): working with b - mean(b) keeps the
  // subproblem solutions u + nu v free of cancellation when b is large against H.
  T bshift = 0;
  if (b) {
    for (int64_t i = 0; i < K; ++i) bshift += b[i];
    bshift /= T(K);
  }
  T hmax = 0, bmax = 0;
  for (int64_t i = 0; i < K; ++i) {
    hmax = fmax(hmax, fabs(H[i * K + i]));
    if (b) bmax = fmax(bmax, fabs(b[i] - bshift));
  }
  const T jitter0 = hmax > T(0) ? T(K) * eps * hmax : T(1);
  const T kkt_tol = T(64) * T(K) * eps * (hmax + bmax > T(0) ? hmax + bmax : T(1));

  // Start at the best vertex: a feasible point whose only free coordinate is the cheapest one.
  int64_t j0 = 0;
  T best = H[0] - T(2) * (b ? b[0] - bshift : T(0));
  for (int64_t j = 1; j < K; ++j) {
    const T phi = H[j * K + j] - T(2) * (b ? b[j] - bshift : T(0));
    if (phi < best) {
      best = phi;
      j0 = j;
    }
  }
  for (int64_t i = 0; i < K; ++i) {
    t[i] = T(0);
    fr[i] = T(0);
  }
  t[j0] = T(1);
  fr[j0] = T(1);

  const int max_steps = 8 * static_cast<int>(K) + 32;
  int step = 0;
  for (; step < max_steps; ++step) {
    // Equality-constrained minimizer on the free set S: H_SS x = b_S + nu 1 with 1'x = 1, i.e.
    // x = u + nu v, u = H_SS^-1 b_S, v = H_SS^-1 1, nu = (1 - 1'u) / 1'v.
    int64_t s = 0;
    bool solved = false;
    T jitter = jitter0;
    for (int attempt = 0; attempt < 12 && !solved; ++attempt, jitter *= T(100)) {
      s = 0;
      for (int64_t i = 0; i < K; ++i) {
        if (fr[i] == T(0)) continue;
        int64_t c = 0;
        for (int64_t j = 0; j < K; ++j) {
          if (fr[j] == T(0)) continue;
          chol[s * K + c] = H[i * K + j] + (i == j ? jitter : T(0));
          ++c;
        }
        u[s] = b ? b[i] - bshift : T(0);
        v[s] = T(1);
        ++s;
      }
      solved = cholesky(chol, s, K);
    }
    if (!solved) break;
    cholesky_solve(chol, s, K, u);
    cholesky_solve(chol, s, K, v);
    T su = 0, sv = 0;
    for (int64_t a = 0; a < s; ++a) {
      su += u[a];
      sv += v[a];
    }
    const T nu = (T(1) - su) / sv;
    bool feasible = true;
    for (int64_t i = 0, a = 0; i < K; ++i) {
      x[i] = fr[i] != T(0) ? u[a] + nu * v[a] : T(0);
      if (fr[i] != T(0)) {
        ++a;
        feasible = feasible && x[i] >= T(0);
      }
    }

    if (feasible) {
      // Optimal on S; optimal overall iff no bound multiplier g_j - mu (j not in S) is negative.
      for (int64_t i = 0; i < K; ++i) t[i] = x[i];
      symv(H, t, g, K);
      T mu = 0;
      for (int64_t i = 0; i < K; ++i) {
        if (b) g[i] -= b[i] - bshift;
        if (fr[i] != T(0)) mu += g[i];
      }
      mu /= T(s);
      int64_t enter = -1;
      T most_negative = -kkt_tol;
      for (int64_t j = 0; j < K; ++j) {
        if (fr[j] == T(0) && g[j] - mu < most_negative) {
          most_negative = g[j] - mu;
          enter = j;
        }
      }
      if (enter < 0) return on_simplex_or_vertex(t, K, j0) ? step + 1 : -1;
      fr[enter] = T(1);
    } else {
      // Step towards x until the first free coordinate hits zero; that bound becomes active.
      T alpha = T(1);
      int64_t blocking = -1;
      for (int64_t i = 0; i < K; ++i) {
        if (fr[i] != T(0) && x[i] < T(0)) {
          const T a = t[i] / (t[i] - x[i]);
          if (a < alpha) {
            alpha = a;
            blocking = i;
          }
        }
      }
      for (int64_t i = 0; i < K; ++i) {
        if (fr[i] == T(0)) continue;
        t[i] += alpha * (x[i] - t[i]);
        if (i == blocking || t[i] <= T(0)) {
          t[i] = T(0);
          fr[i] = T(0);
        }
      }
    }
  }
  // Only an indefinite H (not an EMMS problem: A - B and A are Gram-like) or overflow gets here.
  on_simplex_or_vertex(t, K, j0);
  return -1;
}

EMMS_HOST_DEVICE int64_t wlsr_workspace(int64_t K) { return 2 * K * K + simplex_qp_workspace(K) + 2 * K; }

// Everything one model's solve touches when the backend stages A, B and t in float64 next to the
// scratch (both backends do): A [K, K], B [K, K], t [K], then wlsr_workspace(K).
EMMS_HOST_DEVICE int64_t wlsr_model_scratch(int64_t K) { return 2 * K * K + K + wlsr_workspace(K); }

// Solves one problem. A, B: [K, K] row-major in the accumulation type; t: [K] out. Writes the objective
// (unnormalized: the caller divides by N*L) and returns the iterations used: active-set steps (exact),
// accepted alternations (alternating) or 1 (reference). Non-finite A or B give NaN t and objective.
template <typename P>
EMMS_HOST_DEVICE int wlsr_solve(const WlsrParams& p, P A, P B, P t, scratch_elem_t<P>* objective, P work) {
  using T = scratch_elem_t<P>;
  const int64_t K = p.K;
  for (int64_t i = 0; i < K * K; ++i) {
    if (!is_finite_d(static_cast<double>(A[i])) || !is_finite_d(static_cast<double>(B[i]))) {
      for (int64_t k = 0; k < K; ++k) t[k] = static_cast<T>(NAN);
      *objective = static_cast<T>(NAN);
      return 0;
    }
  }
  P H = work;                           // [K, K]
  P V = H + K * K;                      // [K, K] eigenvectors (reference mode)
  P qp = V + K * K;                     // simplex_qp scratch
  P tp = qp + simplex_qp_workspace(K);  // [K]
  P bt = tp + K;                        // [K]
  for (int64_t i = 0; i < K * K; ++i) H[i] = A[i] - B[i];

  if (p.mode == kExact) {
    const int steps = simplex_qp(H, P{}, K, t, qp);
    *objective = bilinear(H, t, t, K);
    return steps;
  }

  if (p.mode == kAlternating) {
    // Block coordinate descent on f(W, t) = ||XW - Zt||^2: the W-step gives XW = P Z t_prev, so the
    // t-step minimizes t'At - 2 (B t_prev)'t over the simplex; after it the next W-step leaves the
    // profile t'(A - B)t. Each half-step cannot increase f, so neither can the reported objective.
    for (int64_t k = 0; k < K; ++k) t[k] = T(1) / T(K);
    T f_prev = bilinear(H, t, t, K);
    int accepted = 0;
    for (int it = 0; it < p.max_iter; ++it) {
      symv(B, t, bt, K);
      if (simplex_qp(A, bt, K, tp, qp) < 0) break;
      const T f = bilinear(H, tp, tp, K);
      if (!(f <= f_prev)) break;  // only rounding can do this: keep the better iterate
      for (int64_t k = 0; k < K; ++k) t[k] = tp[k];
      ++accepted;
      const T decrease = f_prev - f;
      f_prev = f;
      if (decrease <= T(p.tol) * fabs(f)) break;
    }
    *objective = f_prev;
    return accepted;
  }

  // kReference: the released code's single alternation. Its lstsq over the (N*L) x K matrix of flattened
  // label embeddings has normal equations A lambda = B t0, solved here by the pseudo-inverse so that
  // identical embedders (singular A) give the same minimum-norm lambda as lstsq.
  for (int64_t k = 0; k < K; ++k) tp[k] = T(1) / T(K);
  symv(B, tp, bt, K);
  for (int64_t i = 0; i < K * K; ++i) H[i] = A[i];
  jacobi_eigh(H, V, K);
  T emax = 0;
  for (int64_t i = 0; i < K; ++i) emax = fmax(emax, H[i * K + i]);
  for (int64_t k = 0; k < K; ++k) t[k] = T(0);
  for (int64_t i = 0; i < K; ++i) {
    const T e = H[i * K + i];
    if (!(e > T(p.rel_cutoff) * emax) || !(e > T(0))) continue;
    T c = 0;
    for (int64_t k = 0; k < K; ++k) c += V[k * K + i] * bt[k];
    c /= e;
    for (int64_t k = 0; k < K; ++k) t[k] += c * V[k * K + i];
  }
  simplex_project_row<T>(scratch_base(t), scratch_base(t), K, scratch_stride(t), scratch_stride(t));
  // f(W1, t1) = ||P Z t0 - Z t1||^2 = t0'B t0 - 2 t1'B t0 + t1'A t1 (P is an orthogonal projector).
  *objective = bilinear(B, tp, tp, K) - T(2) * bilinear(B, t, tp, K) + bilinear(A, t, t, K);
  return 1;
}

// Model m of a batch, as both backends run it: stage A_m, B_m (any input dtype) in float64 scratch of
// wlsr_model_scratch(K) doubles (double* or Strided<double>), solve, store t [M, K], objective [M] and
// iterations [M].
template <typename scalar_t, typename P>
EMMS_HOST_DEVICE void wlsr_solve_model(const WlsrParams& p, const scalar_t* A, int64_t a_stride, const scalar_t* B,
                                       scalar_t* t, scalar_t* objective, int64_t* iterations, int64_t m, P scratch) {
  const int64_t K = p.K, KK = K * K;
  P a = scratch;
  P b = a + KK;
  P tt = b + KK;
  for (int64_t i = 0; i < KK; ++i) {
    a[i] = static_cast<double>(A[m * a_stride + i]);
    b[i] = static_cast<double>(B[m * KK + i]);
  }
  double f = 0;
  iterations[m] = wlsr_solve(p, a, b, tt, &f, tt + K);
  objective[m] = static_cast<scalar_t>(f);
  for (int64_t k = 0; k < K; ++k) t[m * K + k] = static_cast<scalar_t>(tt[k]);
}

}  // namespace emms
