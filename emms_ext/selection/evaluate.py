"""How well a transferability score ranks a zoo: correlation of scores with ground-truth fine-tuning
results (docs/design.md §8). ``weighted_tau`` is the field's tau_w (``scipy.stats.weightedtau`` with its
defaults: hyperbolic weights, rank by the values themselves, ties averaged), used by LogME, SFDA, EMMS ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = ["evaluate", "format_table", "kendall_tau", "pearson", "rel_at_k", "weighted_tau"]


def _pair(scores, truth) -> tuple[np.ndarray, np.ndarray]:
    """Two equally long float vectors [M] (M >= 2) from sequences / arrays / tensors."""
    a = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64).reshape(-1)
    b = np.asarray(truth.detach().cpu() if hasattr(truth, "detach") else truth, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"scores and truth must be [M] vectors of one length (got {a.shape[0]} and {b.shape[0]})")
    if a.shape[0] < 2:
        raise ValueError(f"scores and truth must hold M >= 2 models to correlate (got {a.shape[0]})")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores and truth must be finite (got NaN/Inf)")
    return a, b


def weighted_tau(scores, truth) -> float:
    """Weighted Kendall tau between scores [M] and ground truth [M]: ``scipy.stats.weightedtau`` with its
    defaults (top-ranked models weigh more). In [-1, 1], higher = better ranking. Scores that are all equal
    (e.g. every candidate tied by an exact in-sample fit) rank nothing: 0.0, where scipy returns NaN."""
    from scipy.stats import weightedtau

    a, b = _pair(scores, truth)
    if len(a) and (a == a[0]).all():
        return 0.0
    return float(weightedtau(a, b).statistic)


def kendall_tau(scores, truth) -> float:
    """Kendall tau-b between scores [M] and ground truth [M] (``scipy.stats.kendalltau``). In [-1, 1]."""
    from scipy.stats import kendalltau

    a, b = _pair(scores, truth)
    return float(kendalltau(a, b).statistic)


def pearson(scores, truth) -> float:
    """Pearson correlation between scores [M] and ground truth [M]. In [-1, 1]; NaN if either is constant."""
    a, b = _pair(scores, truth)
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else float("nan")


def rel_at_k(scores, truth, k: int = 1) -> float:
    """Rel@k: the best ground-truth value among the k models with the highest scores, divided by the best
    ground-truth value overall (1 = the best model is in the top k). Assumes higher truth is better and a
    positive best value (accuracies). Ties in the scores: the first k in a stable descending sort."""
    a, b = _pair(scores, truth)
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= a.shape[0]):
        raise ValueError(f"k must be an integer in [1, M = {a.shape[0]}] (got {k!r})")
    best = b.max()
    if not best > 0:
        raise ValueError(f"rel_at_k needs a positive best ground-truth value (got {best})")
    top = np.argsort(-a, kind="stable")[:k]
    return float(b[top].max() / best)


def evaluate(scores: Mapping, truth: Mapping, ks=(1, 3)) -> dict:
    """All measures for one method on one dataset over the models present in both mappings.

    Args:
        scores: model name -> score (higher = predicted better).
        truth: model name -> ground-truth transfer performance (e.g. fine-tuned accuracy).
        ks: the k of each reported Rel@k (those > M are skipped).

    Returns ``{"weighted_tau", "kendall_tau", "pearson", "rel@1", "rel@3", ..., "models": M}``.
    """
    if not isinstance(scores, Mapping) or not isinstance(truth, Mapping):
        raise ValueError(
            f"scores and truth must be dicts model -> value (got {type(scores).__name__} and {type(truth).__name__})"
        )
    common = [m for m in scores if m in truth]
    if len(common) < 2:
        raise ValueError(f"scores and truth must share at least 2 models (got {len(common)} in common: {common})")
    a = [float(scores[m]) for m in common]
    b = [float(truth[m]) for m in common]
    out = {"weighted_tau": weighted_tau(a, b), "kendall_tau": kendall_tau(a, b), "pearson": pearson(a, b)}
    for k in ks:
        if k <= len(common) and max(b) > 0:
            out[f"rel@{k}"] = rel_at_k(a, b, k)
    out["models"] = len(common)
    return out


def format_table(results: Mapping, fmt: str = ".3f", bold_best: bool = True) -> str:
    """A markdown table, methods as rows and datasets as columns, plus the row mean.

    Args:
        results: method -> dataset -> float (missing cells print as "-").
        fmt: number format. bold_best: bold the highest value of every column.
    """
    methods = list(results)
    datasets: list = []
    for m in methods:
        for d in results[m]:
            if d not in datasets:
                datasets.append(d)
    best = {}
    for d in datasets:
        vals = [results[m][d] for m in methods if d in results[m] and not math.isnan(float(results[m][d]))]
        best[d] = max(vals) if vals else None
    head = "| method | " + " | ".join(str(d) for d in datasets) + " | mean |"
    lines = [head, "|" + "---|" * (len(datasets) + 2)]
    for m in methods:
        cells = []
        vals = []
        for d in datasets:
            if d not in results[m]:
                cells.append("-")
                continue
            v = float(results[m][d])
            vals.append(v)
            s = format(v, fmt)
            cells.append(f"**{s}**" if bold_best and best[d] is not None and v == best[d] and len(methods) > 1 else s)
        mean = format(sum(vals) / len(vals), fmt) if vals else "-"
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {mean} |")
    return "\n".join(lines)
