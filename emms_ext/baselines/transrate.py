"""TransRate (Huang et al., "Frustratingly easy transferability estimation", ICML 2022): the coding rate of
the features minus their mean coding rate within the classes."""

from __future__ import annotations

import torch

from ..core.linalg import cholesky
from ._common import class_labels, features64


def coding_rate(Z: torch.Tensor, eps: float) -> torch.Tensor:
    """0.5 * logdet(I_d + Z'Z / (n eps)) of Z [n, d], through the smaller of the two Grams (equal determinants)."""
    n, d = Z.shape
    G = Z.T @ Z if d <= n else Z @ Z.T
    G = torch.eye(G.shape[0], dtype=Z.dtype, device=Z.device) + G / (n * eps)
    L, _ = cholesky(G[None].contiguous())  # positive definite: the identity plus a Gram
    return L[0].diagonal().log().sum()


def transrate(features, labels, eps: float = 1e-4) -> float:
    """TransRate: ``R(Z) - (1/C) sum_c R(Z_c)`` with ``R(Z) = 0.5 logdet(I + Z'Z / (n eps))`` on the centred
    features (the released code's eps = 1e-4 and class average). Higher is better; it grows with the
    feature width, so compare models of similar D or treat it as relative to the zoo.

    features ``[N, D]``, labels ``[N]`` integer classes.
    """
    F = features64(features)
    idx, C = class_labels(labels, F.shape[0], F.device)
    Z = F - F.mean(0)
    within = sum(coding_rate(Z[idx == c], eps) for c in range(C))
    return float(coding_rate(Z, eps) - within / C)
