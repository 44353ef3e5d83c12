"""Streaming sufficient statistics against direct float64 computation."""

from __future__ import annotations

import pytest
import torch
from conftest import make_class_labels, make_dense_labels, make_features

from emms_ext.core.labels import EPS_STD, prepare_labels
from emms_ext.core.stats import FeatureStats


def direct(X: torch.Tensor, basis):
    """The statistics the obvious way: z-score X in float64, then Xs'Xs and Xs'U."""
    X = X.to(torch.float64)
    Xs = (X - X.mean(0)) / (X.std(0, unbiased=False) + EPS_STD)
    if basis.is_vocabulary:
        U = torch.nn.functional.one_hot(basis.classes, basis.r).to(torch.float64)
    else:
        U = basis.dense
    return Xs.T @ Xs, Xs.T @ U


@pytest.mark.parametrize("vocab", [False, True])
@pytest.mark.parametrize("sizes", [[300], [1, 299], [100, 100, 100], [7, 13, 280]])
def test_chunked_statistics_equal_direct(vocab, sizes):
    N, D = 300, 12
    X = make_features(200 + len(sizes), N, D, shift=50.0)
    labels = make_class_labels(200, N, 11, 4, 2) if vocab else make_dense_labels(200, N, 4, 2, X)
    basis = prepare_labels(labels)
    acc = FeatureStats(basis, 1, D, torch.float64)
    for chunk in torch.split(X, sizes):
        acc.update(chunk.contiguous()[None])
    st = acc.finalize()
    G, F = direct(X, basis)
    assert st.N == N and bool(st.keep.all())
    assert torch.allclose(st.G[0], G, rtol=1e-11, atol=1e-9)
    # The vocabulary cross-product is uncentred one-hot; only F R is defined, so compare after mixing.
    if vocab:
        t = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
        assert torch.allclose(basis.mix(st.F, t), basis.mix(F[None], t), rtol=1e-10, atol=1e-8)
    else:
        assert torch.allclose(st.F[0], F, rtol=1e-10, atol=1e-8)


def test_batched_models_equal_one_at_a_time():
    N, D = 240, 9
    basis = prepare_labels(make_class_labels(205, N, 7, 3, 2))
    xs = [make_features(206 + i, N, D, shift=10.0 * i) for i in range(3)]
    acc = FeatureStats(basis, 3, D, torch.float64)
    for start in range(0, N, 100):
        acc.update(torch.stack([x[start : start + 100] for x in xs]))
    st = acc.finalize()
    for i, x in enumerate(xs):
        one = FeatureStats(basis, 1, D, torch.float64)
        one.update(x[None])
        ref = one.finalize()
        assert torch.allclose(st.G[i], ref.G[0], rtol=1e-11, atol=1e-9)
        assert torch.allclose(st.F[i], ref.F[0], rtol=1e-10, atol=1e-8)


def test_float32_chunks_with_large_means():
    """float32 features around 1e5: the merged centred Gram matches the float64 one to float32 accuracy."""
    N, D = 4000, 8
    X = (make_features(210, N, D) + 1e5).float()
    basis = prepare_labels(make_dense_labels(210, N, 3, 1))
    acc = FeatureStats(basis, 1, D, torch.float32)
    for chunk in torch.split(X, 512):
        acc.update(chunk.contiguous()[None])
    st = acc.finalize()
    G, F = direct(X.double(), basis)
    assert torch.allclose(st.G[0], G, rtol=1e-3, atol=1e-3 * N)
    assert (st.G[0] - G).abs().max() / G.abs().max() < 1e-4
    # An uncentred float32 Gram would lose everything here: its error is of the size of the data's spread.
    naive = (X.T @ X).double() / N - torch.outer(X.double().mean(0), X.double().mean(0))
    cov = G / N * (X.double().std(0, unbiased=False)[:, None] * X.double().std(0, unbiased=False)[None, :])
    assert (naive - cov).abs().max() > 100 * ((st.G[0] - G).abs().max() / N)


def test_constant_columns_are_decoupled():
    """A constant column keeps its place (models batch) but has a zero F row and no coupling in G."""
    N = 50
    X = torch.cat([make_features(220, N, 3), torch.full((N, 1), 3.0, dtype=torch.float64)], 1)
    basis = prepare_labels(make_dense_labels(220, N, 2, 1))
    acc = FeatureStats(basis, 1, 4, torch.float64)
    acc.update(X[None])
    st = acc.finalize()
    assert st.keep[0].tolist() == [True, True, True, False]
    assert bool((st.F[0, 3] == 0).all()) and bool((st.G[0, 3, :3] == 0).all()) and float(st.G[0, 3, 3]) > 0
    G, F = direct(X[:, :3], basis)
    assert torch.allclose(st.G[0, :3, :3], G, atol=1e-10) and torch.allclose(st.F[0, :3], F, atol=1e-10)
