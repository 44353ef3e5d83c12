"""core/linalg.py: eigendecompositions, SVDs and sums whose bits do not depend on the thread count, checked
against float64 references on fresh inputs and across 1, 2 and 8 threads."""

from __future__ import annotations

import ctypes
import math

import pytest
import torch
from testing import gen, with_threads

from emms_ext.core import linalg
from emms_ext.ops import tridiagonal_solve


def sym(seed: int, *shape: int, dtype=torch.float64) -> torch.Tensor:
    """Symmetric positive semi-definite [..., D, D] of rank D - 3 (repeated zero eigenvalues included)."""
    *batch, D = shape
    x = torch.randn(*batch, D, D - 3, generator=gen(seed), dtype=torch.float64)
    return (x @ x.transpose(-1, -2)).to(dtype)


@pytest.mark.parametrize("shape", [(40,), (3, 40), (2, 2, 17)])
def test_eigh_decomposes_like_torch(shape):
    A = sym(1, *shape)
    e, V = linalg.eigh(A)
    e_ref = torch.linalg.eigvalsh(A)
    assert e.shape == e_ref.shape and V.shape == A.shape
    scale = e_ref.abs().amax()
    assert (e - e_ref).abs().max() <= 1e-12 * scale
    assert torch.allclose(V @ torch.diag_embed(e) @ V.transpose(-1, -2), A, atol=1e-11 * float(scale))
    eye = torch.eye(A.shape[-1], dtype=A.dtype).expand_as(A)
    assert torch.allclose(V.transpose(-1, -2) @ V, eye, atol=1e-12)


def test_eigh_float32_and_empty_batch():
    A = sym(2, 30, dtype=torch.float32)
    e, V = linalg.eigh(A)
    assert e.dtype == torch.float32 and V.dtype == torch.float32
    assert (e.double() - torch.linalg.eigvalsh(A.double())).abs().max() <= 1e-4 * float(e.abs().max())
    e0, V0 = linalg.eigh(torch.empty(0, 5, 5, dtype=torch.float64))
    assert e0.shape == (0, 5) and V0.shape == (0, 5, 5)


@pytest.mark.parametrize("shape", [(60, 25), (25, 60), (3, 50, 20)])
def test_svd_thin_like_torch(shape):
    x = torch.randn(*shape, generator=gen(3), dtype=torch.float64)
    U, S, Vh = linalg.svd(x)
    k = min(shape[-2:])
    assert U.shape == (*shape[:-1], k) and S.shape == (*shape[:-2], k) and Vh.shape == (*shape[:-2], k, shape[-1])
    assert torch.allclose(U @ torch.diag_embed(S) @ Vh, x, atol=1e-12)
    assert torch.allclose(S, torch.linalg.svdvals(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("D", [130, 300])
def test_same_bits_with_1_2_and_8_threads(D):
    """Widths where MKL's threaded syevd / gesdd round differently with 1 and 2 threads; one matrix and a
    batch (spread over the threads)."""
    one, batch = sym(4, D), sym(5, 3, D)
    x = torch.randn(D + 40, D, generator=gen(6), dtype=torch.float64)

    def run():
        return linalg.eigh(one), linalg.eigh(batch), linalg.svd(x)

    first, *rest = [with_threads(n, run) for n in (1, 2, 8)]
    for other in rest:
        for a, b in zip(first, other):
            assert all(torch.equal(p, q) for p, q in zip(a, b))
    # a batch is each matrix alone, whichever worker took it
    e1, V1 = with_threads(2, lambda: linalg.eigh(batch[1]))
    assert torch.equal(e1, first[1][0][1]) and torch.equal(V1, first[1][1][1])


@pytest.mark.skipif(not linalg.thread_independent_lapack(), reason="torch's BLAS is not MKL")
def test_serial_lapack_is_thread_local_and_restored():
    fn = linalg._mkl_threads_local()

    def local() -> int:  # the current local count (0: the global one), left unchanged
        before = fn(ctypes.byref(ctypes.c_int(0)))
        fn(ctypes.byref(ctypes.c_int(before)))
        return before

    start = local()  # torch.set_num_threads sets it too
    with linalg.serial_lapack():
        assert local() == 1
        with linalg.serial_lapack():
            assert local() == 1
        assert local() == 1
    assert local() == start
    with pytest.raises(RuntimeError), linalg.serial_lapack():
        raise RuntimeError("restored on error too")
    assert local() == start


def test_first_call_in_a_fresh_thread_is_serial_too():
    """torch's lazy per-thread initialization sets MKL's local count; in a fresh thread it ran inside the
    block and made the first call threaded (different bits) until serial_lapack initialized first."""
    from concurrent.futures import ThreadPoolExecutor

    A = sym(8, 300)

    def one():
        with linalg.serial_lapack():
            return torch.linalg.eigh(A)

    ref = with_threads(2, one)

    def fresh():
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(one).result()

    got = with_threads(2, fresh)
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])


@pytest.mark.parametrize("n", [0, 1, 4096, 4097, 1_000_003])
def test_ordered_sum_exact_order_and_value(n):
    x = torch.randn(n, generator=gen(7), dtype=torch.float64) * 10 ** torch.linspace(-3, 3, n, dtype=torch.float64)
    sums = [with_threads(t, lambda: linalg.ordered_sum(x)) for t in (1, 2, 8)]
    assert sums[0].dim() == 0 and all(torch.equal(sums[0], s) for s in sums)
    exact = math.fsum(x.tolist())
    assert abs(float(sums[0]) - exact) <= 1e-13 * max(float(x.abs().sum()), 1e-300)
    # matrices: the same as their flattened elements
    if n and n % 7 == 0:
        assert torch.equal(linalg.ordered_sum(x.view(7, -1)), sums[0])


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((300, 150), torch.float32),
        ((2, 900, 600), torch.float32),
        ((20, 200, 40), torch.float64),
        ((700, 520), torch.float64),
    ],
)
def test_gram_and_cross_product_same_bits_with_1_2_and_8_threads(shape, dtype):
    """float32 at D = 150, N = 300: MKL's threaded GEMM gave other bits with 8 threads than with 1 (its inner
    sum split); the block tasks do not. Against float64 references: the lower triangle of the products."""
    x = torch.randn(*shape, generator=gen(9), dtype=torch.float64).to(dtype)
    y = torch.randn(shape[-2], 5, generator=gen(10), dtype=torch.float64).to(dtype)
    x3 = x if x.dim() == 3 else x[None]

    def run():
        return linalg.symmetric_gram(x), linalg.cross_product(x3, y)

    first, *rest = [with_threads(n, run) for n in (1, 2, 8)]
    for other in rest:
        assert all(torch.equal(a, b) for a, b in zip(first, other))
    G, F = first
    x64, y64 = x.double(), y.double()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    ref_G = x64.transpose(-1, -2) @ x64
    assert G.dtype == torch.float64 and G.shape == ref_G.shape
    assert (G - ref_G).abs().max() <= tol * ref_G.abs().max()
    ref_F = x3.double().transpose(1, 2) @ y64
    assert F.shape == ref_F.shape and (F - ref_F).abs().max() <= tol * ref_F.abs().max()


def _tridiagonal(d: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    return torch.diag(d) + torch.diag(e, 1) + torch.diag(e, -1)


@pytest.mark.parametrize("D", [1, 2, 5, 127, 128, 129, 300])
def test_tridiagonalize_is_an_orthogonal_similarity(D):
    # Q'G Q = T and Q'Q = I, Q' taken from Q'Y with Y = I; the reflectors cross the 128-column blocks
    A = sym(3, D + 3)[:D, :D] if D > 1 else torch.full((1, 1), 2.0, dtype=torch.float64)
    before = A.clone()
    d, e, Qt = linalg.tridiagonalize(A, torch.eye(D, dtype=torch.float64))
    assert torch.equal(A, before)  # the input is not overwritten
    assert d.shape == (D,) and e.shape == (max(D - 1, 0),) and Qt.shape == (D, D)
    scale = float(A.abs().max())
    assert torch.allclose(Qt @ Qt.T, torch.eye(D, dtype=torch.float64), atol=1e-13 * D)
    assert torch.allclose(Qt @ A @ Qt.T, _tridiagonal(d, e), atol=1e-13 * D * scale)
    eig = linalg.tridiagonal_eigvalsh(d, e)
    assert (eig - torch.linalg.eigvalsh(A)).abs().max() <= 1e-13 * D * scale
    assert bool((eig[1:] >= eig[:-1]).all())


def test_tridiagonalize_decoupled_columns():
    # Columns already reduced (a zero off-diagonal part: a dropped feature column) give tau = 0, H = I
    A = sym(4, 200)
    A[:, [0, 60, 150]] = 0.0
    A[[0, 60, 150], :] = 0.0
    A[[0, 60, 150], [0, 60, 150]] = 1.0
    Y = torch.randn(200, 7, generator=gen(5), dtype=torch.float64)
    d, e, QtY = linalg.tridiagonalize(A, Y)
    _, _, Qt = linalg.tridiagonalize(A, torch.eye(200, dtype=torch.float64))
    assert bool(torch.isfinite(QtY).all())
    assert torch.allclose(Qt @ A @ Qt.T, _tridiagonal(d, e), atol=1e-11 * float(A.abs().max()))
    assert torch.allclose(QtY, Qt @ Y, atol=1e-12 * float(Y.abs().max()))
    # the quadratic forms a ridge path needs are basis-free: Y'(A + lambda I)^-1 Y = (Q'Y)'(T + lambda I)^-1 Q'Y
    lam = 0.3
    ref = Y.T @ torch.linalg.solve(A + lam * torch.eye(200, dtype=torch.float64), Y)
    S = tridiagonal_solve(d, e, torch.tensor([lam], dtype=torch.float64), QtY)[0][0]
    assert torch.allclose(QtY.T @ S, ref, rtol=1e-10, atol=1e-12 * float(ref.abs().max()))


def test_tridiagonalize_in_single_precision():
    # For a Gram formed in float32: the reduction in float32, its outputs float64 and as accurate as G itself
    A = sym(7, 300)
    d, e, Qt = linalg.tridiagonalize(A, torch.eye(300, dtype=torch.float64), single=True)
    assert d.dtype == e.dtype == Qt.dtype == torch.float64
    scale = float(A.abs().max())
    assert torch.allclose(Qt @ Qt.T, torch.eye(300, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(Qt @ A @ Qt.T, _tridiagonal(d, e), atol=1e-5 * scale)
    assert (linalg.tridiagonal_eigvalsh(d, e) - torch.linalg.eigvalsh(A)).abs().max() <= 1e-5 * scale
