"""metric="consensus": rank aggregation checked on hand-made score tables, then through rank()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import emms_ext
from emms_ext.selection.consensus import aggregate, normalized_ranks


def test_average_ranks_match_scipy():
    from scipy.stats import rankdata

    from emms_ext.selection.consensus import average_ranks

    rng = np.random.default_rng(0)
    for x in (rng.integers(0, 4, 12).astype(float), rng.standard_normal(9), np.array([2.0, 2.0, 2.0])):
        np.testing.assert_array_equal(average_ranks(x), rankdata(x, method="average"))


def test_aggregation_on_hand_made_tables():
    a = {"x": 3.0, "y": 2.0, "z": 1.0}
    b = {"x": -5.0, "y": 10.0, "z": 0.0}
    # a: x 1, y 0.5, z 0; b: x 0, y 1, z 0.5 -> means 0.5, 0.75, 0.25
    assert aggregate({"a": a, "b": b}) == pytest.approx({"x": 0.5, "y": 0.75, "z": 0.25})
    # Ties share their average rank; the scale of a member's scores does not matter.
    assert normalized_ranks({"x": 1.0, "y": 1.0, "z": 0.0}) == pytest.approx({"x": 0.75, "y": 0.75, "z": 0.0})
    assert aggregate({"a": a, "a1000": {k: 1000 * v for k, v in a.items()}}) == pytest.approx(normalized_ranks(a))
    # A model one member could not score leaves the consensus; one model alone is ranked 1.
    assert aggregate({"a": a, "b": {"x": 1.0, "y": 2.0}}) == pytest.approx({"x": 0.5, "y": 0.5})
    assert aggregate({"a": {"x": 7.0}}) == {"x": 1.0}
    with pytest.raises(ValueError, match="at least one member"):
        aggregate({})


def _zoo(seed: int = 0, N: int = 90, C: int = 3):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(N) % C
    code = torch.randn(C, 5, dtype=torch.float64, generator=g)[y]
    zoo = {
        "good": code + 0.3 * torch.randn(N, 5, dtype=torch.float64, generator=g),
        "weak": code[:, :2] + 2.0 * torch.randn(N, 2, dtype=torch.float64, generator=g),
        "noise": torch.randn(N, 6, dtype=torch.float64, generator=g),
        "broken": torch.randn(N - 3, 4, dtype=torch.float64, generator=g),
    }
    table = torch.randn(C, 8, 2, dtype=torch.float64, generator=g)
    return zoo, y, emms_ext.ClassLabels(table, y)


def test_rank_consensus_equals_the_aggregate_of_its_members():
    zoo, y, labels = _zoo()
    target = emms_ext.Target(labels=y, label_embeddings=labels)
    r = emms_ext.rank(zoo, target, metric="consensus", progress=False)
    members = {
        m: emms_ext.rank(zoo, target, metric=m, progress=False).scores for m in ("emms_gcv", "logme_flabels", "logme")
    }
    assert set(r.details["members"]) == set(members)
    assert r.scores == pytest.approx(aggregate(members))
    assert r.metric == "consensus" and r.relative and "broken" in r.failures
    assert r.order[0] == "good" and r.order[-1] == "noise"
    chosen = emms_ext.rank(zoo, target, metric="consensus", metrics=["emms_gcv", "knn"], progress=False)
    assert set(chosen.details["members"]) == {"emms_gcv", "knn"}


def test_members_that_do_not_apply():
    zoo, y, labels = _zoo(1)
    dense = [torch.as_tensor(np.asarray(labels.table))[y, :, k] for k in range(2)]  # free-text-like F-labels
    r = emms_ext.rank(zoo, dense, metric="consensus", progress=False)  # logme (labels) does not apply: skipped
    assert set(r.details["members"]) == {"emms_gcv", "logme_flabels"}
    with pytest.raises(ValueError, match="do not apply"):
        emms_ext.rank(zoo, dense, metric="consensus", metrics=["emms_gcv", "hscore"], progress=False)
    with pytest.raises(ValueError, match="metrics=\\[...\\] only"):
        emms_ext.rank(zoo, dense, metric="consensus", ridge=1.0, progress=False)
