"""SFDA (Shao et al., "Not all models are equal: predicting model transferability in a self-challenging
Fisher space", ECCV 2022): regularized Fisher discriminant analysis, a self-challenging ConfMix of hard
samples towards the other classes' means, and the mean probability of the true class after a second FDA."""

from __future__ import annotations

import torch

from ..common.warn import SaturationWarning, warn
from ..core.linalg import ordered_sum, serial_lapack, svd
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
    used and the class means [C, D] (of X centred).

    Every generalized eigenvector of (S_b, S_w') is kept, so the classifier's weights means V V' equal
    means S_w'^-1 (V' S_w' V = I): S_b drops out. ``S_w' = (1 - a) S_w + a mu I`` is diagonalized through the
    SVD of the within-class residuals R = U s V' (S_w = R'R / N): eigenvalues ``(1 - a) s^2 / N + a mu`` along
    V and ``a mu`` on the rest, with no D x D eigenproblem.

    Eigenvalues at or below ``rank_cutoff`` times the largest (a singular scatter, D > N - C, whose shrinkage
    is below rounding) have no computable inverse; their exact inverse is huge, so in the limit a class
    whose mean differs from x along those directions gets probability 0. That limit is what is computed:
    the Fisher discriminant on the kept directions, among the classes nearest to x along the dropped ones
    (to within their rounding). On the samples themselves it gives the true class probability 1 whenever
    the class means differ along the dropped directions; it is the plain classifier when nothing is dropped.
    """
    N, D = X.shape
    X = X - X.mean(0)  # the discriminant is shift invariant; centring keeps large offsets out of the rounding
    means, counts = class_means(X, idx, C)
    priors = counts / N
    R = X - means[idx]  # S_w = sum_c prior_c cov_c (1/n_c) = R'R / N
    if shrinkage is None:
        shrinkage = float(torch.exp(-5 * _power_top_eig(R.T @ R / N)))
    a = shrinkage
    mu = float(ordered_sum(R * R)) / (N * D)  # tr(S_w) / D
    _, s, Vh = svd(R)
    e = (1 - a) * s * s / N + a * mu  # eigenvalues along Vh; a * mu on the D - len(s) directions outside it
    cut = max(float(e[0]), a * mu) * rank_cutoff(N, D)
    keep = e > cut
    Vk = Vh[keep]
    w = e[keep].rsqrt()
    Xk, Mk = X @ Vk.T, means @ Vk.T
    logits = (Xk * w) @ (Mk * w).T - 0.5 * ((Mk * w) ** 2).sum(1) + torch.log(priors)
    outside = D > s.shape[0]  # directions outside the residuals' span exist
    if bool(keep.all()) and not outside:
        return torch.softmax(logits, dim=1), shrinkage, means
    Xr, Mr = X - Xk @ Vk, means - Mk @ Vk  # the components outside the kept directions
    if bool(keep.all()) and a * mu > cut:  # only the a mu directions remain, and their inverse is fine
        logits = logits + (Xr @ Mr.T - 0.5 * (Mr * Mr).sum(1)) / (a * mu)
    else:
        d2 = torch.cdist(Xr, Mr, compute_mode="donot_use_mm_for_euclid_dist") ** 2  # [N, C]
        # a sample's own class is at a residual's share of the dropped directions: sum_i d2[i, y_i] is
        # sum of the dropped s^2, up to rounding
        tol = 4 * float((s[~keep] ** 2).sum()) + N * max(float(e[0]), a * mu) * rank_cutoff(N, D)
        logits = logits.masked_fill(d2 > d2.min(1, keepdim=True).values + tol, float("-inf"))
    return torch.softmax(logits, dim=1), shrinkage, means


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
    with serial_lapack():  # small products whose MKL splitting follows the thread count (measured at N = 60)
        probs, shrinkage, means = _fda_probs(X, idx, C, None)
    probs = torch.softmax(probs, dim=1)  # the released code softens once more before the mix
    others = (means.sum(0, keepdim=True) - means) / (C - 1)  # [C, D] mean of the other classes' means
    p_true = probs.gather(1, idx[:, None])  # [N, 1]
    mixed = p_true * (X - X.mean(0)) + (1 - p_true) * others[idx]  # in the centred frame of `means`
    with serial_lapack():
        probs2, _, _ = _fda_probs(mixed, idx, C, shrinkage)
    p2 = probs2.gather(1, idx[:, None])
    score = float(ordered_sum(p2)) / N
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
