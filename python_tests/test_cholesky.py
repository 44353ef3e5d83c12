"""emms::cholesky_ (tiled Cholesky in place on the CPU) and emms::cholesky_solve against float64 references and
torch's cholesky_ex / solves; their bits for 1, 2 and 8 threads; what they leave untouched; their errors; opcheck;
and the pipeline around them (GramFactor factors st.G in place,
st.gram() rebuilds it, a singular model's eigendecomposition sees the Gram, a float32 batch's survivors keep
their factors)."""

import pytest
import torch
from testing import DTYPES, assert_close, opcheck_samples, with_threads

import emms_ext
from emms_ext.core.factor import GramFactor
from emms_ext.core.ingest import batch_stats
from emms_ext.core.labels import prepare_labels
from emms_ext.ops import cholesky_, cholesky_solve, reference

F64 = torch.float64


def spd(seed: int, shape: tuple, dtype=F64) -> torch.Tensor:
    """Symmetric positive definite [*batch, D, D] with a spread of eigenvalues (cond ~ 1e3), exactly
    symmetric in every dtype."""
    g = torch.Generator().manual_seed(seed)
    *batch, D = shape[:-1]
    Q, _ = torch.linalg.qr(torch.randn(*batch, D, D, generator=g, dtype=F64))
    e = torch.logspace(0, 3, D, dtype=F64) if D else torch.ones(0, dtype=F64)
    G = (Q * e) @ Q.transpose(-1, -2)
    G = (G + G.transpose(-1, -2)) / 2
    return G.to(dtype)


def sample_inputs(dtype) -> list[tuple[torch.Tensor]]:
    """Batched and single Grams, sizes on both sides of a tile (192) and of two, D = 1, empty batch and D = 0."""
    shapes = [(1, 1), (7, 7), (3, 40, 40), (2, 97, 97), (1, 300, 300), (2, 385, 385), (0, 5, 5), (2, 0, 0)]
    return [(spd(31000 + i, s, dtype),) for i, s in enumerate(shapes)]


def solve_inputs(dtype) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """(L, Y, half): factors as cholesky_ leaves them (G's values above the diagonal), right-hand sides from
    none to several chunks of 256 columns, a transposed (non-contiguous) Y, a [D, c] pair, D = 0."""
    out = []
    for i, (M, D, c) in enumerate([(1, 1, 1), (2, 7, 3), (3, 40, 130), (1, 300, 257), (2, 200, 0), (2, 0, 4)]):
        G = spd(32000 + i, (M, D, D), dtype)
        cholesky_(G)
        Y = torch.randn(M, D, c, generator=torch.Generator().manual_seed(32100 + i), dtype=dtype)
        out += [(G, Y, True), (G, Y, False)]
    G = spd(32200, (50, 50), dtype)
    cholesky_(G)
    Yt = torch.randn(20, 50, generator=torch.Generator().manual_seed(32201), dtype=dtype).T
    return out + [(G, Yt, True), (G, Yt, False)]


@pytest.mark.parametrize("dtype", DTYPES["cholesky_"], ids=["f32", "f64"])
def test_sample_inputs_match_float64_reference(dtype):
    for (G,) in sample_inputs(dtype):
        G0 = G.clone()
        info = cholesky_(G)
        assert info.dtype == torch.int32 and info.shape == G.shape[:-2] and not info.any()
        L = G.tril()
        ref = torch.linalg.cholesky(G0.double())  # float64 factor of the same (rounded) matrix
        assert_close(L, ref, dtype, scale=10 * max(1, G.shape[-1]) ** 0.5)
        assert_close(L.double() @ L.double().transpose(-1, -2), G0.double(), dtype, scale=10 * max(1, G.shape[-1]))
        assert torch.equal(G.triu(1), G0.triu(1))  # the strict upper triangle is not touched


@pytest.mark.parametrize("dtype", DTYPES["cholesky_"], ids=["f32", "f64"])
def test_same_factor_as_cholesky_ex(dtype):
    """The factor torch's cholesky_ex computes, on the same triangle, up to rounding (tiles sum in another
    order than potrf's blocks)."""
    G = spd(31100, (4, 260, 260), dtype)
    expect = torch.linalg.cholesky_ex(G).L
    H = G.clone()
    cholesky_(H)
    eps = torch.finfo(dtype).eps
    assert (H.tril() - expect).abs().max() <= 64 * eps * expect.abs().max()


def test_not_positive_definite_reports_cholesky_ex_info():
    """A leading minor that is not positive definite: the same info as cholesky_ex (1-based order)."""
    G = spd(31200, (3, 6, 6))
    G[1, 3, 3] = -1.0  # minor 4 of model 1
    G[2] = 0.0  # model 2: minor 1 (a zero Gram)
    G[2, 0, 0] = 1.0
    expect = torch.linalg.cholesky_ex(G).info
    info = cholesky_(G.clone())
    assert info.tolist() == expect.tolist() == [0, 4, 2]
    assert cholesky_(spd(31201, (4, 4))).shape == ()  # one [D, D] matrix: a 0-dim info


@pytest.mark.parametrize("dtype", DTYPES["cholesky_solve"], ids=["f32", "f64"])
def test_solve_sample_inputs_match_float64_reference(dtype):
    for L, Y, half in solve_inputs(dtype):
        L0, Y0 = L.clone(), Y.clone()
        X = cholesky_solve(L, Y, half)
        assert X.shape == Y.shape and X.dtype == dtype and X.is_contiguous()
        assert torch.equal(L, L0) and torch.equal(Y, Y0)  # inputs untouched
        Ld = L.double().tril()
        ref = torch.linalg.solve_triangular(Ld, Y.double(), upper=False)
        if not half:
            ref = torch.linalg.solve_triangular(Ld.mT, ref, upper=True)
        D = max(1, L.shape[-1])
        assert_close(X, ref, dtype, scale=100 * D * (1 if half else 10))


def test_solve_skips_leading_zero_rows_exactly():
    """Right-hand sides whose leading rows are zero (the identity, for L^-1): their solution's leading rows
    are exactly zero and the rest matches the float64 reference, across tiles of 192 rows."""
    G = spd(32500, (1, 500, 500))
    cholesky_(G)
    L = G.tril()
    eye = torch.eye(500, dtype=F64)[None]
    inv = cholesky_solve(G, eye, half=True)
    assert torch.equal(inv.triu(1), torch.zeros_like(inv))  # L^-1 is lower triangular, exactly
    assert_close(inv, torch.linalg.inv(L), F64, scale=1000)
    Y = torch.randn(1, 500, 7, generator=torch.Generator().manual_seed(32501), dtype=F64)
    Y[:, :400] = 0.0
    X = cholesky_solve(G, Y, half=True)
    assert torch.equal(X[:, :400], torch.zeros_like(X[:, :400]))
    assert_close(X, torch.linalg.solve_triangular(L, Y, upper=False), F64, scale=1000)


@pytest.mark.parametrize("dtype", DTYPES["cholesky_"], ids=["f32", "f64"])
def test_same_bits_with_1_2_and_8_threads(dtype):
    """Widths off the tiles (130, 257, 700), one model (tiles across threads) and a batch (models across
    threads), solves with one chunk of right-hand sides over two tiles (D = 700) and several chunks: bit for
    bit the same with 1, 2 and 8 threads. (MKL's threaded potrf and TRSM, i.e. cholesky_ex and
    solve_triangular, are not: at D = 257 they differ between 1 and 2 threads.)"""
    cases = [(1, 130, 5), (1, 257, 300), (3, 257, 40), (1, 700, 129)]
    for i, (M, D, c) in enumerate(cases):
        G = spd(32300 + i, (M, D, D), dtype)
        Y = torch.randn(M, D, c, generator=torch.Generator().manual_seed(32400 + i), dtype=dtype)

        def run(G=G, Y=Y):
            H = G.clone()
            info = cholesky_(H)
            return H, info, cholesky_solve(H, Y, True), cholesky_solve(H, Y, False)

        outs = [with_threads(n, run) for n in (1, 2, 8)]
        for out in outs[1:]:
            for a, b in zip(outs[0], out):
                assert torch.equal(a, b), (M, D, c)


@pytest.mark.parametrize(
    "L,Y,match",
    [
        (torch.eye(3, dtype=torch.int64), torch.ones(3, 1), r"L must be float32 or float64 \(got \[3, 3\] Long"),
        (torch.eye(3, dtype=F64), torch.ones(3, 1), r"Y must have L's dtype Double \(got \[3, 1\] Float"),
        (torch.ones(3, 4, dtype=F64), torch.ones(3, 1, dtype=F64), r"L must be \[D, D\] or \[M, D, D\] \(got \[3, 4\]"),
        (
            torch.eye(3, dtype=F64),
            torch.ones(4, 1, dtype=F64),
            r"Y must be \[D, c\] with L's D \(L is \[3, 3\] Double, got Y \[4, 1\]",
        ),
        (
            torch.eye(3, dtype=F64)[None].expand(2, 3, 3).contiguous(),
            torch.ones(3, 3, 1, dtype=F64),
            r"Y must be \[M, D, c\] with L's M and D",
        ),
        (torch.eye(3, dtype=F64), torch.ones(3, dtype=F64), r"Y must be \[D, c\]"),
        (torch.eye(6, dtype=F64)[::2, ::2], torch.ones(3, 1, dtype=F64), "L must be contiguous"),
    ],
)
def test_solve_bad_input_raises_clear_error_and_leaves_it_alone(L, Y, match):
    L0, Y0 = L.clone(), Y.clone()
    with pytest.raises((TypeError, ValueError), match=match):
        cholesky_solve(L, Y)
    assert torch.equal(L, L0) and torch.equal(Y, Y0)


@pytest.mark.parametrize(
    "G,exc,match",
    [
        (torch.eye(3, dtype=torch.int64), TypeError, r"G must be float32 or float64 \(got \[3, 3\] Long"),
        (torch.eye(3, dtype=torch.float16), TypeError, "G must be float32 or float64"),
        (torch.ones(3, 4, dtype=F64), ValueError, r"G must be \[D, D\] or \[M, D, D\] \(got \[3, 4\]"),
        (torch.ones(3, dtype=F64), ValueError, r"G must be \[D, D\] or \[M, D, D\] \(got \[3\]"),
        (torch.ones(2, 2, 3, 3, dtype=F64), ValueError, r"got \[2, 2, 3, 3\]"),
        (torch.eye(4, dtype=F64)[::2, ::2], ValueError, "G must be contiguous: it is factored in place"),
    ],
)
def test_bad_input_raises_clear_error_and_leaves_it_alone(G, exc, match):
    G0 = G.clone()
    with pytest.raises(exc, match=match):
        cholesky_(G)
    assert torch.equal(G, G0)


def test_fake_kernel_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        assert cholesky_(torch.empty(5, 8, 8, dtype=F64)).shape == (5,)
        assert cholesky_(torch.empty(8, 8)).shape == ()
        with pytest.raises(Exception, match=r"G must be \[D, D\] or \[M, D, D\]"):
            cholesky_(torch.empty(8, 7))
        assert cholesky_solve(torch.empty(5, 8, 8, dtype=F64), torch.empty(5, 8, 3, dtype=F64)).shape == (5, 8, 3)
        with pytest.raises(Exception, match="Y must match L's batch and D"):
            cholesky_solve(torch.empty(5, 8, 8, dtype=F64), torch.empty(4, 8, 3, dtype=F64))


@pytest.mark.parametrize("dtype", DTYPES["cholesky_"], ids=["f32", "f64"])
def test_opcheck(dtype):
    samples = [s for s in sample_inputs(dtype) if s[0].numel() <= 40 * 40 * 3]
    assert opcheck_samples(torch.ops.emms.cholesky_.default, samples, dtype) == len(samples)


@pytest.mark.parametrize("dtype", DTYPES["cholesky_solve"], ids=["f32", "f64"])
def test_solve_opcheck(dtype):
    samples = [s for s in solve_inputs(dtype) if s[0].numel() <= 50 * 50 * 3]
    assert opcheck_samples(torch.ops.emms.cholesky_solve.default, samples, dtype) == len(samples)


# ---------------------------------------------------------------------- the pipeline around the op


def _stats(seed: int, M: int, N: int, D: int, rank_deficient: int | None = None):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(N, D, generator=g, dtype=F64) for _ in range(M)]
    if rank_deficient is not None:
        x = xs[rank_deficient]
        x[:, -1] = x[:, 0] - 2 * x[:, 1]  # a column the others span: a singular Gram
    labels = (torch.randn(5, 4, 2, generator=g, dtype=F64), torch.randint(0, 5, (N,), generator=g))
    basis = prepare_labels(labels)
    return xs, labels, batch_stats(xs, basis, F64, False, "cpu", 1 << 14)


def test_gram_factor_factors_in_place_and_gram_rebuilds_it():
    xs, Z, st = _stats(31300, 3, 200, 30)
    G0 = st.G.clone()
    factor = GramFactor(st, None)
    assert factor.L is st.G and st.G_diag is not None  # no copy: the factor lives in the Gram's memory
    assert torch.allclose(factor.L.tril(), torch.linalg.cholesky(G0), rtol=1e-13, atol=1e-13)
    rebuilt = st.gram()  # from the untouched strict upper triangle and the saved diagonal
    assert torch.equal(rebuilt.triu(), G0.triu()) and torch.equal(rebuilt, rebuilt.mT)
    assert (rebuilt - G0).abs().max() <= 1e-14 * G0.abs().max()  # G0's triangles differ by rounding only
    keep = torch.tensor([True, False, True])
    sub = factor.rows(keep)  # the float32 fallback keeps the survivors' factors
    assert sub.methods == ["cholesky", "cholesky"] and torch.equal(sub.L.tril(), factor.L.tril()[[0, 2]])
    again = GramFactor(st.rows(keep), None)  # a factorization of the rebuilt Gram: a private copy
    assert torch.allclose(again.L.tril(), factor.L.tril()[[0, 2]], rtol=1e-12, atol=1e-12)
    ridged = GramFactor(_stats(31300, 3, 200, 30)[2], 5.0)  # a ridge factors its own copy
    eye = torch.eye(30, dtype=F64)
    assert torch.allclose(ridged.L.tril() @ ridged.L.tril().mT, G0 + 5 * eye, rtol=1e-12, atol=1e-9)


def test_singular_model_in_a_batch_gets_the_true_gram_eigendecomposition():
    """A batch with one singular Gram: its eigendecomposition is of the Gram, not of the half-overwritten
    buffer, so its score is the one it gets alone (and the released code's)."""
    xs, Z, st = _stats(31400, 3, 150, 12, rank_deficient=1)
    factor = GramFactor(st, None)
    assert factor.methods == ["cholesky", "eigh", "cholesky"]
    zoo = emms_ext.emms_scores({f"m{i}": x for i, x in enumerate(xs)}, Z)
    for i, x in enumerate(xs):
        alone = emms_ext.emms_score(x, Z)
        assert zoo[f"m{i}"].score == alone.score
    assert zoo["m1"].solver == "eigh"
    ref = reference.emms_score(xs[1], Z[0][Z[1]])["score"]  # the class table's rows per sample
    assert abs(zoo["m1"].score - ref) <= 1e-9 * abs(ref)


def test_float32_fallback_refactors_the_rest_of_the_batch_from_the_true_gram():
    """A float32 batch where one model's Gram is too ill-conditioned: it is redone in float64, the others
    are factored again from the rows of the (already factored) statistics and score as they do alone."""
    g = torch.Generator().manual_seed(31500)
    N, D = 400, 12
    xs = [torch.randn(N, D, generator=g) for _ in range(3)]
    xs[1][:, -1] = xs[1][:, 0] + 1e-3 * torch.randn(N, generator=g)  # cond ~ 1e7 once standardized
    Z = (torch.randn(4, 6, 2, generator=g), torch.randint(0, 4, (N,), generator=g))
    zoo = emms_ext.emms_scores({f"m{i}": x for i, x in enumerate(xs)}, Z)
    assert [zoo[f"m{i}"].gram_precision for i in range(3)] == ["float32", "float64", "float32"]
    for i, x in enumerate(xs):
        assert zoo[f"m{i}"].score == emms_ext.emms_score(x, Z).score


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
def test_float32_grams_are_factored_in_float32_and_leave_the_gram(dtype):
    # A Gram formed in float32 gets a float32 factor (a copy: st.G stays the Gram), a float64 one the Gram's own
    # memory; either way st.gram() is the Gram afterwards, for GramFactor and GCVFactor.at_grid_index alike.
    from emms_ext.core.factor import GCVFactor

    g = torch.Generator().manual_seed(31400)
    xs = [torch.randn(300, 40, generator=g, dtype=F64).to(dtype) for _ in range(2)]
    labels = (torch.randn(5, 4, 2, generator=g, dtype=F64), torch.randint(0, 5, (300,), generator=g))
    basis = prepare_labels(labels)
    for make in (lambda st: GramFactor(st, None), lambda st: GCVFactor.at_grid_index(st, basis, torch.tensor([3, 9]))):
        st = batch_stats(xs, basis, dtype, False, "cpu", 1 << 14)
        G0 = st.gram().clone()
        factor = make(st)
        L = factor.L if isinstance(factor, GramFactor) else factor._factor()
        assert L.dtype == dtype and (L is st.G) == (dtype == F64)
        # (float64: rebuilt from the upper triangle, which the diagonal blocks' lower one equals to rounding)
        assert torch.equal(st.gram(), G0) if dtype == torch.float32 else torch.equal(st.gram().triu(), G0.triu())
        ref = torch.linalg.cholesky(
            G0 + (0 if isinstance(factor, GramFactor) else factor.lam[:, None, None]) * torch.eye(40, dtype=F64)
        )
        assert torch.allclose(
            L.tril().double(), ref, rtol=0, atol=(1e-5 if dtype == torch.float32 else 1e-12) * float(ref.abs().max())
        )
