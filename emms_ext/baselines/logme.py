"""LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021)
and LogME fed EMMS's F-labels (the EMMS paper's main comparison).

One eigendecomposition of the features serves every target; the per-target MacKay fixed points then run
for all targets at once in the ``emms::logme_evidence`` op (docs/design.md §7).
"""

from __future__ import annotations

import torch

from .. import ops
from ..core.labels import LabelBasis, prepare_labels
from ..core.linalg import eigh
from ._common import class_labels, features64, rank_cutoff, targets64


class _Targets:
    """Targets Y [N, T] either dense or as a class table: Y = onehot(classes) @ table ([C, T])."""

    def __init__(self, dense=None, classes=None, table=None):
        self.dense, self.classes, self.table = dense, classes, table
        if dense is None:
            from ..ops.operators import class_order

            C = table.shape[0]
            self.order, self.offsets = class_order(classes, C)
            self.counts = (self.offsets[1:] - self.offsets[:-1]).to(torch.float64)

    def t_times(self, R: torch.Tensor) -> torch.Tensor:
        """R' Y for R [N, r] -> [r, T] (class sums of R when Y is a class table: no N x T matrix)."""
        if self.dense is not None:
            return R.T @ self.dense
        return ops.class_sums(R, self.order, self.offsets).T @ self.table

    def norm2(self) -> torch.Tensor:  # [T]
        if self.dense is not None:
            return (self.dense * self.dense).sum(0)
        return self.counts @ (self.table * self.table)


def _evidence(F: torch.Tensor, Y: _Targets, max_iter: int, tol: float, eps: float) -> torch.Tensor:
    """Per-target LogME evidence [T] of features F [N, D] (float64)."""
    N, D = F.shape
    if N >= D:  # eigen-decompose the D x D Gram: x = V' F' y / sqrt(s)
        s, V = eigh(F.T @ F)
        keep = s > s.max().clamp_min(0) * rank_cutoff(N, D)
        s, V = s[keep], V[:, keep]
        proj = (V.T @ Y.t_times(F)) / s.sqrt()[:, None]  # [k, T]
    else:  # the N x N Gram's eigenvectors are the left singular vectors themselves
        s, U = eigh(F @ F.T)
        keep = s > s.max().clamp_min(0) * rank_cutoff(N, D)
        s, U = s[keep], U[:, keep]
        proj = Y.t_times(U)
    ev, _, _, _ = ops.logme_evidence(s.contiguous(), proj.T.contiguous(), Y.norm2(), N, D, max_iter, tol, eps)
    return ev


def logme(
    features, labels, regression: bool = False, *, max_iter: int = 11, tol: float = 1e-3, eps: float = 1e-5
) -> float:
    """LogME: the maximum log evidence per sample of a Bayesian linear model from features to targets.

    Higher is better. The value is an average log-likelihood per sample and target, comparable between
    models scored on the same target task (not min-max normalised, not relative to the zoo), but not
    across tasks.

    Args:
        features: ``[N, D]`` float tensor / array (used as given: LogME does not centre or scale).
        labels: ``[N]`` integer class labels (classification: one target per class present, the one-hot
            column) or, with ``regression=True``, ``[N]`` / ``[N, T]`` float targets.
        max_iter, tol, eps: the fixed point's stopping rule and damping; defaults are the released code's.

    Returns the mean over targets of the evidence (per sample). Matches the released LogME code for
    D <= N; for D > N it also counts the D - N zero eigenvalues of F'F in log|A| (the released code drops
    them), so that the evidence is the exact one.
    """
    F = features64(features)
    if regression:
        Y = _Targets(dense=targets64(labels, F.shape[0], F.device, "labels"))
    else:
        idx, C = class_labels(labels, F.shape[0], F.device)
        Y = _Targets(classes=idx, table=torch.eye(C, dtype=torch.float64, device=F.device))
    return float(_evidence(F, Y, max_iter, tol, eps).mean())


def flabel_targets(label_embeddings, device=None) -> tuple[_Targets, LabelBasis]:
    """F-labels (any form ``prepare_labels`` accepts) -> (standardized regression targets [N, T] over the label
    dimensions of all K embedders, as EMMS standardizes them, padding and constant columns dropped; the basis,
    which says how to repeat the features when a sample has several label rows)."""
    basis = prepare_labels(label_embeddings)
    if basis.is_vocabulary:
        table = basis.table.reshape(basis.table.shape[0], -1)  # [C, K*L]
        table = table[:, (table != 0).any(0)]
        out = _Targets(classes=basis.classes.to(device), table=table.to(device))
    else:
        dense = basis.dense[:, (basis.dense != 0).any(0)]
        out = _Targets(dense=dense.to(device))
    return out, basis


def logme_flabels(features, label_embeddings, *, max_iter: int = 11, tol: float = 1e-3, eps: float = 1e-5) -> float:
    """LogME on F-labels: LogME regression of the features onto every dimension of every foundation model's
    label embedding (standardized like EMMS does), the baseline the EMMS paper compares with.

    Higher is better; comparable between models on the same target (not relative to the zoo).

    Args:
        features: ``[N, D]``.
        label_embeddings: ``[N, L, K]``, a list of K ``[N, L_k]`` or ``ClassLabels(table, indices)`` /
            ``(table, indices)`` or ``FreeTextLabels`` — the forms ``emms_score`` accepts. Vocabulary labels
            never form the ``N x (K L)`` target matrix (class sums instead).
    """
    F = features64(features)
    Y, basis = flabel_targets(label_embeddings, F.device)
    if F.shape[0] != basis.n_samples:
        raise ValueError(
            f"label_embeddings must describe N = {F.shape[0]} samples like the features (got {basis.n_samples})"
        )
    F = basis.repeat_rows(F)  # several label rows per sample (FreeTextLabels): one feature row per label row
    N = F.shape[0]
    n_rows = Y.dense.shape[0] if Y.dense is not None else Y.classes.shape[0]
    if n_rows != N:
        raise ValueError(f"label_embeddings must describe N = {N} samples like the features (got {n_rows})")
    return float(_evidence(F, Y, max_iter, tol, eps).mean())
