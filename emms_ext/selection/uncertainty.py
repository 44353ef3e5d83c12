"""Error bars for ``rank(..., uncertainty=True)``: one fold assignment per task, every model re-scored on
the F leave-one-fold-out subsets, the delete-a-group jackknife (docs/design.md §3).

EMMS metrics get their fold scores from ``emms_scores(folds=...)`` (the zoo batched per fold); any other
metric goes through ``fold_scores`` here (F re-scorings per model: F times the cost of the score). Both
use the same ``[N]`` fold assignment, so scores of different metrics (a consensus's members) are paired
too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from ..core.folds import assign_folds, fold_subsets, label_classes, leave_one_fold_out, subset_labels, take_rows
from .targets import Target

__all__ = ["fold_assignment", "fold_scores", "target_subset"]


def fold_assignment(tgt: Target, n_samples: int, folds: int, seed: int) -> torch.Tensor:
    """``[N]`` fold of each sample, stratified by class when the target has classes."""
    classes = tgt.labels if tgt.labels is not None and tgt.labels.ndim == 1 else None
    if classes is None and tgt.label_embeddings is not None:
        classes = label_classes(tgt.label_embeddings)
    return assign_folds(n_samples, folds, seed=seed, classes=classes)


def target_subset(tgt: Target, idx: torch.Tensor) -> Target:
    """The target restricted to the samples ``idx`` (every per-sample field)."""
    return dataclasses.replace(
        tgt,
        labels=None if tgt.labels is None else take_rows(tgt.labels, idx),
        targets=None if tgt.targets is None else take_rows(tgt.targets, idx),
        label_embeddings=None if tgt.label_embeddings is None else subset_labels(tgt.label_embeddings, idx),
        source_probs={k: take_rows(v, idx) for k, v in tgt.source_probs.items()},
    )


def fold_scores(fn: Callable, features: dict, tgt: Target, fold_of: torch.Tensor, options: dict) -> tuple[dict, dict]:
    """(name -> ``[F]`` float64 leave-one-fold-out scores, name -> why it has none) for a per-model metric
    ``fn(x [N, D], target, **options)``; ``features`` name -> ``[N, D]`` tensor."""
    subsets = fold_subsets(fold_of)
    out, why = {}, {}
    for name, x in features.items():
        try:
            vals = leave_one_fold_out(lambda x, t: fn(x, t, **options), x, tgt, subsets, subset=target_subset)
        except (ValueError, RuntimeError, TypeError, torch.linalg.LinAlgError) as exc:
            why[name] = f"a leave-one-fold-out subset failed: {exc}"
            continue
        if not torch.isfinite(vals).all():
            why[name] = "a leave-one-fold-out score is not finite"
            continue
        out[name] = vals
    return out, why
