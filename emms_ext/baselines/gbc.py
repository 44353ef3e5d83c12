"""GBC (Pándy et al., "Transferability estimation using Bhattacharyya class separability", CVPR 2022) with
diagonal Gaussians per class."""

from __future__ import annotations

import torch

from ._common import class_labels, class_means, features64, pca


def gbc(features, labels, pca_dim: int | None = 64, var_floor: float = 1e-12) -> float:
    """GBC: ``-sum_{i != j} exp(-D_B(c_i, c_j))`` over ordered class pairs, with D_B the Bhattacharyya distance
    of per-class diagonal Gaussians (biased variances, floored at ``var_floor`` times the mean variance so
    single-sample classes stay finite) fitted to the features reduced by PCA to ``pca_dim`` dimensions
    (None: no PCA). Higher (closer to 0) is better: classes overlap less. Comparable between models on the
    same target (not relative to the zoo).

    features ``[N, D]``, labels ``[N]`` integer classes.
    """
    F = features64(features)
    idx, C = class_labels(labels, F.shape[0], F.device)
    Z = pca(F, pca_dim)
    mu, counts = class_means(Z, idx, C)
    sq, _ = class_means(Z * Z, idx, C)  # E[z^2] per class
    var = (sq - mu * mu).clamp_min(0)
    var = var.clamp_min(var_floor * float(var.mean()) if float(var.mean()) > 0 else var_floor)
    avg = (var[:, None, :] + var[None, :, :]) / 2  # [C, C, d]
    diff2 = (mu[:, None, :] - mu[None, :, :]) ** 2
    logv = var.log()
    db = (diff2 / avg).sum(-1) / 8 + 0.5 * (
        avg.log().sum(-1) - 0.5 * logv.sum(-1)[:, None] - 0.5 * logv.sum(-1)[None, :]
    )
    bc = torch.exp(-db)
    off = ~torch.eye(C, dtype=torch.bool, device=F.device)
    return float(-bc[off].sum())
