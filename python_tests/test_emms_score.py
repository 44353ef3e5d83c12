"""The score API against the slow float64 references (full least squares, the released algorithm)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from conftest import make_class_labels, make_dense_labels, make_features, rel_err
from testing import needs_cuda

import emms_ext
import emms_ext.core.factor
from emms_ext.core.labels import _row_hash, prepare_labels
from emms_ext.ops import reference


@pytest.mark.parametrize("seed,K,vocab", [(0, 1, False), (1, 2, False), (2, 3, True), (3, 4, True), (4, 3, False)])
@pytest.mark.parametrize("mode", ["exact", "alternating"])
def test_matches_full_least_squares(seed, K, vocab, mode):
    N, D, L = 150, 17, 6
    X = make_features(seed, N, D, shift=3.0)
    if vocab:
        table, idx = make_class_labels(seed, N, 12, L, K)
        Z = table[idx]
        assert prepare_labels(Z).is_vocabulary
    else:
        Z = make_dense_labels(seed, N, L, K, X)
        assert not prepare_labels(Z).is_vocabulary
    res = emms_ext.emms_score(X, Z, mode, return_W=True)
    ref = reference.emms_score(X, Z, mode)
    assert rel_err(res.score, ref["score"]) < 1e-9
    assert torch.allclose(res.t, ref["t"], atol=1e-6)
    assert torch.allclose(res.W, ref["W"], atol=1e-8 * float(ref["W"].abs().max()))
    assert res.mode == mode and res.n_samples == N and res.n_features == D and res.label_dim == L
    assert res.n_embedders == K and abs(float(res.t.sum()) - 1) < 1e-12 and bool((res.t >= 0).all())
    assert res.score < 0


@pytest.mark.parametrize("seed,K,vocab", [(10, 1, False), (11, 2, True), (12, 3, False), (13, 3, True), (14, 5, False)])
def test_reference_mode_reproduces_released_code(seed, K, vocab):
    N, D, L = 120, 15, 7
    X = make_features(seed, N, D, shift=-2.0)
    if vocab:
        table, idx = make_class_labels(seed, N, 9, L, K)
        Z = table[idx]
    else:
        Z = make_dense_labels(seed, N, L, K, X)
    score_np, t_np = reference.released_emms_numpy(X.numpy(), Z.numpy())
    res = emms_ext.emms_score(X, Z, "reference", return_W=True)
    assert rel_err(res.score, score_np) < 1e-8
    assert rel_err(reference.released_emms_torch(X, Z), score_np) < 1e-8  # the benchmarks' torch port
    assert np.allclose(res.t.numpy(), t_np, rtol=1e-8, atol=1e-10)
    ref = reference.released_emms(X, Z)
    assert torch.allclose(res.W, ref["W"], atol=1e-8 * float(ref["W"].abs().max()))
    assert res.iterations == 1


def test_reference_scaling_is_the_released_one():
    """-f / N * L (not / (N L)): the same objective, scaled by L^2 relative to the paper's formula."""
    X = make_features(20, 80, 6)
    Z = make_dense_labels(20, 80, 5, 2, X)
    res = emms_ext.emms_score(X, Z, "reference")
    assert rel_err(res.score, -res.objective / 80 * 5) < 1e-14


@pytest.mark.parametrize("K", [2, 3])
def test_exact_is_the_true_minimum_over_the_simplex(K):
    """Brute force: the least-squares residual of Z t on a grid over the simplex never beats mode='exact'."""
    N, D, L = 60, 8, 4
    X = make_features(30 + K, N, D)
    Z = make_dense_labels(30 + K, N, L, K, X)
    res = emms_ext.emms_score(X, Z, "exact")
    Xs, Zs = reference.standardize(X), reference.standardize(Z)
    steps = 200 if K == 2 else 40
    best = float("inf")
    for c in itertools.product(range(steps + 1), repeat=K - 1):
        if sum(c) > steps:
            continue
        t = torch.tensor(list(c) + [steps - sum(c)], dtype=torch.float64) / steps
        T = torch.einsum("nlk,k->nl", Zs, t)
        W = torch.linalg.lstsq(Xs, T, driver="gelsd").solution
        best = min(best, float(((Xs @ W - T) ** 2).sum()))
    assert res.objective <= best * (1 + 1e-12)
    assert res.objective >= best * (1 - 0.05)  # the grid is fine enough to come within 5%


def test_alternating_converges_to_exact():
    X = make_features(40, 200, 12)
    Z = make_dense_labels(40, 200, 5, 4, X)
    ex = emms_ext.emms_score(X, Z, "exact")
    alt = emms_ext.emms_score(X, Z, "alternating", max_iter=100_000, tol=0.0)
    assert rel_err(alt.score, ex.score) < 1e-7
    assert alt.iterations >= 1
    one = emms_ext.emms_score(X, Z, "alternating", max_iter=1)
    assert one.iterations == 1 and one.score <= alt.score + 1e-15


def test_vocabulary_inputs_agree():
    """Dense rows with repeats, (table, indices), ClassLabels and a table with unused classes: one score."""
    N, D, L, K, C = 200, 10, 6, 3, 15
    X = make_features(50, N, D)
    table, idx = make_class_labels(50, N, C, L, K)
    dense = reference.emms_score(X, table[idx], "exact")["score"]
    padded = torch.cat([table, torch.randn(4, L, K, dtype=torch.float64)])  # classes nobody uses
    for labels in [
        table[idx],
        (table, idx),
        emms_ext.ClassLabels(table, idx),
        (padded, idx),
        ([table[:, :, k] for k in range(K)], idx),
    ]:
        assert rel_err(emms_ext.emms_score(X, labels).score, dense) < 1e-10


def test_embedders_of_different_widths_are_zero_padded():
    N, D = 100, 9
    X = make_features(60, N, D)
    g = torch.Generator().manual_seed(60)
    zs = [torch.randn(N, L, generator=g, dtype=torch.float64) for L in (3, 7, 5)]
    res = emms_ext.emms_score(X, zs)
    ref = reference.emms_score(X, zs)
    assert res.label_dim == 7 and res.n_embedders == 3
    assert rel_err(res.score, ref["score"]) < 1e-10
    assert (
        rel_err(
            emms_ext.emms_score(X, zs, "reference").score,
            reference.released_emms_numpy(X.numpy(), reference.label_stack(zs).numpy())[0],
        )
        < 1e-8
    )


@pytest.mark.parametrize("shift", [0.0, 1e6])
def test_streaming_chunks_equal_in_memory(shift):
    N, D, L, K = 500, 20, 4, 2
    X = make_features(70, N, D, shift=shift)
    Z = make_dense_labels(70, N, L, K, X - shift)
    full = emms_ext.emms_score(X, Z)
    sizes = [1, 77, 200, 2, 220]
    chunks = list(torch.split(X, sizes))
    streamed = emms_ext.emms_score(iter(chunks), Z)
    assert rel_err(streamed.score, full.score) < 1e-10
    ref = reference.emms_score(X, Z)
    assert rel_err(full.score, ref["score"]) < 1e-8
    vocab = make_class_labels(70, N, 20, L, K)
    assert rel_err(emms_ext.emms_score(iter(chunks), vocab).score, emms_ext.emms_score(X, vocab).score) < 1e-10
    assert rel_err(emms_ext.emms_score(X, Z, chunk_size=64).score, full.score) < 1e-10


def test_float32_large_means_keep_precision():
    """Features offset by 1e4 in float32: centring per chunk keeps the score as accurate as the data allows."""
    N, D = 400, 16
    X64 = make_features(80, N, D)
    Z = make_dense_labels(80, N, 4, 2, X64)
    X32 = (X64 + 1e4).float()
    ref64 = reference.emms_score(X32.double(), Z)["score"]  # exact score of the float32 data
    got = emms_ext.emms_score(iter(torch.split(X32, 150)), Z.float()).score
    assert rel_err(got, ref64) < 1e-4


@pytest.mark.parametrize("mode", ["exact", "alternating", "reference"])
def test_float32_obeys_the_tolerance_rule(mode):
    N, D, L, K = 300, 24, 8, 3
    X = make_features(90, N, D)
    Z = make_dense_labels(90, N, L, K, X)
    ref64 = reference.emms_score(X, Z, mode)["score"]
    ref32 = reference.emms_score(X.float(), Z.float(), mode, dtype=torch.float32)["score"]
    got = emms_ext.emms_score(X.float(), Z.float(), mode).score
    assert abs(got - ref64) <= 2 * abs(ref32 - ref64) + 1e-6 * abs(ref64)


def test_accepts_numpy_strided_and_half_inputs_without_mutating_them():
    N, D, L, K = 90, 7, 5, 2
    X = make_features(100, N, D)
    Z = make_dense_labels(100, N, L, K, X)
    base = emms_ext.emms_score(X, Z).score
    Xn, Zn = X.numpy().copy(), Z.numpy().copy()
    assert rel_err(emms_ext.emms_score(Xn, Zn).score, base) < 1e-12
    np.testing.assert_array_equal(Xn, X.numpy())
    np.testing.assert_array_equal(Zn, Z.numpy())
    Xt = X.T.contiguous().T  # column-major strides
    Zp = Z.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    Xc, Zc = Xt.clone(), Zp.clone()
    assert rel_err(emms_ext.emms_score(Xt, Zp).score, base) < 1e-12
    assert torch.equal(Xt, Xc) and torch.equal(Zp, Zc)
    wide = torch.zeros(N, 2 * D, dtype=torch.float64)
    wide[:, ::2] = X
    assert rel_err(emms_ext.emms_score(wide[:, ::2], Z).score, base) < 1e-12
    half = emms_ext.emms_score(X.half(), Z.float())
    assert rel_err(half.score, reference.emms_score(X.half().double(), Z)["score"]) < 1e-3


def test_constant_and_duplicated_columns():
    N, D = 120, 10
    X = make_features(110, N, D)
    Z = make_dense_labels(110, N, 4, 2, X)
    base = emms_ext.emms_score(X, Z)
    with_const = torch.cat([X, torch.full((N, 2), 7.5, dtype=torch.float64)], 1)
    r = emms_ext.emms_score(with_const, Z, return_W=True)
    assert rel_err(r.score, base.score) < 1e-10 and r.n_used_features == D and r.n_features == D + 2
    assert bool((r.W[D:] == 0).all())
    dup = torch.cat([X, X[:, :3]], 1)  # rank-deficient Gram: the eigendecomposition path
    r = emms_ext.emms_score(dup, Z)
    assert r.solver == "eigh" and rel_err(r.score, base.score) < 1e-8
    allconst = emms_ext.emms_score(torch.ones(N, 3, dtype=torch.float64), Z)
    assert allconst.solver == "none" and allconst.n_used_features == 0
    A = reference.label_stack(Z)
    assert rel_err(allconst.score, -float((A.mean(-1) ** 2).sum()) / (N * 4)) < 1e-10  # W = 0, t uniform


def test_identical_embedders_score_like_one():
    X = make_features(120, 100, 8)
    Z1 = make_dense_labels(120, 100, 5, 1, X)
    Z2 = torch.cat([Z1, Z1], dim=2)
    for mode in ["exact", "alternating", "reference"]:
        assert rel_err(emms_ext.emms_score(X, Z2, mode).score, emms_ext.emms_score(X, Z1, mode).score) < 1e-9


def test_degenerate_wide_features_warn_and_ridge_separates_them():
    N, L, K = 40, 4, 2
    Z = make_dense_labels(130, N, L, K)
    Xa, Xb = make_features(131, N, 39), make_features(132, N, 60)
    with pytest.warns(emms_ext.EMMSDegeneracyWarning, match="ridge="):
        ra = emms_ext.emms_score(Xa, Z)
    with pytest.warns(emms_ext.EMMSDegeneracyWarning):
        rb = emms_ext.emms_score(Xb, Z)
    assert abs(ra.score) < 1e-9 and abs(rb.score) < 1e-9 and ra.warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sa = emms_ext.emms_score(Xa, Z, ridge=2.0)
        sb = emms_ext.emms_score(Xb, Z, ridge=2.0)
    assert np.isfinite(sa.score) and np.isfinite(sb.score) and abs(sa.score - sb.score) > 1e-6
    for X, s in [(Xa, sa), (Xb, sb)]:
        assert rel_err(s.score, reference.emms_score(X, Z, "exact", ridge=2.0)["score"]) < 1e-9
        alt = emms_ext.emms_score(X, Z, "alternating", ridge=2.0, tol=0.0)
        assert rel_err(alt.score, s.score) < 1e-7


@pytest.mark.parametrize("mode", ["exact", "alternating", "reference"])
def test_exact_fits_are_ties_at_zero_whatever_the_threads(mode):
    # Models with D >= N - 1 (columns, or kernel components) and a narrow model whose features contain the
    # labels: each fit is exact; the score is exactly 0.0, t uniform, degenerate flagged, bit for bit with
    # 1 and 2 threads. A normal model is not flagged.
    N, L, K = 60, 4, 2
    Z = make_dense_labels(140, N, L, K)
    zoo = {
        "wide": make_features(141, N, 200),
        "square": make_features(142, N, 59),
        "has_labels": torch.cat([Z.reshape(N, -1).float(), make_features(143, N, 3)], 1),
        "normal": make_features(144, N, 10),
    }
    runs = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with pytest.warns(emms_ext.EMMSDegeneracyWarning):
                runs.append(emms_ext.emms_scores(zoo, Z, mode))
    finally:
        torch.set_num_threads(before)
    for r in runs:
        for name in ["wide", "square", "has_labels"]:
            assert r[name].degenerate and r[name].score == 0.0 and not math.copysign(1.0, r[name].score) < 0
            assert torch.equal(r[name].t, torch.full((K,), 0.5, dtype=torch.float64)) and r[name].warnings
        assert not r["normal"].degenerate and r["normal"].score < -1e-3 and not r["normal"].warnings
    assert runs[0].scores == runs[1].scores or all(
        runs[0][n].score == runs[1][n].score for n in ["wide", "square", "has_labels"]
    )
    assert [r.degenerate for r in runs[0].values()] == [r.degenerate for r in runs[1].values()]
    if mode != "reference":  # with a ridge nothing is degenerate (reference mode takes none)
        assert not any(r.degenerate for r in emms_ext.emms_scores(zoo, Z, mode, ridge=1.0).values())


def test_zoo_matches_single_models_and_isolates_failures():
    N, L, K = 150, 5, 3
    Z = make_class_labels(140, N, 10, L, K)
    zoo = {f"m{d}": make_features(140 + d, N, d) for d in (4, 9, 16)}
    out = emms_ext.emms_scores(zoo, Z)
    for name, X in zoo.items():
        assert rel_err(out[name].score, emms_ext.emms_score(X, Z).score) < 1e-12
    assert out.order == sorted(zoo, key=lambda n: out.scores[n], reverse=True)
    assert list(emms_ext.emms_scores(list(zoo.values()), Z).keys()) == [0, 1, 2]
    bad = dict(zoo, nan=torch.full((N, 3), float("nan")), short=torch.randn(N - 1, 3))
    with pytest.raises(ValueError):
        emms_ext.emms_scores(bad, Z)
    with pytest.warns(UserWarning, match="skipped"):
        out2 = emms_ext.emms_scores(bad, Z, errors="skip")
    assert set(out2) == set(zoo) and set(out2.failures) == {"nan", "short"}
    assert "finite" in out2.failures["nan"] and "N == 150" in out2.failures["short"]
    assert rel_err(out2["m9"].score, out["m9"].score) < 1e-12


@pytest.mark.parametrize(
    "features,labels,match",
    [
        (torch.randn(10, 3), torch.randn(11, 2, 2), r"N == 11"),
        (torch.randn(1, 3), torch.randn(1, 2, 2), r"N >= 2"),
        (torch.randn(10, 3), torch.randn(10, 2, 0), r"K >= 1"),
        (torch.randn(10, 3), [], r"K >= 1"),
        (torch.randint(0, 5, (10, 3)), torch.randn(10, 2, 2), r"floating"),
        (torch.randn(10, 3), torch.randint(0, 5, (10, 2, 2)), r"floating"),
        (torch.randn(10), torch.randn(10, 2, 2), r"\[N, D\]"),
        (torch.randn(10, 0), torch.randn(10, 2, 2), r"D >= 1"),
        (torch.randn(10, 3), torch.randn(10, 2), r"\[N, L, K\]"),
        (np.arange(30).reshape(10, 3), torch.randn(10, 2, 2), r"floating"),
    ],
)
def test_bad_input_names_argument_and_shape(features, labels, match):
    with pytest.raises(ValueError, match=match):
        emms_ext.emms_score(features, labels)


def test_non_finite_inputs_are_rejected_with_location():
    X, Z = torch.randn(20, 3), torch.randn(20, 2, 2)
    Xn = X.clone()
    Xn[7, 1] = float("nan")
    with pytest.raises(ValueError, match=r"features must be finite.*1 NaN/Inf values in rows 0\.\.19"):
        emms_ext.emms_score(Xn, Z)
    Zi = Z.clone()
    Zi[3, 0, 1] = float("inf")
    with pytest.raises(ValueError, match=r"label_embeddings.*finite"):
        emms_ext.emms_score(X, Zi)
    with pytest.raises(ValueError, match=r"chunk.*\[n_i, D=3\]"):
        emms_ext.emms_score(iter([X[:10], torch.randn(10, 4)]), Z)
    with pytest.raises(ValueError, match=r"N == 20"):
        emms_ext.emms_score(iter([X, X[:1]]), Z)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, C=4\)"):
        emms_ext.emms_score(X, (torch.randn(4, 2, 2), torch.arange(20) % 5))


@pytest.mark.parametrize("vocabulary", [None, True, False])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("form", ["stacked", "list"])
def test_non_finite_label_embeddings_are_named_by_embedder(vocabulary, value, form):
    """Dense labels are checked through the vocabulary detection's row hash (no pass of their own): a NaN or an
    infinity anywhere still gives the error naming the embedder, and finite labels whose float32 hash
    overflows are accepted and still found to be a vocabulary."""
    N = 40
    table = torch.randn(4, 3, 2, dtype=torch.float64)
    Z = table[torch.arange(N) % 4].clone()  # class-like rows: the vocabulary shortcut applies
    Z[17, 2, 1] = value
    labels = Z if form == "stacked" else [Z[:, :, 0], Z[:, :, 1]]
    with pytest.raises(ValueError, match=r"label_embeddings \(embedder 1\) must be finite.*1 NaN/Inf"):
        prepare_labels(labels, vocabulary)
    # Finite float32 labels near the largest float32 whose row hashes overflow: the exact check accepts them.
    huge = (table.sign() * 3e38).float()[torch.arange(N) % 4]
    assert not bool(torch.isfinite(_row_hash(huge.reshape(N, -1))).all())
    basis = prepare_labels(huge if form == "stacked" else list(huge.unbind(2)), vocabulary)
    assert basis.N == N and basis.is_vocabulary == (vocabulary is not False)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mode": "fast"}, "mode must be one of"),
        ({"ridge": -1.0}, "ridge must be"),
        ({"ridge": float("nan")}, "ridge must be"),
        ({"mode": "reference", "ridge": 1.0}, "released algorithm"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1.0}, "tol"),
        ({"precision": torch.float16}, "precision"),
        ({"precision": "bf16"}, "precision"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        emms_ext.emms_score(torch.randn(10, 3), torch.randn(10, 2, 2), **kwargs)
    if "precision" not in kwargs:
        with pytest.raises(ValueError, match=match):
            emms_ext.emms_scores([torch.randn(10, 3)], torch.randn(10, 2, 2), **kwargs)


def test_zoo_batches_equal_widths_and_mixes_streams():
    """Models of equal D are batched; results equal one-at-a-time scoring, whatever the grouping."""
    N, L, K = 180, 4, 2
    labels = make_class_labels(150, N, 9, L, K)
    zoo = {
        "a": make_features(151, N, 8),
        "b": make_features(152, N, 8, shift=5.0),
        "c": make_features(153, N, 5),
        "d": make_features(154, N, 8) * 1e-3,
        "e": iter(torch.split(make_features(155, N, 8), 50)),
    }
    out = emms_ext.emms_scores(zoo, labels, return_W=True, chunk_size=64)
    assert list(out) == ["a", "b", "c", "d", "e"]
    for name in "abcd":
        single = emms_ext.emms_score(zoo[name], labels, return_W=True)
        assert rel_err(out[name].score, single.score) < 1e-11
        assert torch.allclose(out[name].W, single.W, atol=1e-9)
    stream_ref = emms_ext.emms_score(make_features(155, N, 8), labels)
    assert rel_err(out["e"].score, stream_ref.score) < 1e-11


@pytest.mark.parametrize("precision", ["float32", "tf32", torch.float32])
def test_precision_choice(precision):
    N, D = 300, 20
    X = make_features(160, N, D)
    Z = make_dense_labels(160, N, 6, 3, X)
    f64 = emms_ext.emms_score(X, Z, precision="float64").score
    f32 = emms_ext.emms_score(X, Z, precision=precision).score
    ref32 = reference.emms_score(X.float(), Z.float(), dtype=torch.float32)["score"]
    assert f32 != f64  # the Gram really ran in float32
    assert abs(f32 - f64) <= 2 * abs(ref32 - f64) + 1e-6 * abs(f64)
    assert emms_ext.emms_score(X.float(), Z, precision="float64").score == pytest.approx(
        reference.emms_score(X.float().double(), Z)["score"], rel=1e-10
    )


def test_single_class_target_is_rejected_and_singleton_classes_work():
    N = 60
    X = make_features(170, N, 5)
    table = torch.randn(3, 4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="must vary across the N samples"):
        emms_ext.emms_score(X, (table, torch.zeros(N, dtype=torch.int64)))
    with pytest.raises(ValueError, match="must vary"):
        emms_ext.emms_score(X, torch.ones(N, 4, 2, dtype=torch.float64))
    # classes 1 and 2 have a single sample each: nothing special, same as the dense reference
    idx = torch.zeros(N, dtype=torch.int64)
    idx[5], idx[9] = 1, 2
    got = emms_ext.emms_score(X, (table, idx)).score
    assert rel_err(got, reference.emms_score(X, table[idx])["score"]) < 1e-10


def test_values_too_large_for_a_float32_gram_use_float64_or_fail_clearly():
    """A float32 column holding 1e30 would overflow a float32 Gram (1e60 > 3.4e38) into inf / NaN: the
    automatic precision computes it in float64 and gets the float64 score; an explicit float32, a stream
    whose later chunk overflows, or values too large even for float64 get a ValueError saying so, and in a
    zoo only that model is skipped."""
    N, D = 60, 5
    X = make_features(190, N, D)
    X[37, 1] = 1e30
    Z = make_dense_labels(190, N, 3, 2, X.clamp(-10, 10))
    X32 = X.float()
    ref = reference.emms_score(X32.double(), Z)["score"]
    auto = emms_ext.emms_score(X32, Z)
    assert auto.gram_precision == "float64" and rel_err(auto.score, ref) < 1e-9
    with pytest.raises(
        ValueError,
        match=r"features has values up to 1e\+30, too large for a float32 Gram over "
        r"N=60 rows.*precision='float64'",
    ):
        emms_ext.emms_score(X32, Z, precision="float32")
    with pytest.raises(ValueError, match=r"features chunk 1 has values up to 1e\+30.*float32"):
        emms_ext.emms_score(iter(torch.split(X32, 30)), Z)
    huge = X.clone()
    huge[37, 1] = 1e200
    with pytest.raises(ValueError, match=r"too large for a float64 Gram.*rescale the features$"):
        emms_ext.emms_score(huge, Z)
    with pytest.warns(UserWarning, match="'big' skipped: features\\['big'\\] has values up to 1e\\+30"):
        zoo = emms_ext.emms_scores({"big": X32, "ok": X32.clamp(-10, 10)}, Z, precision="float32", errors="skip")
    assert set(zoo.scores) == {"ok"} and "too large" in zoo.failures["big"]
    assert torch.equal(X32[37, 1], torch.tensor(1e30, dtype=torch.float32))  # the input is not modified


def test_ill_conditioned_float32_falls_back_to_float64():
    """Nearly collinear float32 features: precision=None redoes the Gram in float64 and gets the float64
    score; an explicit precision='float32' keeps float32 (and its error)."""
    N, D = 400, 12
    X = make_features(180, N, D)
    noise = torch.randn(N, generator=torch.Generator().manual_seed(182), dtype=torch.float64)
    X[:, -1] = X[:, 0] + 1e-3 * X[:, 0].std() * noise  # cond(G) ~ 1e7 after standardization
    Z = make_dense_labels(180, N, 4, 2, X)
    X32 = X.float()
    ref = reference.emms_score(X32.double(), Z)["score"]
    auto = emms_ext.emms_score(X32, Z)
    forced = emms_ext.emms_score(X32, Z, precision="float32")
    assert auto.gram_precision == "float64" and forced.gram_precision == "float32"
    assert rel_err(auto.score, ref) < 1e-9
    assert rel_err(forced.score, ref) > 1e-7  # the float32 Gram really was off
    well = emms_ext.emms_score(make_features(181, N, D).float(), Z)
    assert well.gram_precision == "float32"  # well-conditioned features keep the fast path
    with pytest.warns(UserWarning, match="ill-conditioned"):
        emms_ext.emms_score(iter(torch.split(X32, 100)), Z)


def _gcv_brute_force(X, Z, grid):
    """GCV of the uniform label mixture for each ridge, from explicit hat matrices (float64)."""
    Xs, Zs = reference.standardize(X), reference.label_stack(Z)
    N, L, K = Zs.shape
    y = Zs.mean(-1)  # Z t0 with t0 = 1/K
    G = Xs.T @ Xs
    out = []
    for lam in grid:
        H = Xs @ torch.linalg.solve(G + lam * torch.eye(G.shape[0], dtype=torch.float64), Xs.T)
        rss = float((((torch.eye(N, dtype=torch.float64) - H) @ y) ** 2).sum()) / L  # per label dimension
        df = 1 + float(torch.trace(H))
        out.append(rss / N / (1 - df / N) ** 2 if df < N else float("inf"))
    return out


@pytest.mark.parametrize("N,D", [(120, 10), (40, 60)])  # ordinary and D >= N
def test_gcv_ridge_matches_brute_force(N, D):
    X = make_features(190 + D, N, D)
    Z = make_dense_labels(190 + D, N, 5, 2, X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no degeneracy warning with ridge="gcv", even for D >= N
        res = emms_ext.emms_score(X, Z, ridge="gcv")
    Xs = reference.standardize(X)
    eig = torch.linalg.eigvalsh(Xs.T @ Xs).clamp_min(0)
    grid = (eig.mean() * emms_ext.core.factor.GCVFactor.GRID).tolist()
    brute = _gcv_brute_force(X, Z, grid)
    assert res.solver == ("gcv" if D < N else "kernel/gcv")
    assert res.ridge == pytest.approx(grid[int(np.argmin(brute))], rel=1e-9)
    assert rel_err(res.score, reference.emms_score(X, Z, "exact", ridge=res.ridge)["score"]) < 1e-8
    assert res.gcv == pytest.approx(min(brute), rel=1e-8) and 1 < res.df < N
    alt = emms_ext.emms_score(X, Z, "alternating", ridge="gcv", tol=0.0)
    assert alt.ridge == res.ridge and rel_err(alt.score, res.score) < 1e-7


def test_gcv_keeps_wide_models_apart():
    N = 50
    Z = make_dense_labels(195, N, 4, 2)
    zoo = {f"w{d}": make_features(196 + d, N, d) for d in (60, 80, 120)}
    out = emms_ext.emms_scores(zoo, Z, ridge="gcv")
    scores = [out[n].score for n in zoo]
    assert all(np.isfinite(scores)) and len({round(s, 12) for s in scores}) == 3
    assert all(out[n].ridge > 0 for n in zoo)
    const = torch.cat([zoo["w60"], torch.full((N, 2), 3.0, dtype=torch.float64)], 1)
    assert rel_err(emms_ext.emms_score(const, Z, ridge="gcv").score, out["w60"].score) < 1e-9


@pytest.mark.parametrize("vocab", [False, True])
def test_kernel_form_for_wide_features_equals_the_gram_form(vocab):
    """D > N in memory: the N x N kernel form; streamed (always the D x D Gram) gives the same scores."""
    N, D, L, K = 50, 90, 4, 2
    X = make_features(210, N, D)
    X[:, 5] = 2.5  # a constant column
    Z = make_class_labels(210, N, 7, L, K) if vocab else make_dense_labels(210, N, L, K, X)
    for ridge in (1.5, "gcv"):
        wide = emms_ext.emms_score(X, Z, ridge=ridge, return_W=True)
        gram = emms_ext.emms_score(iter([X]), Z, ridge=ridge, return_W=True)
        assert wide.solver.startswith("kernel/") and not gram.solver.startswith("kernel/")
        assert rel_err(wide.score, gram.score) < 1e-9 and wide.ridge == pytest.approx(gram.ridge, rel=1e-12)
        assert torch.allclose(wide.W, gram.W, atol=1e-8 * float(gram.W.abs().max()))
        assert wide.n_used_features == gram.n_used_features == D - 1
    ref = reference.emms_score(X, Z[0][Z[1]] if vocab else Z, "exact", ridge=1.5)
    assert rel_err(emms_ext.emms_score(X, Z, ridge=1.5).score, ref["score"]) < 1e-9
    with pytest.warns(emms_ext.EMMSDegeneracyWarning):
        assert abs(emms_ext.emms_score(X, Z).score) < 1e-9


@pytest.mark.parametrize("mode", ["exact", "alternating", "reference"])
def test_wide_exact_fits_skip_the_eigendecomposition_with_the_same_results(mode, monkeypatch):
    """Kernel-form models (D > N) that are surely of rank N - 1 are scored without the N x N
    eigendecomposition; every field of their results equals the eigendecomposition path's (forced by
    making the rank test say "not sure"). A wide model of low rank (D = 150 columns spanned by 20) is not
    taken for an exact fit and keeps its non-zero score; nor are models with a ridge or return_W."""
    from emms_ext.core import pipeline

    N = 80
    g = torch.Generator().manual_seed(515)
    zoo = {
        "wide": make_features(511, N, 150),  # batched with low_rank (same D)
        "edge": make_features(512, N, 81).float(),
        "low_rank": torch.randn(N, 20, generator=g, dtype=torch.float64)
        @ torch.randn(20, 150, generator=g, dtype=torch.float64),
        "narrow": make_features(513, N, 12),
    }
    for labels in (make_class_labels(514, N, 9, 4, 3), make_dense_labels(514, N, 4, 2)):
        calls = []
        real = pipeline.kernel_exact_fit
        monkeypatch.setattr(
            pipeline, "kernel_exact_fit", lambda K, D, calls=calls, real=real: calls.append(real(K, D)) or calls[-1]
        )
        with pytest.warns(emms_ext.EMMSDegeneracyWarning):
            fast = emms_ext.emms_scores(zoo, labels, mode)
        assert [c.tolist() for c in calls] == [[True, False], [True]]  # D = 150 batch, then D = 81
        monkeypatch.setattr(pipeline, "kernel_exact_fit", lambda K, D: torch.zeros(K.shape[0], dtype=torch.bool))
        with pytest.warns(emms_ext.EMMSDegeneracyWarning):
            slow = emms_ext.emms_scores(zoo, labels, mode)
        monkeypatch.setattr(pipeline, "kernel_exact_fit", real)
        for name in ("wide", "edge", "narrow"):  # batched as before: the same bits
            a, b = fast[name], slow[name]
            assert (a.score, a.degenerate, a.solver, a.objective, a.iterations, a.warnings) == (
                b.score,
                b.degenerate,
                b.solver,
                b.objective,
                b.iterations,
                b.warnings,
            ), name
            assert (a.n_features, a.n_used_features, a.ridge, a.gram_precision) == (
                b.n_features,
                b.n_used_features,
                b.ridge,
                b.gram_precision,
            )
            assert torch.equal(a.t, b.t)
        # low_rank's eigendecomposition now runs alone instead of batched with wide: LAPACK's rounding
        a, b = fast["low_rank"], slow["low_rank"]
        assert rel_err(a.score, b.score) < 1e-12 and a.solver == b.solver and not a.degenerate
        assert fast["wide"].degenerate and fast["edge"].degenerate and fast["wide"].iterations == 0
        assert not fast["low_rank"].degenerate and fast["low_rank"].score < -1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emms_ext.EMMSDegeneracyWarning)  # reference takes no ridge: degenerate
        ridge = None if mode == "reference" else 2.0
        fitted = emms_ext.emms_score(zoo["wide"], labels, mode, ridge=ridge, return_W=True)
    assert fitted.W is not None and fitted.W.shape[0] == 150 and fitted.degenerate == (ridge is None)


# ------------------------------------------------------------------------------------------ on a GPU
@needs_cuda
@pytest.mark.parametrize("vocab", [True, False])
@pytest.mark.parametrize("mode", ["exact", "reference", "gcv", "loo"])
def test_score_on_gpu_equals_cpu(vocab, mode):
    N, L, K = 3000, 16, 3
    labels = make_class_labels(300, N, 40, L, K) if vocab else make_dense_labels(300, N, L, K)
    zoo = {f"m{d}": make_features(301 + d, N, d) for d in (64, 64, 128)}
    cpu = emms_ext.emms_scores(zoo, labels, mode)
    gpu = emms_ext.emms_scores({k: v.cuda() for k, v in zoo.items()}, labels, mode)
    via_device = emms_ext.emms_scores(zoo, labels, mode, device="cuda")
    for name in zoo:
        assert rel_err(gpu[name].score, cpu[name].score) < 1e-9
        assert rel_err(via_device[name].score, cpu[name].score) < 1e-9
        assert gpu[name].ridge == cpu[name].ridge or rel_err(gpu[name].ridge, cpu[name].ridge) < 1e-12


@needs_cuda
def test_wide_exact_fit_shortcut_on_gpu_equals_cpu():
    """The kernel-form exact-fit test on CUDA (cholesky_ex and torch's solves there): the same decisions and
    results as on the CPU, for models surely of rank N - 1 and one of low rank."""
    N = 80
    g = torch.Generator().manual_seed(516)
    zoo = {
        "wide": make_features(517, N, 150),
        "low_rank": torch.randn(N, 20, generator=g, dtype=torch.float64)
        @ torch.randn(20, 150, generator=g, dtype=torch.float64),
    }
    labels = make_class_labels(518, N, 9, 4, 3)
    with pytest.warns(emms_ext.EMMSDegeneracyWarning):
        cpu = emms_ext.emms_scores(zoo, labels)
    with pytest.warns(emms_ext.EMMSDegeneracyWarning):
        gpu = emms_ext.emms_scores({k: v.cuda() for k, v in zoo.items()}, labels)
    assert gpu["wide"].degenerate and gpu["wide"].score == 0.0 and gpu["wide"].iterations == 0
    assert gpu["wide"].solver == cpu["wide"].solver == "kernel/cholesky"
    assert not gpu["low_rank"].degenerate and rel_err(gpu["low_rank"].score, cpu["low_rank"].score) < 1e-9


@needs_cuda
def test_tf32_ranking_agrees_with_float64():
    N, L, K = 4000, 32, 2
    labels = make_class_labels(310, N, 50, L, K)
    zoo = {f"m{i}": make_features(311 + i, N, 256).float().cuda() for i in range(8)}
    f64 = emms_ext.emms_scores(zoo, labels, precision="float64")
    tf32 = emms_ext.emms_scores(zoo, labels, precision="tf32")
    for name in zoo:
        assert rel_err(tf32[name].score, f64[name].score) < 1e-2


def test_warnings_point_at_the_callers_line():
    # However deep the call runs inside the package (emms_score -> emms_scores -> pipeline), the warning
    # names the user's file, so that warnings filters and tracebacks point at the call.
    X = torch.randn(10, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Z = torch.randn(10, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for call in (
        lambda: emms_ext.emms_score(X, Z),
        lambda: emms_ext.emms_scores({"a": X, "bad": X[:3]}, Z, errors="skip"),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        assert caught and all(w.filename == __file__ for w in caught), [(w.filename, str(w.message)) for w in caught]


@pytest.mark.parametrize("mode", ["exact", "gcv", "loo", "evidence"])
def test_features_from_a_forward_pass_and_inference_mode(mode):
    """Features that require grad (straight from a model's forward pass) failed in the statistics' out= and
    in-place arithmetic; under torch.inference_mode the worker threads (thread-local modes) could not write the
    caller's inference tensors. Both score like plain features, folds and a LogME baseline included."""
    from emms_ext import baselines as bl

    N = 600
    x = make_features(880, N, 300, shift=1.0, dtype=torch.float32)
    labels = make_class_labels(881, N, 10, 6, 2)
    plain = emms_ext.emms_score(x, labels, mode=mode, folds=3)
    with_grad = emms_ext.emms_score(x.clone().requires_grad_(), labels, mode=mode, folds=3)
    with torch.inference_mode():
        inference = emms_ext.emms_score(x.clone(), labels, mode=mode, folds=3)
    for other in (with_grad, inference):
        assert other.score == plain.score and other.stderr == plain.stderr
    assert bl.logme(x.clone().requires_grad_(), labels[1]) == bl.logme(x, labels[1])
