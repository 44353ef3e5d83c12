"""mode="evidence": the label mixture t that maximizes LogME's evidence of Z t, checked against LogME run on
an explicitly formed Z t (float64 reference) over grids of t, for dense, class and several-rows labels."""

from __future__ import annotations

import pytest
import torch

import emms_ext
from emms_ext import ClassLabels, FreeTextLabels
from emms_ext.baselines.logme import logme
from emms_ext.core.evidence import evidence_at
from emms_ext.core.labels import prepare_labels
from emms_ext.ops import reference
from emms_ext.selection.ranking import SCORE_DIGITS


def _problem(seed: int, N: int = 150, D: int = 10, L: int = 4, K: int = 2):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, D, dtype=torch.float64, generator=g)
    Z = torch.randn(N, L, K, dtype=torch.float64, generator=g)
    Z[:, :, 0] += 0.9 * X[:, :L]  # embedder 0 is predictable from X, embedder 1 a little
    Z[:, :, 1] += 0.3 * X[:, L : 2 * L]
    return X, Z


def _simplex_grid(K: int, n: int) -> list[torch.Tensor]:
    if K == 2:
        return [torch.tensor([a, 1 - a], dtype=torch.float64) for a in torch.linspace(0, 1, n).tolist()]
    pts = []
    for i in range(n):
        for j in range(n - i):
            a, b = i / (n - 1), j / (n - 1)
            pts.append(torch.tensor([a, b, max(0.0, 1 - a - b)], dtype=torch.float64))
    return pts


def _reference(X, labels, t):
    """LogME regression on the explicitly mixed standardized F-labels Z t (features repeated per label row)."""
    if isinstance(labels, ClassLabels):
        table = torch.as_tensor(labels.table)  # [C, L, K]
        blocks = [table[labels.indices, :, k] for k in range(table.shape[-1])]
        rows = X
    elif isinstance(labels, FreeTextLabels):
        order = torch.argsort(labels.sample_index, stable=True)
        blocks = [b[order] for b in labels.labels]
        rows = X[labels.sample_index[order]]
    else:
        blocks, rows = [labels[:, :, k] for k in range(labels.shape[-1])], X
    Zs = reference.label_stack(blocks)  # [M, L, K] standardized like EMMS
    return logme(rows, Zs @ t, regression=True)


def _labels(kind: str, X, Z):
    if kind == "dense":
        return Z
    if kind == "classes":
        g = torch.Generator().manual_seed(3)
        idx = (X[:, 0] > 0).long() + 2 * (X[:, 1] > 0).long()  # 4 classes, predictable from X
        table = torch.randn(4, Z.shape[1], Z.shape[2], dtype=torch.float64, generator=g)
        return ClassLabels(table, idx)
    idx = torch.tensor([i for i in range(X.shape[0]) for _ in range(1 + i % 3)])  # several rows per sample
    rows = [Z[idx, :, k] + 0.2 * torch.randn(len(idx), Z.shape[1], dtype=torch.float64) for k in range(Z.shape[2])]
    return FreeTextLabels(rows, idx, X.shape[0])


@pytest.mark.parametrize("kind", ["dense", "classes", "several_rows"])
@pytest.mark.parametrize("K", [2, 3])
def test_evidence_at_t_is_logme_of_the_mixed_target(kind, K):
    X, Z = _problem(10 + K, K=K)
    labels = _labels(kind, X, Z)
    basis = prepare_labels(labels)
    F = basis.repeat_rows(X)
    for t in _simplex_grid(K, 5):
        want = _reference(X, labels, t)
        assert float(evidence_at(F, basis, t).mean()) == pytest.approx(want, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("kind", ["dense", "classes", "several_rows"])
def test_the_optimum_is_at_least_the_best_of_a_fine_grid(kind):
    X, Z = _problem(20)
    labels = _labels(kind, X, Z)
    r = emms_ext.emms_score(X, labels, "evidence")
    grid = [_reference(X, labels, t) for t in _simplex_grid(2, 101)]
    assert r.score >= max(grid) - 1e-9
    assert r.score <= max(grid) + 1e-3 * abs(max(grid))  # a fine grid comes close to the optimum
    assert r.mode == "evidence" and abs(float(r.t.sum()) - 1) < 1e-12 and bool((r.t >= 0).all())
    # The mixture follows the evidence: the predictable embedder gets most of the weight on dense labels.
    if kind == "dense":
        assert float(r.t[0]) > 0.5


def test_wide_models_zoo_rank_and_errors():
    X, Z = _problem(30, N=40, D=60)  # D > N: the N x N Gram
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    basis = prepare_labels(Z)
    assert float(evidence_at(X, basis, t).mean()) == pytest.approx(_reference(X, Z, t), rel=1e-10)
    zoo = {"wide": X, "narrow": X[:, :5], "noise": torch.randn(40, 7, dtype=torch.float64)}
    scores = emms_ext.emms_scores(zoo, Z, "evidence")
    for name, x in zoo.items():
        assert scores[name].score == pytest.approx(emms_ext.emms_score(x, Z, "evidence").score, rel=1e-12)
    r = emms_ext.rank(zoo, Z, metric="emms_evidence", progress=False)
    assert r.scores == pytest.approx(scores.scores, rel=10.0 ** (1 - SCORE_DIGITS))  # a Ranking keeps SCORE_DIGITS
    with pytest.raises(ValueError, match="ridge must be None"):
        emms_ext.emms_score(X, Z, "evidence", ridge=1.0)
    with pytest.raises(ValueError, match="in-memory"):
        emms_ext.emms_score(iter([X[:20], X[20:]]), Z, "evidence")
