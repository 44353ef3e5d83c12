"""H-score (Bao et al., ICIP 2019) and its shrinkage-regularized form (Ibrahim et al., "Newer is not always
better: rethinking transferability metrics, their peculiarities, stability and performance", 2022)."""

from __future__ import annotations

import torch

from ._common import class_labels, class_means, features64, pinv_sym


def _between(F: torch.Tensor, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """(centred features [N, D], centred class means weighted so that cov(g) = M' M: [C, D])."""
    N = F.shape[0]
    idx, C = class_labels(labels, N, F.device)
    Fc = F - F.mean(0)
    means, counts = class_means(Fc, idx, C)
    # cov(g) with g_i = mean of sample i's class: sum_c n_c m_c m_c' / (N - 1); g has mean 0 as Fc does.
    return Fc, means * (counts / (N - 1)).sqrt()[:, None]


def hscore(features, labels) -> float:
    """H-score: ``tr(cov(f)^+ cov(E[f | y]))`` (covariances with 1/(N-1), pseudo-inverse with numpy's relative
    cutoff 1e-15). Higher is better (at most C - 1); comparable between models on the same target.

    features ``[N, D]``, labels ``[N]`` integer classes.
    """
    F = features64(features)
    Fc, M = _between(F, labels)
    cov_f = Fc.T @ Fc / (F.shape[0] - 1)
    return float((M @ pinv_sym(cov_f, 1e-15) * M).sum())


def ledoit_wolf(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Ledoit-Wolf shrunk covariance of x [N, D] (centred here, 1/N normalised) -> (cov [D, D], shrinkage)."""
    N, D = x.shape
    xc = x - x.mean(0)
    emp = xc.T @ xc / N
    mu = float(emp.diagonal().sum()) / D
    x2 = xc * xc
    beta_ = float((x2.T @ x2).sum())
    delta_ = float((emp * emp).sum())  # = sum((X'X)^2) / N^2
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
    to or above N, where the plain H-score is unstable. Higher is better; comparable between models on the
    same target (not relative to the zoo).

    features ``[N, D]``, labels ``[N]`` integer classes.
    """
    F = features64(features)
    _, M = _between(F, labels)
    cov, a = ledoit_wolf(F)
    return float((1 - a) * (M @ pinv_sym(cov, 1e-15) * M).sum())
