"""``metric="consensus"``: one ranking from several metrics, by rank aggregation.

No single transferability metric wins on every task (docs/design.md §8), so the consensus averages where
each member metric places a model: each member's scores become ranks (ties share their average rank),
normalized to [0, 1] (1 = that member's best), and a model's consensus score is the mean over the members.
Every member counts equally; nothing is fitted, so nothing is tuned on the numbers the benchmark reports.
Models that a member could not score are left out of the consensus (they stay in ``failures``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# Members chosen a priori, one per kind of evidence, none of them in-sample (no D >= N ties): EMMS judged
# out of sample, LogME's evidence on the F-labels, and LogME on the labels themselves where the task has
# them (class labels or regression targets).
DEFAULT_MEMBERS = ("emms_gcv", "logme_flabels", "logme")


def normalized_ranks(scores: Mapping) -> dict:
    """name -> rank in [0, 1] (1 = highest score; ties share their average rank; one model: 1)."""
    names = list(scores)
    if len(names) == 1:
        return {names[0]: 1.0}
    r = average_ranks(np.array([float(scores[n]) for n in names]))
    return {n: float((v - 1) / (len(names) - 1)) for n, v in zip(names, r)}


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of x [n] (1 = smallest), tied values sharing their average rank (numpy only: the package
    imports without scipy)."""
    ranks = np.empty(len(x))
    ranks[np.argsort(x, kind="stable")] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        ranks[tied] = ranks[tied].mean()
    return ranks


def aggregate(tables: Mapping[str, Mapping]) -> dict:
    """member -> {name -> score} tables -> name -> consensus score in [0, 1], over the models every member
    scored (in the order of the first table)."""
    if not tables:
        raise ValueError("consensus needs at least one member metric (got none)")
    first = next(iter(tables.values()))
    common = [n for n in first if all(n in t for t in tables.values())]
    ranks = [normalized_ranks({n: t[n] for n in common}) for t in tables.values()]
    return {n: float(np.mean([r[n] for r in ranks])) for n in common}
