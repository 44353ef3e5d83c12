"""SFDA (Shao et al., "Not all models are equal: predicting model transferability in a self-challenging
Fisher space", ECCV 2022): regularized Fisher discriminant analysis, a self-challenging ConfMix of hard
samples towards the other classes' means, and the mean probability of the true class after a second FDA."""

from __future__ import annotations

import torch

from ..common.warn import SaturationWarning, warn
from ._common import class_labels, class_means, features64, rank_cutoff

# A mean true-class probability within this of 1 is saturated: reported as exactly 1 (a tie between models).
SATURATION_TOL = 1e-9


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
    """Class probabilities [N, C] of the regularized FDA classifier on its own samples X [N, D], the shrinkage
    used and the class means [C, D].

    Every generalized eigenvector of (S_b, S_w') is kept, so the classifier's weights means V V' equal
    means S_w'^-1 (V' S_w' V = I): S_b drops out and one eigendecomposition of S_w' replaces the eigenproblem.

    Eigenvalues of S_w' at or below ``rank_cutoff`` (a singular within-class scatter, D > N - C, whose
    shrinkage is below rounding) have no computable inverse: their exact inverse is huge, so in the limit
    a class whose mean differs from x along those directions gets probability 0. That limit is what is
    computed: the Fisher discriminant on the kept directions, among the classes nearest to x along the
    dropped ones (to within the rounding of those directions). On the samples themselves the limit gives
    the true class probability 1 whenever the class means differ along the dropped directions.
    """
    N, D = X.shape
    X = X - X.mean(0)  # the discriminant is shift invariant; centring keeps large offsets out of the rounding
    means, counts = class_means(X, idx, C)
    priors = counts / N
    centred = X - means[idx]
    # S_w = sum_c prior_c cov_c (1/n_c) = sum_i (x_i - m_{y_i})(...)' / N
    Sw = centred.T @ centred / N
    if shrinkage is None:
        shrinkage = float(torch.exp(-5 * _power_top_eig(Sw)))
    mu = float(Sw.diagonal().sum()) / D
    Sw_shrunk = (1 - shrinkage) * Sw + shrinkage * mu * torch.eye(D, dtype=X.dtype, device=X.device)
    e, V = torch.linalg.eigh(Sw_shrunk)
    keep = e > float(e[-1].clamp_min(0)) * rank_cutoff(N, D)
    W = V[:, keep] / e[keep].sqrt()  # whitening of the kept directions: W W' = S_w'^+
    Xw, Mw = X @ W, means @ W
    logits = Xw @ Mw.T - 0.5 * (Mw * Mw).sum(1) + torch.log(priors)
    if not bool(keep.all()):
        Vn = V[:, ~keep]
        d2 = torch.cdist(X @ Vn, means @ Vn) ** 2  # [N, C] squared distance along the dropped directions
        # a sample's distance to its own class mean there is rounding: sum_i d2[i, y_i] = N tr(Vn' S_w Vn)
        tol = 4 * N * float(e[~keep].abs().sum()) + float(e[-1].clamp_min(0)) * rank_cutoff(N, D)
        logits = logits.masked_fill(d2 > d2.min(1, keepdim=True).values + tol, float("-inf"))
    probs = torch.softmax(logits, dim=1)
    return probs, shrinkage, means


def sfda(features, labels) -> float:
    """SFDA score: the mean probability of the true class (in (0, 1]) after the two Fisher-space stages.
    Higher is better; comparable between models on the same target (not relative to the zoo). The caller's
    features are never modified (the released code mixes them in place).

    Saturation: with few samples per class (D > N - C) the Fisher classifier separates the samples it was
    fitted on and the score reaches 1 for every such model. A score within ``SATURATION_TOL`` of 1 is
    returned as exactly 1.0 with a ``SaturationWarning`` naming N, D and C: such models tie.

    features ``[N, D]``, labels ``[N]`` integer classes (at least 2).
    """
    X = features64(features).clone()
    N, D = X.shape
    idx, C = class_labels(labels, N, X.device, min_classes=2)
    probs, shrinkage, means = _fda_probs(X, idx, C, None)
    probs = torch.softmax(probs, dim=1)  # the released code softens once more before the mix
    others = (means.sum(0, keepdim=True) - means) / (C - 1)  # [C, D] mean of the other classes' means
    p_true = probs.gather(1, idx[:, None])  # [N, 1]
    mixed = p_true * (X - X.mean(0)) + (1 - p_true) * others[idx]  # in the centred frame of `means`
    probs2, _, _ = _fda_probs(mixed, idx, C, shrinkage)
    p2 = probs2.gather(1, idx[:, None])
    score = float(p2.mean())
    if 1 - score <= SATURATION_TOL:
        warn(
            f"sfda saturates: the true class gets probability 1 (to within {SATURATION_TOL:g}) for "
            f"{int((p2 >= 1 - SATURATION_TOL).sum())} of N = {N} samples with D = {D} features and C = {C} classes"
            f"{' (D > N - C: the within-class scatter is singular)' if D > N - C else ''}; such models all score 1 "
            "and tie. Use more samples per class, or a score that holds samples out (emms_gcv, emms_loo).",
            SaturationWarning,
        )
        return 1.0
    return score
