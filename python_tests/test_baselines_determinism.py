"""Same features, same baseline scores (the same bits) whatever the torch thread count, also for wide features
(D >= N) where a covariance is singular: values that are numerically undefined are computed by a rule that does not
depend on rounding (a rank cutoff, an exact limit) or reported as a tie, never as rounding noise."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import emms_ext
from emms_ext import baselines as bl
from emms_ext.selection import Target, available_metrics, get_metric, saturated
from emms_ext.selection.metrics import EMMS_METRICS

N, C = 60, 6
EPS = np.finfo(np.float64).eps


def features(seed, n, d, shift=0.0, rank=None, dtype=torch.float64):
    """[n, d] features with per-column scales (or of the given rank) and a common offset."""
    g = torch.Generator().manual_seed(seed)
    if rank is not None:
        x = torch.randn(n, rank, generator=g, dtype=torch.float64) @ torch.randn(
            rank, d, generator=g, dtype=torch.float64
        )
    else:
        x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.exp(
            torch.randn(d, generator=g, dtype=torch.float64)
        )
    return (x + shift).to(dtype)


def zoo():
    """Narrow, square (D = N), wide with a large offset, wide of low rank, wide in float32."""
    return {
        "narrow": features(1, N, 10),
        "square": features(2, N, N),
        "wide_offset": features(3, N, 300, shift=100.0),
        "wide_low_rank": features(4, N, 200, rank=20),
        "wide_f32": features(5, N, 150, dtype=torch.float32),
    }


def target():
    y = torch.arange(N) % C
    table = torch.randn(C, 8, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    return Target(labels=y, label_embeddings=emms_ext.ClassLabels(table, y))


def feature_baselines():
    """Every registered metric other than the EMMS modes that scores features (not source-head outputs)."""
    names = [n for n in available_metrics() if n not in EMMS_METRICS and "source_probs" not in get_metric(n).needs]
    assert {"hscore", "hscore_regularized", "sfda", "logme", "emms_one"} <= set(names)
    return names


def same(a: float, b: float) -> bool:
    """The same bits, or both undefined (NaN)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b


def scores_with_threads(names, models, tgt):
    before = torch.get_num_threads()
    out = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # degeneracy / saturation warnings: tested elsewhere
                out[threads] = {(n, m): float(get_metric(n).fn(x, tgt)) for n in names for m, x in models.items()}
    finally:
        torch.set_num_threads(before)
    return out


def test_every_baseline_scores_alike_with_1_and_2_threads():
    names = feature_baselines()
    out = scores_with_threads(names, zoo(), target())
    bad = {k: (out[1][k], out[2][k]) for k in out[1] if not same(out[1][k], out[2][k])}
    assert not bad, f"scores that change with the thread count: {bad}"
    # the wide models' numerically undefined values come out as the exact ties, not as noise
    for m in ("square", "wide_offset", "wide_f32"):
        assert out[1][("hscore", m)] == C - 1
        assert out[1][("emms_one", m)] == 0.0 and out[1][("sfda", m)] == 1.0


# ------------------------------------------------------------------------------------------------ H-score
def np_hscore(X, y, rcond):
    """tr(cov(f)^+ cov(E[f | y])) in numpy float64 with the given relative pseudo-inverse cutoff."""
    Xc = X - X.mean(0)
    G = np.zeros_like(Xc)
    for c in np.unique(y):
        G[y == c] = Xc[y == c].mean(0)
    cf, cg = Xc.T @ Xc / (len(X) - 1), G.T @ G / (len(X) - 1)
    return float(np.trace(np.linalg.pinv(cf, rcond=rcond, hermitian=True) @ cg))


def test_hscore_unchanged_on_well_conditioned_features():
    """Same value as the plain formula (numpy's pinv at rcond 1e-15) where the covariance is well conditioned,
    including an ill-conditioned but resolvable one (eigenvalues down to 1e-8 of the largest)."""
    rng = np.random.default_rng(11)
    for n, d, decay in [(200, 20, 0.0), (120, 40, 8.0)]:
        y = rng.integers(0, 5, n)
        y[:5] = np.arange(5)
        X = (rng.standard_normal((n, d)) + rng.standard_normal((5, d))[y]) * np.logspace(0, -decay / 2, d) + 3.0
        expect = np_hscore(X, y, 1e-15)
        assert abs(bl.hscore(X, y) - expect) <= 1e-8 * expect


def test_hscore_singular_covariance_is_c_minus_1_whatever_the_threads():
    """N = 200 samples of isotropic D = 1280 features: the centred features have rank N - 1, so the
    pseudo-inverse with its cutoff above rounding gives exactly C - 1 (numpy, same cutoff). A cutoff of 1e-15
    inverted rounding noise here: 6.00066 with 1 thread, 6.0 with 2."""
    n, d, classes = 200, 1280, 7
    g = torch.Generator().manual_seed(4)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    X = X @ torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    y = torch.arange(n) % classes
    expect = np_hscore(X.numpy(), y.numpy(), max(n, d) * EPS)
    assert expect == pytest.approx(classes - 1, rel=1e-10)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = bl.hscore(X, y)
        torch.set_num_threads(2)
        two = bl.hscore(X, y)
    finally:
        torch.set_num_threads(before)
    assert one == two == classes - 1 and one == pytest.approx(expect, rel=1e-10)


def test_hscore_regularized_matches_sklearn_on_wide_features():
    from sklearn.covariance import LedoitWolf

    n, d = 50, 120
    X = features(31, n, d, shift=2.0).numpy()
    y = np.arange(n) % 4
    lw = LedoitWolf().fit(X)
    Xc = X - X.mean(0)
    G = np.zeros_like(Xc)
    for c in range(4):
        G[y == c] = Xc[y == c].mean(0)
    expect = np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ ((1 - lw.shrinkage_) * G.T @ G / (n - 1)))
    assert 0 < lw.shrinkage_ < 1 and abs(bl.hscore_regularized(X, y) - expect) <= 1e-8 * abs(expect)


# --------------------------------------------------------------------------------------------------- SFDA
def test_sfda_saturates_explicitly():
    """10 samples per class, 15 classes, 384-d features: the Fisher classifier separates its own samples, every
    model scores exactly 1.0 with a SaturationWarning, and ``saturated`` names the tie."""
    n, classes = 150, 15
    y = torch.arange(n) % classes
    models = {f"m{i}": features(40 + i, n, 384, shift=float(i)) * scale for i, scale in enumerate((0.05, 1.0, 20.0))}
    scores = {}
    for name, x in models.items():
        with pytest.warns(bl.SaturationWarning, match=r"sfda saturates.*N = 150.*D = 384.*C = 15"):
            scores[name] = bl.sfda(x, y)
    assert set(scores.values()) == {1.0}
    msg = saturated(scores, "sfda", n_samples=n, widths={k: 384 for k in models})
    assert msg is not None and "all 3 candidates" in msg and "D >= N = 150 for 3 of the 3 tied" in msg


def test_sfda_singular_scatter_is_its_limit():
    """Duplicated columns make the within-class scatter singular without moving the class means along the
    null directions: the limit of the regularized classifier is then the one of the de-duplicated
    features, checked against the published algorithm (numpy/scipy) on those. Features scaled so that the
    shrinkage exp(-5 lambda_max) is exactly 0 for both."""
    from test_baselines import np_sfda

    rng = np.random.default_rng(5)
    y = np.arange(90) % 3
    Z = 30 * (rng.standard_normal((90, 6)) + 0.4 * rng.standard_normal((3, 6))[y])
    X = np.concatenate([Z, Z], axis=1) / np.sqrt(2)
    expect = np_sfda(Z, y)
    assert 0.3 < expect < 0.999
    assert abs(bl.sfda(X, y) - expect) <= 1e-8 and abs(bl.sfda(Z, y) - expect) <= 1e-8


# ------------------------------------------------------------------------------------------------- EMMS(One)
def test_emms_one_exact_fit_scores_zero():
    X = features(51, N, N + 5)
    tgt = target()
    with pytest.warns(emms_ext.EMMSDegeneracyWarning):
        assert bl.emms_one(X, tgt.label_embeddings) == 0.0
    narrow = bl.emms_one(X[:, :10], tgt.label_embeddings)
    assert narrow < -1e-3  # a real fit keeps its residual
