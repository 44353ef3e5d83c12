"""EMMS(One): EMMS with a single foundation model (K = 1), the ablation of the EMMS paper."""

from __future__ import annotations

import torch

from ..core.labels import ClassLabels, FreeTextLabels
from ..core.score import emms_score


def _select(label_embeddings, k: int):
    """The F-labels of embedder k alone, in the form they were given."""
    if (
        isinstance(label_embeddings, tuple)
        and len(label_embeddings) == 2
        and not isinstance(label_embeddings[0], (int, float))
    ):
        try:
            idx = torch.as_tensor(label_embeddings[1])
            if idx.dim() == 1 and not idx.dtype.is_floating_point:
                label_embeddings = ClassLabels(*label_embeddings)
        except Exception:  # not a (table, indices) pair: treated as a list of embedders
            pass
    if isinstance(label_embeddings, ClassLabels):
        return ClassLabels(_select(label_embeddings.table, k), label_embeddings.indices)
    if isinstance(label_embeddings, FreeTextLabels):
        return FreeTextLabels(
            _select(label_embeddings.labels, k), label_embeddings.sample_index, label_embeddings.n_samples
        )
    if isinstance(label_embeddings, (list, tuple)):
        return [label_embeddings[k]]
    z = label_embeddings
    return z[:, :, k : k + 1]


def _count(label_embeddings) -> int:
    if isinstance(label_embeddings, ClassLabels):
        return _count(label_embeddings.table)
    if isinstance(label_embeddings, FreeTextLabels):
        return _count(label_embeddings.labels)
    if isinstance(label_embeddings, tuple) and len(label_embeddings) == 2:
        try:
            idx = torch.as_tensor(label_embeddings[1])
            if idx.dim() == 1 and not idx.dtype.is_floating_point:
                return _count(label_embeddings[0])
        except Exception:  # not a (table, indices) pair: counted as a list of embedders
            pass
    if isinstance(label_embeddings, (list, tuple)):
        return len(label_embeddings)
    shape = getattr(label_embeddings, "shape", None)
    if shape is None or len(shape) != 3:
        raise ValueError(
            "label_embeddings must be [N, L, K], a list of K [N, L_k] or ClassLabels (got "
            f"{type(label_embeddings).__name__} of shape {shape})"
        )
    return int(shape[2])


def emms_one(features, label_embeddings, embedder: int | str = "best", mode: str = "exact", **options) -> float:
    """EMMS with one foundation model: the WLSR score on the F-labels of embedder ``embedder`` only (K = 1, so
    t = 1 and the score is minus the least-squares residual of that embedding).

    Higher is better; comparable between models on the same target (not relative to the zoo). An exact
    in-sample fit (D >= N - 1 varying columns: every such model ties) scores exactly 0.0 (``emms_score``).

    Args:
        features: ``[N, D]`` (any form ``emms_score`` accepts).
        label_embeddings: ``[N, L, K]``, a list of K ``[N, L_k]`` or ``ClassLabels`` (as for ``emms_score``).
        embedder: an index k in [0, K), or ``"best"`` (max over k) / ``"mean"`` (mean over k).
        mode, options: passed to ``emms_score``.
    """
    K = _count(label_embeddings)
    if isinstance(embedder, str):
        if embedder not in ("best", "mean"):
            raise ValueError(f"embedder must be an index in [0, {K}), 'best' or 'mean' (got {embedder!r})")
        scores = [emms_score(features, _select(label_embeddings, k), mode, **options).score for k in range(K)]
        return max(scores) if embedder == "best" else sum(scores) / K
    if not (isinstance(embedder, int) and 0 <= embedder < K):
        raise ValueError(f"embedder must be an index in [0, {K}), 'best' or 'mean' (got {embedder!r})")
    return emms_score(features, _select(label_embeddings, embedder), mode, **options).score
