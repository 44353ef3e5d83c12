"""SFDA (Shao et al., "Not all models are equal: predicting model transferability in a self-challenging
Fisher space", ECCV 2022): regularized Fisher discriminant analysis, a self-challenging ConfMix of hard
samples towards the other classes' means, and the mean probability of the true class after a second FDA."""

from __future__ import annotations

import torch

from ._common import class_labels, class_means, features64


def _power_top_eig(A: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """The released code's estimate of A's largest eigenvalue: 3 double power steps from A's row sums."""
    x = A.sum(1)
    y = x
    for _ in range(iterations):
        y = A @ x
        y = y / torch.linalg.vector_norm(y)
        x = A @ y
        x = x / torch.linalg.vector_norm(x)
    return x @ A @ y


def _fda_probs(X: torch.Tensor, idx: torch.Tensor, C: int, shrinkage: float | None):
    """Class probabilities [N, C] of the regularized FDA classifier and the shrinkage used.

    Every generalized eigenvector of (S_b, S_w') is kept, so the classifier's weights means V V' equal
    means S_w'^-1 (V' S_w' V = I): S_b drops out and one Cholesky solve replaces the eigenproblem.
    """
    N, D = X.shape
    means, counts = class_means(X, idx, C)
    priors = counts / N
    centred = X - means[idx]
    # S_w = sum_c prior_c cov_c (1/n_c) = sum_i (x_i - m_{y_i})(...)' / N
    Sw = centred.T @ centred / N
    if shrinkage is None:
        shrinkage = float(torch.exp(-5 * _power_top_eig(Sw)))
    mu = float(Sw.diagonal().sum()) / D
    Sw_shrunk = (1 - shrinkage) * Sw + shrinkage * mu * torch.eye(D, dtype=X.dtype, device=X.device)
    L, info = torch.linalg.cholesky_ex(Sw_shrunk)
    if int(info) == 0:
        coef = torch.cholesky_solve(means.T, L).T  # [C, D]
    else:  # D > N - C with negligible shrinkage: singular scatter, use the pseudo-inverse (min-norm)
        coef = (torch.linalg.pinv(Sw_shrunk, hermitian=True) @ means.T).T
    intercept = -0.5 * (means * coef).sum(1) + torch.log(priors)
    probs = torch.softmax(X @ coef.T + intercept, dim=1)
    return probs, shrinkage, means


def sfda(features, labels) -> float:
    """SFDA score: the mean probability of the true class (in (0, 1]) after the two Fisher-space stages.
    Higher is better; comparable between models on the same target (not relative to the zoo). The caller's
    features are never modified (the released code mixes them in place).

    features ``[N, D]``, labels ``[N]`` integer classes (at least 2).
    """
    X = features64(features).clone()
    idx, C = class_labels(labels, X.shape[0], X.device, min_classes=2)
    probs, shrinkage, means = _fda_probs(X, idx, C, None)
    probs = torch.softmax(probs, dim=1)  # the released code softens once more before the mix
    others = (means.sum(0, keepdim=True) - means) / (C - 1)  # [C, D] mean of the other classes' means
    p_true = probs.gather(1, idx[:, None])  # [N, 1]
    mixed = p_true * X + (1 - p_true) * others[idx]
    probs2, _, _ = _fda_probs(mixed, idx, C, shrinkage)
    return float(probs2.gather(1, idx[:, None]).mean())
