"""Several label rows per sample (FreeTextLabels, e.g. several captions per image): every entry point takes
the container as it is and scores the features repeated once per row, without the caller repeating them."""

from __future__ import annotations

import pytest
import torch

import emms_ext
from emms_ext import FreeTextLabels
from emms_ext.baselines import emms_one, logme_flabels
from emms_ext.ops import reference

S, K = 30, 2


def _problem(seed: int = 0, rows=lambda i: 1 + i % 3, L: int = 4):
    g = torch.Generator().manual_seed(seed)
    idx = torch.tensor([i for i in range(S) for _ in range(rows(i))])
    idx = idx[torch.randperm(len(idx), generator=g)]  # rows in any order
    blocks = [torch.randn(len(idx), L + k, dtype=torch.float64, generator=g) for k in range(K)]
    X = torch.randn(S, 6, dtype=torch.float64, generator=g)
    return X, FreeTextLabels(blocks, idx, S)


@pytest.mark.parametrize("mode", ["exact", "alternating", "reference", "gcv", "loo"])
def test_score_equals_the_explicit_repeat(mode):
    X, fl = _problem()
    got = emms_ext.emms_score(X, fl, mode).score
    want = emms_ext.emms_score(fl.features(X), fl.labels, mode).score  # the caller repeating by hand
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)
    if mode in ("exact", "reference"):  # and the float64 reference on the explicitly repeated features
        ref = reference.emms_score(X[fl.sample_index], fl.labels, mode)
        assert got == pytest.approx(float(ref["score"]), rel=1e-10)


@pytest.mark.parametrize("mode", ["exact", "alternating", "reference"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_in_sample_modes_weight_rows_instead_of_repeating(mode, dtype, monkeypatch):
    """In-sample modes on in-memory features: the statistics of the repeated rows are weighted statistics of
    the samples (no [N, D] copy), equal to the float64 reference that repeats explicitly, over several
    chunks and with means large next to the spread (the centring must stay exact)."""
    X, fl = _problem(5, rows=lambda i: 1 + (i * 7) % 5)
    X = (X * 0.01 + 50.0).to(dtype)
    ref = float(reference.emms_score(X.double()[fl.sample_index], fl.labels, mode)["score"])
    from emms_ext.core.labels import LabelBasis

    def no_repeat(self, x, first=0):
        raise AssertionError("the features were repeated")

    monkeypatch.setattr(LabelBasis, "repeat_rows", no_repeat)
    for chunk_size in (7, 1000):
        got = emms_ext.emms_score(X, fl, mode, chunk_size=chunk_size).score
        assert got == pytest.approx(ref, rel=1e-9 if dtype == torch.float64 else 2e-4)
    zoo = emms_ext.emms_scores({"a": X, "b": X[:, :4]}, fl, mode)
    assert zoo["a"].score == pytest.approx(ref, rel=1e-9 if dtype == torch.float64 else 2e-4)


def test_streams_zoos_and_one_row_per_sample():
    X, fl = _problem(1)
    one = emms_ext.emms_score(X, fl).score
    assert emms_ext.emms_score(iter([X[:7], X[7:19], X[19:]]), fl).score == pytest.approx(one, rel=1e-10)
    zoo = emms_ext.emms_scores({"x": X, "half": X[:, :3]}, fl)
    assert zoo["x"].score == pytest.approx(one, rel=1e-12)
    assert zoo["half"].score == pytest.approx(emms_ext.emms_score(fl.features(X[:, :3]), fl.labels).score, rel=1e-10)
    # One row per sample, in a shuffled order: the same as the rows sorted by sample.
    X2, fl2 = _problem(2, rows=lambda i: 1)
    order = torch.argsort(fl2.sample_index)
    assert emms_ext.emms_score(X2, fl2).score == pytest.approx(
        emms_ext.emms_score(X2, [b[order] for b in fl2.labels]).score, rel=1e-12
    )


def test_baselines_and_rank_take_the_container():
    X, fl = _problem(3)
    Xr = fl.features(X)
    assert logme_flabels(X, fl) == pytest.approx(logme_flabels(Xr, fl.labels), rel=1e-10)
    assert emms_one(X, fl) == pytest.approx(emms_one(Xr, fl.labels), rel=1e-10)
    zoo = {"x": X, "noise": torch.randn(S, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(4))}
    for metric in ("emms", "emms_gcv", "logme_flabels"):
        r = emms_ext.rank(zoo, fl, metric=metric, progress=False)
        assert not r.failures and set(r.scores) == set(zoo)
        explicit = emms_ext.rank({k: fl.features(v) for k, v in zoo.items()}, fl.labels, metric=metric, progress=False)
        for name in zoo:
            assert r.scores[name] == pytest.approx(explicit.scores[name], rel=1e-10)


def test_bad_containers_and_features_are_named():
    X, fl = _problem(5)
    with pytest.raises(ValueError, match=r"N == 30 \(the label embeddings' N\); got 29 rows"):
        emms_ext.emms_score(X[:29], fl)
    lonely = FreeTextLabels(fl.labels, fl.sample_index.clamp_max(S - 2), S)  # sample S-1 has no row
    with pytest.raises(ValueError, match="every sample needs at least one label row.*sample 29"):
        emms_ext.emms_score(X, lonely)
    with pytest.raises(ValueError, match=r"sample_index must lie in \[0, n_samples=30\)"):
        emms_ext.emms_score(X, FreeTextLabels(fl.labels, fl.sample_index + 1, S))
    with pytest.raises(ValueError, match="one per entry of sample_index"):
        emms_ext.emms_score(X, FreeTextLabels([b[:-1] for b in fl.labels], fl.sample_index, S))
    with pytest.raises(ValueError, match=r"chunk 1 must be \[N, D\] with N == 30"):
        emms_ext.emms_score(iter([X, X[:2]]), fl)
