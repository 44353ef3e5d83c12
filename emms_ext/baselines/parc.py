"""PARC, Pairwise Annotation Representation Comparison (Bolya et al., "Scalable diverse model selection
for accessible transfer learning", NeurIPS 2021)."""

from __future__ import annotations

import torch

from ..core.linalg import ordered_sum
from ._common import class_labels, features64, one_hot, pca, targets64


def _rank(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of v [n] with ties averaged (scipy's rankdata 'average')."""
    uniq, inverse, counts = torch.unique(v, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)
    return (ends - (counts.to(torch.float64) - 1) / 2)[inverse]


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = _rank(a), _rank(b)  # [N (N - 1) / 2] each: sums in a thread-independent order
    ra, rb = ra - ordered_sum(ra) / ra.numel(), rb - ordered_sum(rb) / rb.numel()
    return float(ordered_sum(ra * rb) / torch.sqrt(ordered_sum(ra * ra) * ordered_sum(rb * rb)))


def _rdm(x: torch.Tensor) -> torch.Tensor:
    """1 - Pearson correlation between the rows of x [N, d] -> [N, N]."""
    xc = x - x.mean(1, keepdim=True)
    xn = xc / torch.linalg.vector_norm(xc, dim=1, keepdim=True)
    return 1 - xn @ xn.T


def parc(features, labels, regression: bool = False, pca_dim: int | None = 32) -> float:
    """PARC: 100 x Spearman correlation between the pairwise dissimilarities (1 - Pearson correlation of
    samples) of the standardized, PCA-reduced (``pca_dim``; None: no PCA) features and of the labels
    (one-hot rows, or ``[N, T]`` targets with T >= 2 when ``regression``), over all sample pairs.

    Higher is better. Values are only meaningful relative to the zoo: compare the models scored on the same
    samples; the scale says little by itself. Costs O(N^2) memory.

    features ``[N, D]``, labels ``[N]`` integer classes (or targets).
    """
    F = features64(features)
    N = F.shape[0]
    if regression:
        Y = targets64(labels, N, F.device, "labels")
        if Y.shape[1] < 2:
            raise ValueError(
                f"labels must be [N, T] with T >= 2 for PARC's correlation of rows (got [N, {Y.shape[1]}])"
            )
    else:
        idx, C = class_labels(labels, N, F.device, min_classes=2)
        Y = one_hot(idx, C)
    std = F.std(0, unbiased=False)
    Fs = (F - F.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))  # StandardScaler: constant -> 0
    Z = pca(Fs, pca_dim)
    low = torch.tril_indices(N, N, -1, device=F.device)
    # Rounded to 10 decimals: the label RDM takes a few values (0 and 1 + 1/(C-1) for one-hot rows) whose
    # mathematically exact ties must stay ties through rounding noise, or the ranks become arbitrary.
    a = torch.round(_rdm(Z)[low[0], low[1]], decimals=10)
    b = torch.round(_rdm(Y)[low[0], low[1]], decimals=10)
    return 100.0 * _spearman(a, b)
