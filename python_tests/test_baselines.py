"""Baselines other than LogME, each against an independent float64 implementation written here (numpy loops,
direct formulas, scipy / sklearn), to 1e-6 relative; registry adapters; inputs never mutated."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

import emms_ext
from emms_ext import baselines as bl
from emms_ext.selection import Target, get_metric


def problem(seed, N, D, C, sep=1.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    y[:C] = np.arange(C)
    X = rng.standard_normal((N, D)) + sep * rng.standard_normal((C, D))[y] + 0.5
    return X, y


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


CASES = [(0, 150, 8, 4), (1, 80, 30, 3), (2, 300, 5, 6)]


# ------------------------------------------------------------------------------------------- H-score
def np_cov(x):
    xm = x - x.mean(0)
    return xm.T @ xm / (len(x) - 1)


def np_hscore_parts(X, y):
    g = np.zeros_like(X)
    for c in np.unique(y):
        g[y == c] = X[y == c].mean(0)
    return np_cov(X), np_cov(g)


@pytest.mark.parametrize("seed,N,D,C", CASES)
def test_hscore(seed, N, D, C):
    X, y = problem(seed, N, D, C)
    cf, cg = np_hscore_parts(X, y)
    assert (
        rel(bl.hscore(torch.from_numpy(X), torch.from_numpy(y)), np.trace(np.linalg.pinv(cf, rcond=1e-15) @ cg)) < 1e-6
    )


@pytest.mark.parametrize("seed,N,D,C", CASES + [(3, 40, 60, 3)])
def test_hscore_regularized(seed, N, D, C):
    from sklearn.covariance import LedoitWolf

    X, y = problem(seed, N, D, C)
    lw = LedoitWolf(assume_centered=False).fit(X)
    cov, a = bl.ledoit_wolf(torch.from_numpy(X))
    assert abs(a - lw.shrinkage_) < 1e-10 and np.allclose(cov.numpy(), lw.covariance_, rtol=1e-10, atol=1e-12)
    _, cg = np_hscore_parts(X, y)
    expect = np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ ((1 - lw.shrinkage_) * cg))
    assert rel(bl.hscore_regularized(X, y), expect) < 1e-6


# ---------------------------------------------------------------------------------------- LEEP / NCE
def source_probs(seed, N, Cs, y=None):
    rng = np.random.default_rng(seed + 100)
    logits = rng.standard_normal((N, Cs)) * 2
    if y is not None:
        logits[np.arange(N), y % Cs] += 2
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def np_leep(theta, y):
    N, Cs = theta.shape
    classes = np.unique(y)
    joint = np.zeros((len(classes), Cs))
    for i in range(N):
        joint[np.searchsorted(classes, y[i])] += theta[i] / N
    cond = joint / joint.sum(0)
    total = 0.0
    for i in range(N):
        total += np.log(sum(cond[np.searchsorted(classes, y[i]), z] * theta[i, z] for z in range(Cs)))
    return total / N


def np_nce(theta, y):
    z = theta.argmax(1)
    out = 0.0
    for a in np.unique(y):
        for b in np.unique(z):
            pab = np.mean((y == a) & (z == b))
            if pab > 0:
                out += pab * np.log(pab / np.mean(z == b))
    return out


@pytest.mark.parametrize("seed,N,C,Cs", [(0, 100, 4, 7), (1, 300, 10, 5), (2, 50, 2, 20)])
def test_leep_nce(seed, N, C, Cs):
    _, y = problem(seed, N, 2, C)
    theta = source_probs(seed, N, Cs, y)
    assert rel(bl.leep(torch.from_numpy(theta), torch.from_numpy(y)), np_leep(theta, y)) < 1e-6
    assert rel(bl.nce(theta, y), np_nce(theta, y)) < 1e-6
    assert rel(bl.nce(np.log(theta), y), np_nce(theta, y)) < 1e-12  # NCE reads only the argmax


def test_nleep():
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    X, y = problem(4, 200, 12, 4)
    Xc = X - X.mean(0)
    pca = PCA(svd_solver="full").fit(Xc)
    d = int(np.searchsorted(np.cumsum(pca.explained_variance_ratio_), 0.8)) + 1
    Z = PCA(n_components=d, svd_solver="full").fit_transform(Xc)
    probs = GaussianMixture(n_components=4, covariance_type="diag", random_state=0).fit(Z).predict_proba(Z)
    assert rel(bl.nleep(X, y), np_leep(probs, y)) < 1e-6


# ------------------------------------------------------------------------------------------- TransRate
def np_coding_rate(Z, eps):
    n, d = Z.shape
    return 0.5 * np.linalg.slogdet(np.eye(d) + 1 / (n * eps) * Z.T @ Z)[1]


@pytest.mark.parametrize("seed,N,D,C", CASES + [(3, 30, 50, 3)])
def test_transrate(seed, N, D, C):
    X, y = problem(seed, N, D, C)
    Z = X - X.mean(0)
    expect = np_coding_rate(Z, 1e-4) - sum(np_coding_rate(Z[y == c], 1e-4) for c in range(C)) / C
    assert rel(bl.transrate(X, y), expect) < 1e-6


# ------------------------------------------------------------------------------------------------ SFDA
def np_sfda(X, y):
    """The published algorithm step by step: generalized eigenproblem (scipy) with every eigenvector,
    power-iteration shrinkage, double softmax, in-place ConfMix on a copy, second FDA."""
    X = np.array(X, dtype=np.float64, copy=True)

    def fit(X, shrink):
        classes = np.unique(y)
        D = X.shape[1]
        priors = np.array([np.mean(y == c) for c in classes])
        means = np.stack([X[y == c].mean(0) for c in classes])
        Sw = sum(priors[i] * np.cov(X[y == c].T, bias=True) for i, c in enumerate(classes))
        if shrink is None:
            v = Sw.sum(1)
            for _ in range(3):
                w = Sw @ v
                w = w / np.linalg.norm(w)
                v = Sw @ w
                v = v / np.linalg.norm(v)
            shrink = float(np.exp(-5 * (v @ Sw @ w)))
        emp = np.cov(X.T, bias=True)
        St = (1 - shrink) * emp + shrink * np.trace(emp) / D * np.eye(D)
        Sws = (1 - shrink) * Sw + shrink * np.trace(Sw) / D * np.eye(D)
        _, V = scipy.linalg.eigh(St - Sw, Sws)
        coef = means @ V @ V.T
        intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
        s = X @ coef.T + intercept
        s = np.exp(s - s.max(1, keepdims=True))
        return s / s.sum(1, keepdims=True), shrink, means

    prob, shrink, means = fit(X, None)
    prob = np.exp(prob) / np.exp(prob).sum(1, keepdims=True)
    C = means.shape[0]
    for c in range(C):
        others = (means.sum(0) - means[c]) / (C - 1)
        idx = np.where(y == c)[0]
        p = prob[idx, c][:, None]
        X[idx] = p * X[idx] + (1 - p) * others
    prob2, _, _ = fit(X, shrink)
    return float(prob2[np.arange(len(y)), y].mean())


@pytest.mark.parametrize("seed,N,D,C", CASES)
def test_sfda_matches_and_does_not_mutate(seed, N, D, C):
    X, y = problem(seed, N, D, C, sep=0.7)
    Xt = torch.from_numpy(X.copy())
    yt = torch.from_numpy(y.copy())
    score = bl.sfda(Xt, yt)
    assert torch.equal(Xt, torch.from_numpy(X)) and torch.equal(yt, torch.from_numpy(y))
    Xn = X.copy()
    assert rel(bl.sfda(Xn, y), np_sfda(X, y)) < 1e-6 and rel(score, np_sfda(X, y)) < 1e-6
    assert np.array_equal(Xn, X)
    Xf = torch.from_numpy(X).double()  # a float64 tensor is used without a copy by the conversion: still intact
    bl.sfda(Xf, y)
    assert torch.equal(Xf, torch.from_numpy(X))


# ------------------------------------------------------------------------------------------------- GBC
def np_gbc(Z, y):
    classes = np.unique(y)
    stats = {c: (Z[y == c].mean(0), Z[y == c].var(0)) for c in classes}
    total = 0.0
    for a in classes:
        for b in classes:
            if a == b:
                continue
            (m1, v1), (m2, v2) = stats[a], stats[b]
            v = (v1 + v2) / 2
            db = np.sum((m1 - m2) ** 2 / v) / 8 + 0.5 * (
                np.sum(np.log(v)) - 0.5 * np.sum(np.log(v1)) - 0.5 * np.sum(np.log(v2))
            )
            total += np.exp(-db)
    return -total


@pytest.mark.parametrize("seed,N,D,C", CASES)
def test_gbc(seed, N, D, C):
    from sklearn.decomposition import PCA

    X, y = problem(seed, N, D, C, sep=0.5)
    assert rel(bl.gbc(X, y, pca_dim=None), np_gbc(X, y)) < 1e-6
    Z = PCA(n_components=4, svd_solver="full").fit_transform(X)
    assert rel(bl.gbc(X, y, pca_dim=4), np_gbc(Z, y)) < 1e-6


# ------------------------------------------------------------------------------------------------ PARC
@pytest.mark.parametrize("seed,N,D,C", [(0, 60, 8, 4), (1, 90, 40, 5)])
def test_parc(seed, N, D, C):
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    X, y = problem(seed, N, D, C, sep=0.5)
    Xs = StandardScaler().fit_transform(X)
    low = np.tril_indices(N, -1)
    onehot = np.eye(C)[y]

    def rdm(v):  # PARC's rounding keeps exact ties exact
        return np.round((1 - np.corrcoef(v))[low], 10)

    lab = rdm(onehot)
    expect = scipy.stats.spearmanr(rdm(Xs), lab)[0] * 100
    assert rel(bl.parc(X, y, pca_dim=None), expect) < 1e-6
    Z = PCA(n_components=6, svd_solver="full").fit_transform(Xs)
    expect = scipy.stats.spearmanr(rdm(Z), lab)[0] * 100
    assert rel(bl.parc(X, y, pca_dim=6), expect) < 1e-6
    T = np.random.default_rng(seed).standard_normal((N, 3))
    expect = scipy.stats.spearmanr(rdm(Xs), rdm(T))[0] * 100
    assert rel(bl.parc(X, T, regression=True, pca_dim=None), expect) < 1e-6


# ------------------------------------------------------------------------------------------------- kNN
def np_knn(X, y, k, cosine=False):
    if cosine:
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    N = len(y)
    hits = 0
    for i in range(N):
        d = [(np.linalg.norm(X[i] - X[j]) if not cosine else 1 - X[i] @ X[j], j) for j in range(N) if j != i]
        nn = [j for _, j in sorted(d)[:k]]
        votes = {}
        for pos, j in enumerate(nn):
            c, f = votes.get(y[j], (0, pos))
            votes[y[j]] = (c + 1, f)
        pred = max(votes, key=lambda c: (votes[c][0], -votes[c][1]))
        hits += pred == y[i]
    return hits / N


@pytest.mark.parametrize("k", [1, 4, 5])
@pytest.mark.parametrize("cosine", [False, True])
def test_knn(k, cosine):
    X, y = problem(5, 90, 6, 4, sep=0.8)
    got = bl.knn(X, y, k=k, metric="cosine" if cosine else "euclidean", chunk=32)
    assert rel(got, np_knn(X, y, k, cosine)) < 1e-12


# -------------------------------------------------------------------------------------------- EMMS(One)
def test_emms_one():
    from emms_ext.ops import reference

    X, y = problem(6, 80, 6, 5)
    g = torch.Generator().manual_seed(6)
    table = torch.randn(5, 8, 3, generator=g, dtype=torch.float64)
    Z = table[torch.from_numpy(y)]
    ones = [reference.emms_score(X, Z[:, :, k : k + 1])["score"] for k in range(3)]
    for k in range(3):
        assert rel(bl.emms_one(X, Z, embedder=k), ones[k]) < 1e-6
        assert rel(bl.emms_one(X, emms_ext.ClassLabels(table, y), embedder=k), ones[k]) < 1e-6
        assert rel(bl.emms_one(X, [Z[:, :, j] for j in range(3)], embedder=k), ones[k]) < 1e-6
    assert rel(bl.emms_one(X, Z, "best"), max(ones)) < 1e-6
    assert rel(bl.emms_one(X, (table, torch.from_numpy(y)), "mean"), sum(ones) / 3) < 1e-6
    with pytest.raises(ValueError, match=r"embedder must be an index in \[0, 3\)"):
        bl.emms_one(X, Z, 3)


# -------------------------------------------------------------------------------------------- registry
def test_registry_adapters():
    X, y = problem(7, 60, 5, 3)
    yt = torch.from_numpy(y)
    theta = source_probs(7, 60, 4, y)
    Z = torch.randn(3, 6, 2, dtype=torch.float64)
    target = Target(labels=yt, label_embeddings=emms_ext.ClassLabels(Z, yt), source_probs={"m": theta})
    Xt = torch.from_numpy(X)
    assert get_metric("logme").fn(Xt, target) == bl.logme(Xt, yt)
    assert get_metric("logme").fn(Xt, Target(targets=Xt[:, :2] * 2)) == bl.logme(Xt, Xt[:, :2] * 2, regression=True)
    assert get_metric("leep").fn(Xt, target, model="m") == bl.leep(theta, y)
    assert get_metric("nce").fn(Xt, target) == bl.nce(theta, y)
    assert get_metric("logme_flabels").fn(Xt, target) == bl.logme_flabels(Xt, target.label_embeddings)
    assert get_metric("knn").fn(Xt, target, k=3) == bl.knn(Xt, yt, k=3)
    assert get_metric("parc").relative and not get_metric("logme").relative
    for name in ["hscore", "hscore_regularized", "transrate", "sfda", "gbc", "emms_one", "nleep"]:
        assert np.isfinite(get_metric(name).fn(Xt, target))
    with pytest.raises(ValueError, match="needs target.labels"):
        get_metric("sfda").fn(Xt, Target())
    with pytest.raises(ValueError, match="source-head probabilities"):
        get_metric("leep").fn(Xt, Target(labels=yt, source_probs={"a": theta, "b": theta}))


@pytest.mark.parametrize(
    "fn", [bl.hscore, bl.hscore_regularized, bl.transrate, bl.sfda, bl.gbc, bl.parc, bl.knn, bl.logme, bl.nleep]
)
def test_bad_inputs_name_the_argument(fn):
    X, y = problem(8, 30, 4, 3)
    with pytest.raises(ValueError, match=r"labels must be \[N\] with N = 30"):
        fn(X, y[:20])
    with pytest.raises(ValueError, match=r"features must be \[N, D\]"):
        fn(X[:, :, None], y)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="features must be finite"):
        fn(bad, y)


def test_leep_bad_probs():
    with pytest.raises(ValueError, match=r"source_probs must hold probabilities"):
        bl.leep(np.full((4, 2), 0.7), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"labels must be \[N\] with N = 4"):
        bl.leep(np.full((4, 2), 0.5), np.array([0, 1, 0]))


def test_sfda_survives_more_features_than_samples():
    """D > N - C with a large top eigenvalue (no shrinkage): the scatter is singular and the class means differ
    along its null space, so the classifier's limit separates the samples: exactly 1, flagged as saturated."""
    g = torch.Generator().manual_seed(77)
    X = 50 * torch.randn(40, 120, generator=g, dtype=torch.float64)
    y = torch.arange(40) % 4
    with pytest.warns(bl.SaturationWarning, match="sfda saturates"):
        assert bl.sfda(X, y) == 1.0
