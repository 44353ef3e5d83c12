"""Leave-one-out k-nearest-neighbour accuracy of the target labels in feature space."""

from __future__ import annotations

import torch

from ._common import class_labels, features64


def knn(features, labels, k: int = 5, metric: str = "euclidean", chunk: int = 4096) -> float:
    """Fraction of samples whose label is the majority among their k nearest other samples (leave-one-out).

    Ties in the vote go to the tied class whose member is nearest. Higher is better (in [0, 1]);
    an absolute accuracy, comparable across models (not relative to the zoo).

    Args:
        features: ``[N, D]``; labels: ``[N]`` integer classes.
        k: neighbours (1 <= k < N). metric: ``"euclidean"`` or ``"cosine"``.
        chunk: query rows per distance block (memory ``chunk x N``).
    """
    F = features64(features)
    N = F.shape[0]
    if not (isinstance(k, int) and 1 <= k < N):
        raise ValueError(f"k must be an integer in [1, N - 1 = {N - 1}] (got {k!r})")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine' (got {metric!r})")
    idx, C = class_labels(labels, N, F.device)
    if metric == "cosine":
        F = F / torch.linalg.vector_norm(F, dim=1, keepdim=True).clamp_min(1e-300)
    correct = 0
    for start in range(0, N, chunk):
        q = F[start : start + chunk]
        d = torch.cdist(q, F) if metric == "euclidean" else 1 - q @ F.T
        rows = torch.arange(q.shape[0], device=F.device)
        d[rows, rows + start] = float("inf")
        nn = torch.topk(d, k, dim=1, largest=False).indices  # [n, k] nearest first
        cls = idx[nn]
        votes = torch.zeros(q.shape[0], C, dtype=torch.float64, device=F.device).scatter_add_(
            1, cls, torch.ones_like(cls, dtype=torch.float64)
        )
        # first position at which each class appears among the neighbours (k when it does not)
        pos = torch.full((q.shape[0], C), float(k), dtype=torch.float64, device=F.device)
        pos = pos.scatter_reduce(1, cls, torch.arange(k, device=F.device, dtype=torch.float64).expand_as(cls), "amin")
        pred = (votes * (k + 1) - pos).argmax(1)
        correct += int((pred == idx[start : start + q.shape[0]]).sum())
    return correct / N
