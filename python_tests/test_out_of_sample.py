"""mode="gcv" / "loo" against explicit hat matrices and explicit leave-one-out refits (float64)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import make_class_labels, make_dense_labels, make_features, rel_err
from testing import needs_cuda

import emms_ext
from emms_ext.core.factor import GCVFactor
from emms_ext.ops import reference

GRID = [0.05, 0.5, 3.0, 20.0, 150.0]


def _check(res, ref):
    assert rel_err(res.score, ref["score"]) < 1e-9
    assert res.ridge == pytest.approx(ref["ridge"], rel=1e-12)
    assert np.allclose(res.error_path, ref["path"], rtol=1e-9)
    assert torch.allclose(res.t, ref["t"], atol=1e-6)
    assert abs(float(res.t.sum()) - 1) < 1e-12 and bool((res.t >= 0).all())


@pytest.mark.parametrize("mode", ["gcv", "loo"])
@pytest.mark.parametrize(
    "seed,N,D,K,vocab",
    [(0, 40, 7, 2, False), (1, 36, 9, 3, True), (2, 24, 40, 2, False), (3, 30, 45, 3, True), (4, 50, 5, 1, False)],
)
def test_matches_explicit_hat_matrices_and_refits(monkeypatch, mode, seed, N, D, K, vocab):
    X = make_features(seed, N, D, shift=2.0)
    X[:, 1] = -4.0  # a constant column: standardizes to zero, no degree of freedom
    if vocab:
        table, idx = make_class_labels(seed, N, 6, 4, K)
        Z = table[idx]
    else:
        Z = make_dense_labels(seed, N, 4, K, X)
    ref = reference.out_of_sample_score(X, Z, mode, GRID)
    # gcv: both routes to the grid (eigendecomposition; tridiagonal form, chosen by size for wide Grams)
    for tridiagonal in (False, True) if mode == "gcv" else (False,):
        monkeypatch.setattr(GCVFactor, "tridiagonal_pays", staticmethod(lambda *a, on=tridiagonal: on))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no degeneracy warning out of sample, even for D >= N
            res = emms_ext.emms_score(X, Z, mode, ridge=GRID)
        _check(res, ref)
        assert res.mode == mode and res.ridge_grid == pytest.approx(GRID)
        assert (res.gcv if mode == "gcv" else res.loo) == pytest.approx(-res.score, rel=1e-12)
        if mode == "gcv":
            assert res.df == pytest.approx(ref["df"], rel=1e-9) and 1 < res.df < N


@pytest.mark.parametrize("mode", ["gcv", "loo"])
def test_default_grid_is_relative_to_the_gram(mode):
    N, D = 60, 8
    X = make_features(20, N, D)
    Z = make_dense_labels(20, N, 3, 2, X)
    res = emms_ext.emms_score(X, Z, mode)
    Xs = reference.standardize(X)
    grid = (torch.linalg.eigvalsh(Xs.T @ Xs).mean() * GCVFactor.GRID).tolist()
    assert res.ridge_grid == pytest.approx(grid, rel=1e-10)
    ref = reference.out_of_sample_score(X, Z, mode, grid)
    _check(res, ref)


def test_gcv_and_loo_agree_roughly_and_exceed_in_sample_error():
    """Both estimate the same out-of-sample error; both are above the in-sample residual."""
    N, D = 200, 20
    X = make_features(30, N, D)
    Z = make_dense_labels(30, N, 5, 2, X)
    exact = emms_ext.emms_score(X, Z).score
    gcv, loo = emms_ext.emms_score(X, Z, "gcv").score, emms_ext.emms_score(X, Z, "loo").score
    assert gcv < exact and loo < exact
    assert rel_err(gcv, loo) < 0.05


@pytest.mark.parametrize("mode", ["gcv", "loo"])
def test_wide_models_stay_finite_and_distinct(mode):
    """D >= N: in-sample EMMS ties every model at 0; out of sample they stay apart and finite."""
    N = 40
    Z = make_dense_labels(40, N, 4, 2)
    zoo = {f"w{d}": make_features(41 + d, N, d) for d in (40, 60, 100)}
    zoo["useful"] = torch.cat([Z[:, :, 0] + 0.3 * torch.randn(N, 4, dtype=torch.float64), zoo["w60"]], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = emms_ext.emms_scores(zoo, Z, mode)
    scores = out.scores
    assert all(np.isfinite(list(scores.values()))) and len({round(s, 10) for s in scores.values()}) == len(zoo)
    assert out.order[0] == "useful"
    with pytest.warns(emms_ext.EMMSDegeneracyWarning):
        tied = emms_ext.emms_scores(zoo, Z).scores
    assert max(abs(s) for s in tied.values()) < 1e-8


def test_streams_gcv_equals_in_memory_and_loo_needs_memory():
    N, D = 90, 12
    X = make_features(50, N, D, shift=5.0)
    Z = make_dense_labels(50, N, 3, 2, X)
    mem = emms_ext.emms_score(X, Z, "gcv", return_W=True)
    streamed = emms_ext.emms_score(iter(torch.split(X, 25)), Z, "gcv", return_W=True)
    assert rel_err(streamed.score, mem.score) < 1e-10 and streamed.ridge == pytest.approx(mem.ridge)
    assert torch.allclose(streamed.W, mem.W, atol=1e-9 * float(mem.W.abs().max()))
    with pytest.raises(ValueError, match="mode='loo' needs in-memory features"):
        emms_ext.emms_score(iter(torch.split(X, 25)), Z, "loo")
    with pytest.warns(UserWarning, match="skipped"):
        out = emms_ext.emms_scores({"mem": X, "stream": iter(torch.split(X, 25))}, Z, "loo", errors="skip")
    assert list(out) == ["mem"] and "in-memory" in out.failures["stream"]


@pytest.mark.parametrize("mode", ["gcv", "loo"])
def test_weights_are_the_ridge_fit_of_the_chosen_mixture(mode):
    N, D, L = 70, 9, 3
    X = make_features(60, N, D)
    Z = make_dense_labels(60, N, L, 2, X)
    X_before, Z_before = X.clone(), Z.clone()
    res = emms_ext.emms_score(X, Z, mode, return_W=True)
    Xs, Zs = reference.standardize(X), reference.label_stack(Z)
    W = torch.linalg.solve(Xs.T @ Xs + res.ridge * torch.eye(D, dtype=torch.float64), Xs.T @ (Zs @ res.t))
    assert torch.allclose(res.W, W, atol=1e-9 * float(W.abs().max()))
    assert torch.equal(X, X_before) and torch.equal(Z, Z_before)  # inputs untouched


def test_float32_features_follow_the_float64_score():
    N, D = 120, 16
    X = make_features(70, N, D)
    Z = make_dense_labels(70, N, 4, 2, X)
    s64 = emms_ext.emms_score(X, Z, "gcv").score
    s32 = emms_ext.emms_score(X.float(), Z.float(), "gcv").score
    assert rel_err(s32, s64) < 1e-5


@pytest.mark.parametrize("ridge", [[], [1.0, -2.0], [float("nan")], "gcv", [[1.0]]])
def test_bad_ridge_grid_is_named(ridge):
    X = make_features(80, 30, 4)
    Z = make_dense_labels(80, 30, 2, 2, X)
    with pytest.raises(ValueError, match="ridge must be None .* or a sequence of finite ridges > 0"):
        emms_ext.emms_score(X, Z, "gcv", ridge=ridge)


def test_single_ridge_number_is_a_grid_of_one():
    X = make_features(81, 50, 6)
    Z = make_dense_labels(81, 50, 2, 2, X)
    res = emms_ext.emms_score(X, Z, "loo", ridge=2.5)
    assert res.ridge == 2.5 and res.ridge_grid == [2.5]
    assert rel_err(res.score, reference.out_of_sample_score(X, Z, "loo", [2.5])["score"]) < 1e-9


@needs_cuda
@pytest.mark.parametrize("mode", ["gcv", "loo"])
def test_out_of_sample_on_gpu_matches_the_reference_for_wide_features(mode):
    N, D, grid = 30, 50, [0.1, 1.0, 10.0, 100.0]
    X = make_features(310, N, D)
    Z = make_dense_labels(310, N, 4, 2, X)
    res = emms_ext.emms_score(X.cuda(), Z, mode, ridge=grid)
    ref = reference.out_of_sample_score(X, Z, mode, grid)
    assert rel_err(res.score, ref["score"]) < 1e-9 and res.ridge == ref["ridge"]


@needs_cuda
@pytest.mark.parametrize("mode, ridge", [("gcv", None), ("loo", None), ("exact", "gcv")])
def test_class_labels_on_gpu_match_the_cpu(mode, ridge):
    # The class table stays on the CPU; the out-of-sample factors multiply by it on the GPU.
    N, D = 80, 12
    X = make_features(320, N, D)
    table, y = make_class_labels(320, N, 5, 4, 2)
    cpu = emms_ext.emms_score(X, (table, y), mode, ridge=ridge)
    gpu = emms_ext.emms_score(X.cuda(), (table, y), mode, ridge=ridge)
    assert rel_err(gpu.score, cpu.score) < 1e-9 and gpu.ridge == pytest.approx(cpu.ridge, rel=1e-9)


def test_gcv_skips_ridges_whose_residual_is_rounding():
    # Tiny features with D >> N: at the smallest ridges the fit interpolates, RSS = A - 2 B1 + B2 is pure
    # cancellation error and (1 - df/N)^2 nearly 0. Their ratio once won the grid with a *negative* error
    # (a positive score) whose value followed the thread count; such ridges are now skipped.
    g = torch.Generator().manual_seed(0)
    X = (torch.randn(60, 1280, generator=g) * 1e-9).float()
    labels = emms_ext.ClassLabels(torch.randn(10, 384, 2, generator=g), torch.arange(60) % 10)
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            runs.append(emms_ext.emms_score(X, labels, "gcv"))
    finally:
        torch.set_num_threads(threads)
    one, two = runs
    assert one.score < 0  # minus an estimated squared error
    assert one.ridge == two.ridge and one.score == pytest.approx(two.score, rel=1e-12, abs=0)
    assert one.error_path[0] == float("inf")  # the smallest ridge's residual is rounding: skipped
    assert all(e > 0 for e in one.error_path)


def test_tridiagonal_route_is_chosen_where_it_pays():
    assert GCVFactor.tridiagonal_pays(2048, 100, 29)  # the benchmark's headline shape
    assert not GCVFactor.tridiagonal_pays(1024, 100, 29)  # 100 classes: break-even near here
    assert not GCVFactor.tridiagonal_pays(128, 2, 29)  # narrow: torch's batched eigh
    assert not GCVFactor.tridiagonal_pays(2048, 3072, 29)  # dense labels, K L columns


@pytest.mark.parametrize("vocab", [True, False])
@pytest.mark.parametrize("mode,ridge", [("gcv", None), ("exact", "gcv")])
def test_tridiagonal_grid_equals_the_eigendecomposition_grid(monkeypatch, mode, ridge, vocab):
    # Both routes to the ridge grid on one zoo: a model with constant columns (reflectors with tau = 0), a
    # wide one with null directions (D > N: the eigendecomposition takes it over) and one across the
    # reflector blocks. Same choice, and the grid, df and scores agree to rounding.
    from emms_ext.core import linalg

    N = 260
    zoo = {"dropped": make_features(30, N, 140), "wide": make_features(31, N, 300), "blocks": make_features(32, N, 131)}
    zoo["dropped"][:, [0, 70, 139]] = 3.0
    if vocab:
        Z = make_class_labels(30, N, 3, 4, 2)
    else:
        Z = make_dense_labels(30, N, 1, 2, zoo["blocks"])
    calls = []
    tridiagonalize = linalg.tridiagonalize
    monkeypatch.setattr(linalg, "tridiagonalize", lambda *a: calls.append(1) or tridiagonalize(*a))
    import emms_ext.core.factor as factor

    monkeypatch.setattr(factor, "tridiagonalize", linalg.tridiagonalize)
    out = {}
    for route in (True, False):
        monkeypatch.setattr(GCVFactor, "tridiagonal_pays", staticmethod(lambda *a, route=route: route))
        calls.clear()
        out[route] = emms_ext.emms_scores(zoo, Z, mode=mode, ridge=ridge)
        assert len(calls) == (len(zoo) if route else 0)
    for name in zoo:
        tri, eig = out[True][name], out[False][name]
        assert tri.ridge == eig.ridge  # the same grid entry
        assert rel_err(tri.score, eig.score) < 1e-10 and rel_err(tri.df, eig.df) < 1e-10
        if mode == "gcv":
            # (the wide model's smallest ridges nearly interpolate: their path is cancellation, rtol 1e-6)
            assert np.allclose(tri.error_path, eig.error_path, rtol=1e-6 if name == "wide" else 1e-10)
            assert rel_err(tri.gcv, eig.gcv) < 1e-10
        assert torch.allclose(tri.t, eig.t, atol=1e-8)


def test_tridiagonal_grid_of_float32_features_follows_the_float64_score(monkeypatch):
    # float32 features: their Gram is formed in float32, and so is its tridiagonal reduction
    X = make_features(40, 700, 300)
    table, idx = make_class_labels(40, 700, 4, 3, 2)
    s64 = emms_ext.emms_score(X, (table, idx), "gcv")
    monkeypatch.setattr(GCVFactor, "tridiagonal_pays", staticmethod(lambda *a: True))
    s32 = emms_ext.emms_score(X.float(), (table, idx), "gcv")
    assert s32.ridge == pytest.approx(s64.ridge, rel=1e-12)
    assert rel_err(s32.score, s64.score) < 1e-5
    assert np.allclose(s32.error_path, s64.error_path, rtol=1e-5)
