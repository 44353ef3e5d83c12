"""Fold assignment and the delete-a-group jackknife of EMMS scores (core/folds.py, emms_score(folds=...))."""

import math

import numpy as np
import pytest
import torch

from emms_ext import ClassLabels, emms_score, emms_scores
from emms_ext.core.folds import (
    assign_folds,
    fold_subsets,
    jackknife_stderr,
    prob_better,
    student_t_cdf,
    subset_labels,
    top_set,
)

MODES = ["exact", "alternating", "reference", "gcv", "loo"]


def _task(seed: int, N: int = 120, D: int = 6, L: int = 3, K: int = 2, noise: float = 1.0):
    """Features [N, D] and F-labels [N, L, K] linear in the features plus Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, D, generator=g, dtype=torch.float64)
    Z = torch.stack([X @ torch.randn(D, L, generator=g, dtype=torch.float64) for _ in range(K)], dim=-1)
    return X, Z + noise * torch.randn(N, L, K, generator=g, dtype=torch.float64)


def test_assign_folds_is_stratified_balanced_and_seeded():
    classes = torch.tensor([0] * 23 + [1] * 7 + [2] * 50)
    f = assign_folds(80, 10, seed=3, classes=classes)
    assert f.shape == (80,) and f.dtype == torch.int64
    assert torch.equal(f, assign_folds(80, 10, seed=3, classes=classes.numpy()))
    assert not torch.equal(f, assign_folds(80, 10, seed=4, classes=classes))
    sizes = torch.bincount(f, minlength=10)
    assert int(sizes.max() - sizes.min()) <= 1
    for c in range(3):  # each class spread over the folds as evenly as possible
        per = torch.bincount(f[classes == c], minlength=10)
        assert int(per.max() - per.min()) <= 1
    subsets = fold_subsets(f)
    assert len(subsets) == 10
    assert sum(80 - len(s) for s in subsets) == 80  # each sample is left out exactly once


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"folds": 1}, "folds must be an int >= 2"),
        ({"folds": 81}, "at most the number of samples"),
        ({"classes": torch.zeros(5, dtype=torch.int64)}, r"classes must be \[N\] int"),
    ],
)
def test_assign_folds_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        assign_folds(80, **{"folds": 10, **kwargs})


def test_jackknife_stderr_hand_computed():
    # mean 2, sum of squares 2: sqrt(2/3 * 2)
    assert jackknife_stderr([1.0, 2.0, 3.0]) == pytest.approx(math.sqrt(4 / 3), rel=1e-15)
    # the F = N case of the mean: the jackknife SE of a mean is the classical s / sqrt(N)
    x = torch.randn(40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loo = (x.sum() - x) / 39
    assert jackknife_stderr(loo) == pytest.approx(float(x.std() / math.sqrt(40)), rel=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_fold_scores_equal_scores_on_the_explicit_subsets(mode):
    X, Z = _task(1)
    r = emms_score(X, Z, mode, folds=5, seed=7)
    assert r.score == emms_score(X, Z, mode).score  # folds do not change the score itself
    keeps = fold_subsets(assign_folds(len(X), 5, seed=7))
    subs = [emms_score(X[k], Z[k], mode) for k in keeps]
    want = [s.score for s in subs]
    assert r.fold_scores.shape == (5,) and r.fold_scores.dtype == torch.float64
    if mode in ("gcv", "loo"):  # the full data's ridge held (core/jackknife.py): the same where the subset
        for f, s in enumerate(subs):  # picks that grid entry, else lower (the subset's own pick minimizes)
            if math.isclose(s.ridge / r.ridge, len(keeps[f]) / len(X), rel_tol=0.1):
                assert float(r.fold_scores[f]) == pytest.approx(want[f], rel=0, abs=1e-10)
            else:
                assert float(r.fold_scores[f]) <= want[f] + 1e-12
        assert r.stderr == pytest.approx(jackknife_stderr(want), rel=0.2)
        return
    assert torch.allclose(r.fold_scores, torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-10)
    assert r.stderr == pytest.approx(jackknife_stderr(want), rel=1e-12)
    assert emms_score(X, Z, mode).stderr is None and emms_score(X, Z, mode).fold_scores is None


def test_class_labels_are_stratified_and_zoo_folds_are_paired():
    g = torch.Generator().manual_seed(2)
    y = torch.randint(0, 4, (90,), generator=g)
    table = torch.randn(4, 3, 2, generator=g, dtype=torch.float64)
    X1 = torch.randn(90, 5, generator=g, dtype=torch.float64) + torch.nn.functional.one_hot(y, 5).double()
    X2 = torch.randn(90, 5, generator=g, dtype=torch.float64)
    labels = ClassLabels(table, y)
    zs = emms_scores({"a": X1, "b": X2}, labels, folds=6, seed=1)
    keeps = fold_subsets(assign_folds(90, 6, seed=1, classes=y))
    for name, X in (("a", X1), ("b", X2)):
        want = [emms_score(X[k], ClassLabels(table, y[k])).score for k in keeps]
        assert torch.allclose(zs[name].fold_scores, torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-10)


@pytest.mark.parametrize("labels_kind", ["classes", "dense"])
@pytest.mark.parametrize(
    "mode,ridge", [("exact", None), ("alternating", None), ("reference", None), ("gcv", None), ("exact", 0.5)]
)
def test_streamed_features_get_error_bars_from_per_fold_statistics(labels_kind, mode, ridge):
    # A stream cannot be re-read per fold: its folds' statistics are accumulated in the single pass and each
    # subset refit from them (core/jackknife.py). The same fold scores as the in-memory features (downdates or
    # refits from the rows), and the score itself the same bits as without folds.
    X, Z = _task(3)
    X = X + 50.0  # large means: the folds' statistics must stay centred
    y = torch.arange(X.shape[0]) % 5
    labels = ClassLabels(torch.randn(5, 3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64), y)
    labels = labels if labels_kind == "classes" else Z

    def chunks():
        return iter([X[:37], X[37:100], X[100:]])

    streamed = emms_score(chunks(), labels, mode, ridge, folds=5, seed=2)
    in_memory = emms_score(X, labels, mode, ridge, folds=5, seed=2)
    assert streamed.score == emms_score(chunks(), labels, mode, ridge).score
    assert torch.allclose(streamed.fold_scores, in_memory.fold_scores, rtol=1e-11, atol=1e-14)
    assert streamed.stderr == pytest.approx(in_memory.stderr, rel=1e-9)
    if ridge is None and mode != "gcv":  # and they are the re-scored subsets'
        keeps = fold_subsets(assign_folds(X.shape[0], 5, seed=2, classes=y if labels_kind == "classes" else None))
        want = [emms_score(X[k], subset_labels(labels, k), mode).score for k in keeps]
        assert torch.allclose(streamed.fold_scores, torch.tensor(want, dtype=torch.float64), rtol=1e-11, atol=1e-14)


def test_stream_folds_over_their_memory_budget_say_so(monkeypatch):
    from emms_ext.core import ingest

    X, Z = _task(0)
    r = Z.shape[1] * Z.shape[2]  # the dense label basis's width
    monkeypatch.setattr(ingest, "STREAM_FOLD_BUDGET", ingest.stream_fold_bytes(4, X.shape[1], r, 8))  # 4 folds, not 5
    assert emms_score(iter([X[:60], X[60:]]), Z, folds=4).stderr is not None
    with pytest.raises(ValueError, match=r"folds=5 on a stream of \[N, 6\] features .*STREAM_FOLD_BUDGET"):
        emms_score(iter([X[:60], X[60:]]), Z, folds=5)
    zs = emms_scores({"s": iter([X[:60], X[60:]]), "m": X}, Z, folds=5, errors="skip")  # the score stands
    assert zs["s"].stderr is None and "STREAM_FOLD_BUDGET" in zs["s"].warnings[-1]
    assert zs["m"].stderr is not None and zs["s"].score == emms_score(iter([X[:60], X[60:]]), Z).score


@pytest.mark.parametrize("mode", ["exact", "gcv"])
def test_jackknife_stderr_is_calibrated_over_redraws(mode):
    # 30 independent draws of one generator: the typical jackknife SE matches the scores' spread
    # (fixed coefficients; only the samples are redrawn)
    A = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    scores, ses = [], []
    for seed in range(30):
        g = torch.Generator().manual_seed(100 + seed)
        X = torch.randn(150, 4, generator=g, dtype=torch.float64)
        Z = torch.stack([X @ A[k] for k in range(2)], dim=-1) + 1.5 * torch.randn(
            150, 2, 2, generator=g, dtype=torch.float64
        )
        r = emms_score(X, Z, mode, folds=10)
        scores.append(r.score)
        ses.append(r.stderr)
    sd = float(np.std(scores, ddof=1))
    ratio = float(np.sqrt(np.mean(np.square(ses)))) / sd
    assert 1 / 1.5 <= ratio <= 1.5, (ratio, sd)


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 9, 10, 31])
def test_student_t_cdf_matches_scipy(dof):
    scipy_stats = pytest.importorskip("scipy.stats")
    for t in (-7.5, -2.26, -0.3, 0.0, 0.8, 1.96, 12.0):
        assert student_t_cdf(t, dof) == pytest.approx(scipy_stats.t.cdf(t, dof), abs=1e-13)
    assert student_t_cdf(1.0, 1) == pytest.approx(0.75, abs=1e-15)  # Cauchy: 1/2 + atan(1)/pi


def test_prob_better_hand_computed_and_bad_input():
    # differences per fold 1, 2, 3: jackknife SE sqrt(4/3); full-data difference 2
    p = prob_better(5.0, 3.0, [3.0, 4.0, 5.0], [2.0, 2.0, 2.0])
    assert p == pytest.approx(student_t_cdf(2 / math.sqrt(4 / 3), 2), rel=1e-14)
    assert prob_better(3.0, 5.0, [2.0, 2.0, 2.0], [3.0, 4.0, 5.0]) == pytest.approx(1 - p, rel=1e-14)
    assert prob_better(1.0, 1.0, [1.0, 1.0], [1.0, 1.0]) == 0.5  # identical models: a tie
    with pytest.raises(ValueError, match="same folds"):
        prob_better(1.0, 0.0, [1.0, 2.0], [1.0, 2.0, 3.0])


def _pair(seed: int, signal_b: float):
    """Two models' features for one task: a and b carry the labels' signal with strengths 1 and signal_b."""
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(150, 3, generator=g, dtype=torch.float64)
    Z = torch.stack([S @ torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(2)], dim=-1)
    Xa = S + 1.5 * torch.randn(150, 3, generator=g, dtype=torch.float64)
    Xb = signal_b * S + 1.5 * torch.randn(150, 3, generator=g, dtype=torch.float64)
    return {"a": Xa, "b": Xb}, Z + torch.randn(150, 2, 2, generator=g, dtype=torch.float64)


def test_prob_better_is_calibrated_under_the_null():
    inside, both_top = 0, 0
    for seed in range(20):
        zoo, Z = _pair(200 + seed, 1.0)  # a and b from the same generator
        zs = emms_scores(zoo, Z, folds=10)
        p = prob_better(zs["a"].score, zs["b"].score, zs["a"].fold_scores, zs["b"].fold_scores)
        inside += 0.025 <= p <= 0.975
        both_top += len(top_set(zs.scores, {n: r.fold_scores for n, r in zs.items()}, 0.95)) == 2
    assert inside >= 16 and both_top >= 16, (inside, both_top)


def test_a_clearly_better_model_wins_with_a_top_set_of_one():
    zoo, Z = _pair(7, 0.0)  # b carries no signal at all
    zs = emms_scores(zoo, Z, folds=10)
    assert prob_better(zs["a"].score, zs["b"].score, zs["a"].fold_scores, zs["b"].fold_scores) > 0.99
    assert top_set(zs.scores, {n: r.fold_scores for n, r in zs.items()}) == ["a"]
    with pytest.raises(ValueError, match="level must be in"):
        top_set(zs.scores, {n: r.fold_scores for n, r in zs.items()}, 1.5)
