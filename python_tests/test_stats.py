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


def _f32_exact_centring_error(X: torch.Tensor, G: torch.Tensor) -> float:
    """Largest error of the standardized float32 Gram of X centred on its exact mean (the float32 floor)."""
    X64 = X.double()
    Xc = (X64 - X64.mean(0)).float()
    s = X64.std(0, unbiased=False) + EPS_STD
    return float(((Xc.T @ Xc).double() / (s[:, None] * s[None, :]) - G).abs().max())


@pytest.mark.parametrize("vocab", [False, True])
@pytest.mark.parametrize("layout", ["sorted by class", "one row in 11 a cluster"])
def test_a_chunk_centred_on_a_shift_from_drawn_rows(vocab, layout):
    """A chunk of more than 512 rows is centred on the mean of 512 drawn rows, its remaining mean measured and
    taken out: float32 features around 1e4, rows sorted by class, or every 11th row (the spacing of 512 evenly
    spaced rows of 6000) in a far cluster, which evenly spaced rows would see alone. The Gram stays at the
    float32 floor of centring on the exact mean, F as tight."""
    N, D, C = 6000, 8, 6
    g = torch.Generator().manual_seed(215)
    y = torch.arange(N) * C // N if layout == "sorted by class" else (torch.arange(N) % (N // 512) == 0).long()
    centers = 3.0 * torch.randn(C, D, generator=g, dtype=torch.float64)
    X = (torch.randn(N, D, generator=g, dtype=torch.float64) + centers[y] + 1e4).float()
    labels = make_class_labels(215, N, C, 3, 2) if vocab else make_dense_labels(215, N, 3, 2, X.double())
    basis = prepare_labels(labels)
    acc = FeatureStats(basis, 1, D, torch.float32)
    acc.update(X[None])
    st = acc.finalize()
    G, F = direct(X.double(), basis)
    floor = _f32_exact_centring_error(X, G)
    err = float((st.G[0] - G).abs().max())
    assert err <= 2 * floor, (err, floor)
    assert abs(float(st.mean[0].mean()) - float(X.double().mean())) < 1e-9 * 1e4
    t = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
    Fm, ref = (basis.mix(st.F, t), basis.mix(F[None], t)) if vocab else (st.F, F[None])
    assert float((Fm - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
