"""H-score (Bao et al., ICIP 2019) and its shrinkage-regularized form (Ibrahim et al., "Newer is not always
better: rethinking transferability metrics, their peculiarities, stability and performance", 2022)."""

from __future__ import annotations

import torch

from ..core.linalg import ordered_sum
from ._common import class_labels, class_means, features64, principal_directions


def _class_energy(F: torch.Tensor, labels) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(s [r], e [r], C) for features F [N, D]: the kept singular values of the centred features
    (``principal_directions``), per direction u_k ``e_k = ||P u_k||^2 = sum_c n_c mean_c(u_k)^2``, its
    energy in the span of the class indicators (P projects onto class means), and the number of classes."""
    idx, C = class_labels(labels, F.shape[0], F.device)
    Fc = F - F.mean(0)
    Fc = Fc - Fc.mean(0)  # again: a large mean leaves a residual one, a direction that is not data
    U, s = principal_directions(Fc)
    means, counts = class_means(U, idx, C)
    return s, counts @ (means * means), C


def hscore(features, labels) -> float:
    """H-score: ``tr(cov(f)^+ cov(E[f | y]))`` (covariances with 1/(N-1)). Higher is better (at most C - 1);
    comparable between models on the same target (not relative to the zoo).

    Computed as ``sum_k ||P u_k||^2`` over the left singular vectors u_k of the centred features (P: the
    projection onto class means), which equals the trace above with the pseudo-inverse's cutoff at
    ``max(N, D) * eps64`` times the largest eigenvalue of cov(f) (``rank_cutoff``): directions below it are
    rounding, and inverting them made the value noise that changed with the thread count. On full-rank
    covariances this is the plain formula. When the centred features have rank N - 1 (D >= N - 1, the usual
    case then) the kept directions span every centred vector, so the H-score is exactly C - 1 (returned as
    such, not as its rounding) for every model: it saturates and cannot rank such models.

    features ``[N, D]``, labels ``[N]`` integer classes.
    """
    F = features64(features)
    s, energy, C = _class_energy(F, labels)
    if s.shape[0] >= F.shape[0] - 1:  # P restricted to the centred vectors: trace C - 1
        return float(C - 1)
    return float(energy.sum())


def ledoit_wolf(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Ledoit-Wolf shrunk covariance of x [N, D] (centred here, 1/N normalised) -> (cov [D, D], shrinkage)."""
    N, D = x.shape
    xc = x - x.mean(0)
    emp = xc.T @ xc / N
    mu = float(emp.diagonal().sum()) / D
    x2 = xc * xc
    beta_ = float(ordered_sum(x2.T @ x2))
    delta_ = float(ordered_sum(emp * emp))  # = sum((X'X)^2) / N^2
    beta = (beta_ / N - delta_) / (D * N)
    delta = (delta_ - 2 * mu * float(emp.diagonal().sum()) + D * mu * mu) / D
    beta = min(beta, delta)
    shrink = 0.0 if beta == 0 else beta / delta
    cov = (1 - shrink) * emp
    cov = cov + shrink * mu * torch.eye(D, dtype=x.dtype, device=x.device)
    return cov, shrink


def hscore_regularized(features, labels) -> float:
    """Shrinkage-regularized H-score (Ibrahim et al. 2022): ``tr(S_a^+ (1 - a) cov(E[f | y]))`` with ``S_a``
    the Ledoit-Wolf covariance of the features and ``a`` its shrinkage. Stays meaningful when D is close
    to or above N, where the plain H-score saturates. Higher is better; comparable between models on the
    same target (not relative to the zoo).

    ``S_a = (1 - a) V diag(s^2 / N) V' + a mu I`` shares the singular directions of the centred features, so
    the trace is ``(1 - a) / (N - 1) sum_k s_k^2 ||P u_k||^2 / ((1 - a) s_k^2 / N + a mu)`` over the kept
    directions (``rank_cutoff``, as for ``hscore``): no D x D inverse, and no rounding noise inverted when
    the shrinkage is negligible.

    features ``[N, D]``, labels ``[N]`` integer classes.
    """
    F = features64(features)
    N, D = F.shape
    _, a = ledoit_wolf(F)
    s, energy, _ = _class_energy(F, labels)
    Fc = F - F.mean(0)
    mu = float(ordered_sum(Fc * Fc)) / (N * D)  # tr(emp) / D
    s2 = s * s
    return float((1 - a) / (N - 1) * (s2 * energy / ((1 - a) * s2 / N + a * mu)).sum())
