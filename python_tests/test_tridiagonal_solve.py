"""emms::tridiagonal_solve ((T + s I)^-1 Y for a symmetric tridiagonal T and a list of shifts, on the CPU)
against float64 dense solves and LAPACK's dpttrf, its bits for 1, 2 and 8 threads, its errors, opcheck."""

import pytest
import torch
from scipy.linalg import lapack
from testing import DTYPES, assert_close, gen, opcheck_samples, with_threads

from emms_ext.ops import tridiagonal_solve

F64 = torch.float64


def tridiagonal(d: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    return torch.diag(d) + torch.diag(e, 1) + torch.diag(e, -1)


def problem(seed: int, D: int, c: int, g: int, dtype=F64):
    """(d, e, shifts, Y): T weakly diagonally dominant (positive semi-definite, nearly singular: d_i is the sum
    of its row's |e| plus up to 1e-3), shifts log-spaced from 1e-6 to 10; Y [D, c]."""
    gen_ = gen(seed)
    e = torch.randn(max(D - 1, 0), generator=gen_, dtype=F64)
    pad = e.new_zeros(1)
    d = torch.cat([e.abs(), pad]) + torch.cat([pad, e.abs()]) + 1e-3 * torch.rand(D, generator=gen_, dtype=F64)
    shifts = torch.logspace(-6, 1, g, dtype=F64) if g else torch.zeros(0, dtype=F64)
    Y = torch.randn(D, c, generator=gen_, dtype=F64)
    return tuple(t.to(dtype) for t in (d, e, shifts, Y))


def sample_inputs(dtype) -> list[tuple]:
    """D = 1 to several hundred, right-hand sides from none across the chunks of 64, no shift to a grid of 29,
    a transposed (non-contiguous) Y."""
    cases = [(1, 1, 1), (2, 3, 2), (9, 0, 3), (40, 63, 4), (40, 64, 1), (97, 65, 5), (300, 130, 29), (5, 4, 0)]
    out = [problem(32000 + i, *c, dtype=dtype) for i, c in enumerate(cases)]
    d, e, s, Y = problem(32100, 50, 70, 3, dtype=dtype)
    out.append((d, e, s, Y.T.contiguous().T))  # Y with strides (1, 50)
    return out


@pytest.mark.parametrize("dtype", DTYPES["tridiagonal_solve"], ids=["f32", "f64"])
def test_matches_dense_float64_solves(dtype):
    for d, e, s, Y in sample_inputs(dtype):
        before = Y.clone()
        X, info = tridiagonal_solve(d, e, s, Y)
        assert torch.equal(Y, before)
        assert X.shape == (s.shape[0], d.shape[0], Y.shape[1]) and X.dtype == dtype and X.is_contiguous()
        assert info.shape == s.shape and info.dtype == torch.int32 and not bool(info.any())
        T = tridiagonal(d.double(), e.double())
        for k in range(s.shape[0]):
            A = T + float(s[k]) * torch.eye(d.shape[0], dtype=F64)
            ref = torch.linalg.solve(A, Y.double())
            assert_close(X[k], ref, dtype, scale=float(torch.linalg.cond(A)))


def test_float64_residual_is_rounding():
    d, e, s, Y = problem(7, 300, 100, 29)
    X, _ = tridiagonal_solve(d, e, s, Y)
    T = tridiagonal(d, e)
    for k in range(29):
        R = (T + s[k] * torch.eye(300, dtype=F64)) @ X[k] - Y
        assert float(R.abs().max()) <= 1e-13 * float((T.abs().sum(1).max() + s[k]) * X[k].abs().max())


def test_not_positive_definite_reports_lapacks_info_and_nan():
    d, e, _, Y = problem(8, 60, 5, 0)
    eig = torch.linalg.eigvalsh(tridiagonal(d, e))
    # positive definite; negative from the first pivot; just positive definite; indefinite further down
    s = torch.tensor([1.0, -float(d.max()) - 10.0, -0.5 * float(eig[0]), -float(eig[3])], dtype=F64)
    X, info = tridiagonal_solve(d, e, s, Y)
    for k in range(s.shape[0]):
        lapack_info = lapack.dpttrf((d + s[k]).numpy(), e.numpy())[2]
        assert int(info[k]) == lapack_info
        assert bool(X[k].isnan().all()) == (lapack_info != 0)
    assert int(info[0]) == 0 and int(info[1]) == 1 and int(info[3]) > 0


@pytest.mark.parametrize("dtype", DTYPES["tridiagonal_solve"], ids=["f32", "f64"])
def test_same_bits_with_1_2_and_8_threads(dtype):
    args = problem(9, 257, 200, 29, dtype=dtype)
    first, *rest = [with_threads(n, lambda: tridiagonal_solve(*args)[0]) for n in (1, 2, 8)]
    for other in rest:
        assert torch.equal(other, first)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d, e, s, Y: (d.float(), e, s, Y), "e must have d's dtype"),
        (lambda d, e, s, Y: (d.long(), e.long(), s.long(), Y.long()), "d must be float32 or float64"),
        (lambda d, e, s, Y: (d, e, s, Y.float()), "Y must have d's dtype"),
        (lambda d, e, s, Y: (d, e[:-1], s, Y), r"e must be \[D - 1\]"),
        (lambda d, e, s, Y: (d[None], e, s, Y), r"d must be \[D\]"),
        (lambda d, e, s, Y: (d, e, s[None], Y), r"shifts must be \[g\]"),
        (lambda d, e, s, Y: (d, e, s, Y[1:]), r"Y must be \[D, c\]"),
        (lambda d, e, s, Y: (d[:0], e[:0], s, Y[:0]), "D >= 1"),
    ],
)
def test_bad_inputs_are_named(change, message):
    args = change(*problem(10, 6, 2, 3))
    with pytest.raises((ValueError, TypeError, RuntimeError), match=message):
        tridiagonal_solve(*args)


def test_fake_kernel_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        d, e, s, Y = torch.empty(7), torch.empty(6), torch.empty(4), torch.empty(7, 3)
        X, info = tridiagonal_solve(d, e, s, Y)
    assert X.shape == (4, 7, 3) and info.shape == (4,) and info.dtype == torch.int32


@pytest.mark.parametrize("dtype", DTYPES["tridiagonal_solve"], ids=["f32", "f64"])
def test_opcheck(dtype):
    samples = [s for s in sample_inputs(dtype) if s[0].shape[0] <= 100]
    assert opcheck_samples(torch.ops.emms.tridiagonal_solve.default, samples, dtype) == len(samples)
