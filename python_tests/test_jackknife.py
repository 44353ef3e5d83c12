"""Leave-one-fold-out scores by downdates of the full statistics (core/jackknife.py) against re-scoring each
subset from scratch, and the fall-back to re-scoring where a fold's deletion loses rank."""

import math
import warnings

import pytest
import torch

from emms_ext import ClassLabels, emms_score, emms_scores
from emms_ext.core import jackknife, score
from emms_ext.core.folds import assign_folds, fold_subsets, label_classes, subset_labels

MODES = ["exact", "alternating", "reference"]
N = 150


def _zoo(g: torch.Generator, y: torch.Tensor) -> dict:
    """Models that exercise each route: plain (a, b), float32 (a32), duplicated columns (c: the Gram's
    pseudo-inverse), a column varying on one sample only (e: that fold's deletion loses rank), more columns
    than the subsets have samples (f, D = 140 >= N' - 1) and the kernel form (k, D > N)."""
    one_hot = torch.nn.functional.one_hot(y, 8).double()
    a = torch.randn(N, 8, generator=g, dtype=torch.float64) + one_hot
    b = torch.randn(N, 8, generator=g, dtype=torch.float64)
    c = torch.randn(N, 12, generator=g, dtype=torch.float64) + one_hot.repeat(1, 2)[:, :12]
    c[:, 5] = c[:, 4]
    e = torch.randn(N, 8, generator=g, dtype=torch.float64)
    e[:, 0] = 0.0
    e[3, 0] = 1.0
    f = torch.randn(N, 140, generator=g, dtype=torch.float64)
    k = torch.randn(N, 200, generator=g, dtype=torch.float64)
    return {"a": a, "a32": a.float(), "b": b, "c": c, "e": e, "f": f, "k": k}


def _labels(kind: str, g: torch.Generator, y: torch.Tensor, zoo: dict):
    table = torch.randn(6, 4, 2, generator=g, dtype=torch.float64)
    if kind == "classes":
        return ClassLabels(table, y)
    if kind == "dense rows of a table":  # dense input whose rows repeat: detected as classes
        return table[y]
    # free text: a dense embedding per sample, partly explained by the features
    return torch.randn(N, 5, 2, generator=g, dtype=torch.float64) + zoo["a"][:, :5, None]


def _task_with_folds(seed: int, kind: str):
    """(zoo, labels, the 5 leave-one-fold-out subsets of seed 3) of one task."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 6, (N,), generator=g)
    zoo = _zoo(g, y)
    labels = _labels(kind, g, y, zoo)
    return zoo, labels, fold_subsets(assign_folds(N, 5, seed=3, classes=label_classes(labels)))


@pytest.fixture
def spy(monkeypatch):
    """The names whose fold scores came from the full data's statistics (downdates or refits)."""
    seen = []

    def recording(*args, **kwargs):
        out = jackknife.fold_scores(*args, **kwargs)
        seen.extend(out)
        return out

    monkeypatch.setattr(score, "fold_scores", recording)
    return seen


@pytest.mark.parametrize("kind", ["classes", "dense rows of a table", "free text"])
@pytest.mark.parametrize("mode", MODES)
def test_downdated_fold_scores_equal_rescored_subsets(kind, mode, spy):
    zoo, labels, keeps = _task_with_folds(11, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = emms_scores(zoo, labels, mode, folds=5, seed=3)
        for name, x in zoo.items():
            want = torch.tensor(
                [emms_score(x[k], subset_labels(labels, k), mode).score for k in keeps], dtype=torch.float64
            )
            # float64 features: the downdates are exact; float32 ones carry the float32 Gram's rounding
            tol = 1e-5 if x.dtype == torch.float32 else 1e-12
            assert torch.allclose(res[name].fold_scores, want, rtol=tol, atol=1e-14), name
    # the plain, float32 and rank-deficient models took the downdates; the others were re-scored
    assert sorted(spy) == ["a", "a32", "b", "c"]


def test_full_data_quantities_reproduce_the_plain_score():
    # With no fold left out the downdate's residual Gram is the plain fit's: t'(A - B)t at the plain t is
    # the plain objective, to 1e-10 relative
    g = torch.Generator().manual_seed(5)
    y = torch.randint(0, 6, (N,), generator=g)
    zoo = _zoo(g, y)
    for labels in (ClassLabels(torch.randn(6, 4, 2, generator=g, dtype=torch.float64), y), _labels("free", g, y, zoo)):
        basis, batches = score.prepare_labels(labels), []
        res = score.score_zoo([("a", zoo["a"])], basis, score.ScoreOptions(), batches)
        d = jackknife._Downdates(batches[0], basis, score.ScoreOptions())
        if basis.is_vocabulary:
            R = basis.B_from_class_gram(d.gram)[0]
        else:
            R = d.gram[0].sum(-1)
        t = res["a"].t
        assert float(t @ R @ t) == pytest.approx(res["a"].objective, rel=1e-10)


def test_a_fold_that_loses_rank_is_rescored_and_flagged_by_the_downdate():
    g = torch.Generator().manual_seed(2)
    y = torch.randint(0, 6, (N,), generator=g)
    zoo = _zoo(g, y)
    labels = ClassLabels(torch.randn(6, 4, 2, generator=g, dtype=torch.float64), y)
    basis, batches = score.prepare_labels(labels), []
    score.score_zoo([("e", zoo["e"])], basis, score.ScoreOptions(), batches)
    fold_of = assign_folds(N, 5, classes=y)
    d = jackknife._Downdates(batches[0], basis, score.ScoreOptions())
    oks = [bool(d.fold(fl)[1]) for fl in jackknife.fold_labels(labels, basis, fold_of)]
    # only the fold holding sample 3 (the one sample where column 0 varies) loses rank
    assert oks == [int(fold_of[3]) != f for f in range(5)]


REFITS = [("gcv", None), ("loo", None), ("exact", 0.5), ("exact", "gcv"), ("alternating", "gcv")]


@pytest.mark.parametrize("kind", ["classes", "free text"])
@pytest.mark.parametrize("mode,ridge", REFITS)
def test_refits_at_the_ridge_equal_rescored_subsets_that_choose_it(kind, mode, ridge, spy):
    # A fixed ridge, or the full data's GCV choice: the subset's statistics by downdating the full ones and
    # its own z-scores, one Cholesky factor at the ridge. Where the re-scored subset picks the same grid entry
    # (always, for a fixed ridge), the fold scores are the re-scored ones; where it picks another, the
    # fold's GCV score at the full data's entry can only be lower (the subset's own choice minimizes it).
    zoo, labels, keeps = _task_with_folds(13, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = emms_scores(zoo, labels, mode, ridge, folds=5, seed=3)
        same = 0
        for name, x in zoo.items():
            subs = [emms_score(x[k], subset_labels(labels, k), mode, ridge) for k in keeps]
            want = torch.tensor([s.score for s in subs], dtype=torch.float64)
            got = res[name].fold_scores
            tol = 1e-5 if x.dtype == torch.float32 else 1e-11
            if ridge == 0.5 or name not in spy:
                assert torch.allclose(got, want, rtol=tol, atol=1e-14), name
                continue
            for f, s in enumerate(subs):
                # the subset's own grid scales with its samples: the same entry is the same ridge per sample
                if math.isclose(s.ridge / res[name].ridge, len(keeps[f]) / N, rel_tol=0.1):
                    same += 1
                    assert float(got[f]) == pytest.approx(float(want[f]), rel=tol, abs=1e-14), (name, f)
                else:
                    assert mode not in ("gcv", "loo") or float(got[f]) <= float(want[f]) + 1e-12, (name, f)
    # which models took the refits: not the kernel form (k), not a column varying on one sample (e: a subset
    # loses it), and for GCV not the duplicated columns (c: their grid needs the eigendecomposition)
    expect = ["a", "a32", "b", "c", "f"] if ridge == 0.5 or mode == "loo" else ["a", "a32", "b", "f"]
    assert sorted(spy) == expect
    if mode in ("gcv", "loo"):
        assert same >= 10  # most folds keep the full data's choice: the equality above was exercised


def test_refit_fold_scores_need_no_eigendecomposition(monkeypatch):
    g = torch.Generator().manual_seed(4)
    X = torch.randn(N, 6, generator=g, dtype=torch.float64)
    Z = torch.randn(N, 3, 2, generator=g, dtype=torch.float64) + X[:, :3, None]
    calls = []
    real = torch.linalg.eigh

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", counting)
    emms_score(X, Z, "gcv", folds=6)
    assert len(calls) == 1  # the full data's grid only (re-scoring: one per fold more)
    calls.clear()
    emms_score(X, Z, "loo", folds=6)
    assert len(calls) == 1


@pytest.mark.parametrize("mode,ridge", REFITS)
def test_refit_statistics_without_a_fold_reproduce_the_plain_score(mode, ridge):
    # An empty fold: the refit's downdated statistics, re-standardization and factor at the ridge give back
    # the full data's score to 1e-10 relative (class and dense labels)
    g = torch.Generator().manual_seed(6)
    y = torch.randint(0, 6, (N,), generator=g)
    zoo = _zoo(g, y)
    for labels in (ClassLabels(torch.randn(6, 4, 2, generator=g, dtype=torch.float64), y), _labels("free", g, y, zoo)):
        basis, batches = score.prepare_labels(labels), []
        opts = score.ScoreOptions(mode=mode, ridge=ridge)
        res = score.score_zoo([("a", zoo["a"]), ("b", zoo["b"])], basis, opts, batches)
        empty = torch.zeros(0, dtype=torch.int64)
        if basis.is_vocabulary:
            fl = jackknife.FoldLabels(0, empty, basis, classes=torch.eye(basis.r, dtype=torch.float64))
        else:
            fl = jackknife.FoldLabels(0, empty, basis, scale=torch.ones(basis.r, dtype=torch.float64))
        B, ok, finish = jackknife._Refits(batches[0], basis, opts).fold(fl)
        solver = "exact" if mode in ("gcv", "loo") else mode
        t, obj, its = jackknife.wlsr_simplex(basis.A, B, solver, opts.max_iter, opts.tol)
        got = finish(t, obj, its)
        assert bool(ok.all())
        for i, name in enumerate(["a", "b"]):
            assert float(got[i]) == pytest.approx(res[name].score, rel=1e-10), (mode, ridge, name)
