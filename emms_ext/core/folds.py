"""Fold assignment and the delete-a-group jackknife of a score.

The samples are split once into F folds (stratified by class for class labels, fixed by a seed and by
nothing else), so every model of a zoo sees the same folds and the leave-one-fold-out scores of two models
are paired: the jackknife of their *difference* is what ``prob_better`` needs.

This module holds the generic path: a score is recomputed on each of the F leave-one-fold-out subsets
(F full re-scorings; correct for any metric, F times the cost of one score).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..common.validate import describe
from .labels import ClassLabels, FreeTextLabels

__all__ = [
    "assign_folds",
    "check_fold_assignment",
    "fold_subsets",
    "jackknife_stderr",
    "leave_one_fold_out",
    "prob_better",
    "student_t_cdf",
    "subset_labels",
    "take_rows",
    "top_set",
]


def assign_folds(n_samples: int, folds: int = 10, *, seed: int = 0, classes=None) -> torch.Tensor:
    """Fold of each sample: ``[N]`` int64 in ``0 .. folds-1``.

    With ``classes [N]`` (int class of each sample) the assignment is stratified: each class's samples are
    shuffled and dealt round-robin, continuing from where the previous class stopped, so every fold gets
    ``floor`` or ``ceil`` of each class's share and fold sizes differ by at most one. Depends only on
    ``(n_samples, folds, seed, classes)``: identical for every model of a zoo."""
    n = int(n_samples)
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise ValueError(f"folds must be an int >= 2 (got {folds!r})")
    if folds > n:
        raise ValueError(f"folds must be at most the number of samples N = {n} (got folds={folds})")
    gen = torch.Generator().manual_seed(int(seed))
    if classes is None:
        groups = [torch.arange(n)]
    else:
        c = torch.as_tensor(np.asarray(classes) if not torch.is_tensor(classes) else classes).reshape(-1)
        if c.numel() != n or c.is_floating_point():
            raise ValueError(f"classes must be [N] int with N == {n} (got {describe(classes)})")
        c = c.to(torch.int64).cpu()
        groups = [torch.nonzero(c == v).reshape(-1) for v in torch.unique(c, sorted=True)]
    out = torch.empty(n, dtype=torch.int64)
    start = 0
    for idx in groups:
        perm = idx[torch.randperm(idx.numel(), generator=gen)]
        out[perm] = (start + torch.arange(perm.numel())) % folds
        start = (start + perm.numel()) % folds
    return out


def check_fold_assignment(fold_of, n_samples: int) -> torch.Tensor:
    """A ready fold assignment ``[N]`` int (folds ``0 .. F-1``, each non-empty, F >= 2) as int64, or a
    ValueError naming what was seen."""
    f = torch.as_tensor(np.asarray(fold_of) if not torch.is_tensor(fold_of) else fold_of).reshape(-1).cpu()
    if f.numel() != int(n_samples) or f.is_floating_point() or f.dtype == torch.bool:
        raise ValueError(
            f"folds must be an int F >= 2 or an [N] int fold of each sample with N = {n_samples} "
            f"(got {describe(fold_of)})"
        )
    f = f.to(torch.int64)
    F = int(f.max()) + 1 if f.numel() else 0
    if F < 2 or int(f.min()) < 0 or torch.bincount(f, minlength=F).min() == 0:
        raise ValueError(
            f"folds given per sample must number the folds 0 .. F-1, F >= 2, none empty "
            f"(got values {torch.unique(f).tolist()[:12]})"
        )
    return f


def fold_subsets(fold_of: torch.Tensor) -> list[torch.Tensor]:
    """Sample indices kept when each fold is left out: F sorted ``[N - n_f]`` int64 tensors."""
    F = int(fold_of.max()) + 1
    return [torch.nonzero(fold_of != f).reshape(-1) for f in range(F)]


def jackknife_stderr(fold_scores) -> float:
    """Delete-a-group jackknife standard error ``sqrt((F-1)/F * sum_f (s_f - mean)^2)`` of ``[F]``
    leave-one-fold-out scores (equal-size groups)."""
    s = torch.as_tensor(fold_scores, dtype=torch.float64).reshape(-1)
    F = s.numel()
    if F < 2:
        raise ValueError(f"fold_scores must hold at least 2 scores (got {F})")
    return math.sqrt((F - 1) / F * float(((s - s.mean()) ** 2).sum()))


def take_rows(x, idx: torch.Tensor):
    """Rows ``idx`` of a tensor (on its device) or an array."""
    if torch.is_tensor(x):
        return x.index_select(0, idx.to(x.device))
    return np.asarray(x)[idx.numpy()]


def subset_labels(label_embeddings, idx: torch.Tensor):
    """The label embeddings of the samples ``idx`` (any dense or class-label form ``emms_score`` takes)."""
    if isinstance(label_embeddings, FreeTextLabels):
        raise ValueError("folds are not supported with FreeTextLabels (several label rows per sample) yet")
    if isinstance(label_embeddings, ClassLabels):
        return ClassLabels(label_embeddings.table, take_rows(label_embeddings.indices, idx))
    if isinstance(label_embeddings, tuple) and len(label_embeddings) == 2:
        return (label_embeddings[0], take_rows(label_embeddings[1], idx))
    if isinstance(label_embeddings, list):
        return [take_rows(z, idx) for z in label_embeddings]
    return take_rows(label_embeddings, idx)


def label_classes(label_embeddings):
    """``[N]`` class of each sample for class labels (stratification), else None."""
    if isinstance(label_embeddings, ClassLabels):
        return label_embeddings.indices
    if isinstance(label_embeddings, tuple) and len(label_embeddings) == 2:
        return label_embeddings[1]
    return None


def leave_one_fold_out(
    score: Callable[[object, object], float],
    features,
    label_embeddings,
    subsets: Sequence[torch.Tensor],
    subset: Callable = subset_labels,
) -> torch.Tensor:
    """``[F]`` float64: ``score(features[keep], labels[keep])`` for each leave-one-fold-out subset ``keep``;
    ``subset(labels, keep)`` restricts the labels (default: any label-embedding form; ``rank`` passes one
    for its ``Target``).

    ``features`` must be in memory (``[N, D]`` tensor or array): a stream cannot be re-read per fold."""
    if not (torch.is_tensor(features) or isinstance(features, np.ndarray)):
        raise ValueError(f"folds need in-memory features [N, D] (tensor or array); got {describe(features)}")
    return torch.tensor(
        [float(score(take_rows(features, keep), subset(label_embeddings, keep))) for keep in subsets],
        dtype=torch.float64,
    )


def student_t_cdf(t: float, dof: int) -> float:
    """CDF of Student's t with integer ``dof`` >= 1 at ``t`` (the closed-form finite series,
    Abramowitz & Stegun 26.7.3-4; no scipy at run time)."""
    if not isinstance(dof, int) or dof < 1:
        raise ValueError(f"dof must be an int >= 1 (got {dof!r})")
    th = math.atan(t / math.sqrt(dof))
    c2, s = math.cos(th) ** 2, math.sin(th)
    if dof % 2:  # odd: (2/pi) (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        acc, term = 0.0, math.cos(th)
        for j in range(1, (dof - 1) // 2 + 1):
            acc += term
            term *= c2 * (2 * j) / (2 * j + 1)
        a = 2 / math.pi * (th + s * acc) if dof > 1 else 2 * th / math.pi
    else:  # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
        acc, term = 0.0, 1.0
        for j in range(1, dof // 2 + 1):
            acc += term
            term *= c2 * (2 * j - 1) / (2 * j)
        a = s * acc
    return 0.5 + 0.5 * a


def prob_better(score_a: float, score_b: float, fold_a, fold_b) -> float:
    """P(a's score exceeds b's) under the paired jackknife: the difference ``score_a - score_b`` over the
    jackknife SE of the fold-wise differences ``fold_a - fold_b`` (both ``[F]`` on the same folds), read
    on Student's t with F - 1 degrees of freedom (the delete-a-group jackknife's reference distribution;
    the normal approximation is overconfident with F = 10). A difference with zero SE is certain (1.0 or
    0.0), or 0.5 when it is 0."""
    fa = torch.as_tensor(fold_a, dtype=torch.float64).reshape(-1)
    fb = torch.as_tensor(fold_b, dtype=torch.float64).reshape(-1)
    if fa.shape != fb.shape:
        raise ValueError(f"fold_a and fold_b must be [F] on the same folds (got {tuple(fa.shape)}, {tuple(fb.shape)})")
    d = float(score_a) - float(score_b)
    se = jackknife_stderr(fa - fb)
    if se == 0.0:
        return 0.5 if d == 0.0 else float(d > 0)
    return student_t_cdf(d / se, fa.numel() - 1)


def top_set(scores: dict, fold_scores: dict, level: float = 0.95) -> list:
    """Names not distinguishable from the best at ``level``: every model ``m`` with
    ``prob_better(best, m) <= (1 + level) / 2`` (the best included), best first, ties of score broken by
    name. The threshold is two-sided because the best is itself picked from the data: two models from one
    generator both sit in the 95% top set exactly when ``prob_better`` lies in [0.025, 0.975]."""
    if not 0.5 < level < 1.0:
        raise ValueError(f"level must be in (0.5, 1) (got {level!r})")
    order = sorted(scores, key=lambda n: (-scores[n], str(n)))
    best = order[0]
    return [
        m
        for m in order
        if m == best or prob_better(scores[best], scores[m], fold_scores[best], fold_scores[m]) <= (1 + level) / 2
    ]
