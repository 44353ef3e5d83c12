"""Hostile inputs, generated: every case either matches the float64 reference or raises a clear
ValueError / TypeError; nothing crashes, hangs or mutates its input.

The number of examples, the deadline and whether the draws are random come from the hypothesis profile
(conftest.py): ``ci`` by default (derandomized: the same examples every run), ``fuzz`` with
``HYPOTHESIS_PROFILE=fuzz`` (``make fuzz``). No test here overrides them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install -r requirements-dev.txt)")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import emms_ext  # noqa: E402
from emms_ext.ops import cholesky_, cholesky_solve, reference  # noqa: E402

FLOATS = st.sampled_from([torch.float32, torch.float64])
SPECIAL = st.sampled_from([0.0, 1.0, -1.0, 1e30, -1e30, 1e-30, float("nan"), float("inf"), float("-inf")])


@st.composite
def tensors(draw, shape, dtype, special_rate=0.1):
    """Gaussian values of a random scale with a few special values sprinkled in."""
    n = int(np.prod(shape)) if shape else 1
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    x = torch.randn(n, generator=g, dtype=torch.float64) * scale
    if draw(st.booleans()):
        for _ in range(draw(st.integers(0, 3))):
            if n:
                x[draw(st.integers(0, n - 1))] = draw(SPECIAL)
    return x.reshape(shape).to(dtype)


@given(data=st.data(), K=st.integers(0, 12), batch=st.lists(st.integers(0, 4), max_size=2), dtype=FLOATS)
def test_simplex_project_fuzz(data, K, batch, dtype):
    v = data.draw(tensors(tuple(batch) + (K,), dtype))
    layout = data.draw(st.sampled_from(["contiguous", "transposed", "expanded"]))
    if layout == "transposed" and v.dim() >= 2:
        v = v.transpose(-1, -2).contiguous().transpose(-1, -2)
    elif layout == "expanded" and v.dim() >= 1 and K > 0:
        v = v[..., :1].expand(v.shape)
    before = v.clone()
    out = emms_ext.simplex_project(v)
    assert torch.equal(v.nan_to_num(7.0), before.nan_to_num(7.0))
    ref = reference.simplex_project(v)
    assert out.shape == v.shape and out.dtype == v.dtype
    finite = torch.isfinite(v.double()).all(-1) if K else torch.ones(v.shape[:-1], dtype=torch.bool)
    if K:
        assert bool(torch.isnan(out[~finite]).all())
        good = out[finite].double()
        assert torch.allclose(good, ref[finite], atol=1e-5 if dtype == torch.float32 else 1e-9)
        if good.numel():
            assert torch.allclose(good.sum(-1), torch.ones(good.shape[:-1], dtype=torch.float64), atol=1e-5)


@st.composite
def wlsr_problem(draw):
    K = draw(st.integers(1, 6))
    M = draw(st.integers(0, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    kind = draw(st.sampled_from(["psd", "random", "zero", "special"]))
    if kind == "psd":
        Z = torch.randn(20, 3, K, generator=g, dtype=torch.float64)
        A = torch.einsum("nlk,nlj->kj", Z, Z)
        Bs = []
        for _ in range(M):
            X = torch.randn(20, draw(st.integers(1, 25)), generator=g, dtype=torch.float64)
            P = X @ torch.linalg.pinv(X)
            Bs.append(torch.einsum("nlk,nm,mlj->kj", Z, P, Z))
        B = torch.stack(Bs) if Bs else torch.zeros(0, K, K, dtype=torch.float64)
    elif kind == "zero":
        A, B = torch.zeros(K, K, dtype=torch.float64), torch.zeros(M, K, K, dtype=torch.float64)
    else:
        A = torch.randn(K, K, generator=g, dtype=torch.float64)
        A = A + A.T
        B = torch.randn(M, K, K, generator=g, dtype=torch.float64)
        if kind == "special" and M:
            B[0, 0, 0] = draw(SPECIAL)
    return kind, A, B


@given(problem=wlsr_problem(), mode=st.sampled_from(["exact", "alternating", "reference"]), dtype=FLOATS)
def test_wlsr_simplex_fuzz(problem, mode, dtype):
    kind, A, B = problem
    A, B = A.to(dtype), B.to(dtype)
    A0, B0 = A.clone(), B.clone()
    t, f, it = emms_ext.wlsr_simplex(A, B, mode, max_iter=200)
    assert torch.equal(A.nan_to_num(7.0), A0.nan_to_num(7.0)) and torch.equal(B.nan_to_num(7.0), B0.nan_to_num(7.0))
    M, K = B.shape[0], B.shape[-1]
    assert t.shape == (M, K) and f.shape == (M,) and it.shape == (M,)
    for m in range(M):
        if bool(torch.isfinite(A).all()) and bool(torch.isfinite(B[m]).all()):
            tm = t[m].double()
            assert bool(torch.isfinite(tm).all()) and bool((tm >= -1e-12).all())
            assert abs(float(tm.sum()) - 1) < 1e-5
        else:
            assert bool(torch.isnan(t[m]).all()) and math.isnan(float(f[m]))
    if kind == "psd" and dtype == torch.float64 and M:
        _, f_ref, _ = reference.wlsr_simplex(A, B, mode, max_iter=200)
        assert torch.allclose(f, f_ref, rtol=1e-7, atol=1e-9 * float(A.abs().max()))


@given(
    data=st.data(),
    M=st.integers(0, 3),
    D=st.sampled_from([0, 1, 2, 7, 64, 191, 192, 193, 385, 400]),
    c=st.integers(0, 300),
    dtype=FLOATS,
    spd=st.booleans(),
    half=st.booleans(),
)
def test_cholesky_ops_fuzz(data, M, D, c, dtype, spd, half):
    """cholesky_ then cholesky_solve on Grams of widths around the tiles (192 for the factor, 384 for the
    solves), positive definite or indefinite, with special values: info stays in [0, D]; a finite Gram that
    factors (info 0) gives L L' = G and solves with a small backward error; nothing crashes; the solve
    leaves its inputs alone."""
    X = data.draw(tensors((M, D + 3, D), torch.float64))
    G = (X.mT @ X if spd else X[:, :D, :D] + X[:, :D, :D].mT).to(dtype).contiguous()
    G0 = G.clone()
    info = cholesky_(G)
    assert info.shape == (M,) and bool(((info >= 0) & (info <= D)).all())
    Y = data.draw(tensors((M, D, c), dtype))
    L0, Y0 = G.clone(), Y.clone()
    out = cholesky_solve(G, Y, half)
    assert out.shape == Y.shape and out.dtype == dtype
    assert torch.equal(G.nan_to_num(7.0), L0.nan_to_num(7.0)) and torch.equal(Y.nan_to_num(7.0), Y0.nan_to_num(7.0))
    eps = torch.finfo(dtype).eps
    for m in range(M):
        if info[m] != 0 or not bool(torch.isfinite(G0[m]).all()) or D == 0:
            continue
        L = G[m].double().tril()
        scale = float(G0[m].abs().max())
        assert float((L @ L.T - G0[m].double()).abs().max()) <= 50 * D * eps * scale
        x, y = out[m].double(), Y[m].double()
        if not bool(torch.isfinite(y).all()) or not bool(torch.isfinite(x).all()) or c == 0:
            continue
        # componentwise backward error of the solve(s): |r| <= c D eps (|L| |x| + |y|) (|L| |L'| |x| for two)
        r = L @ x - y if half else L @ (L.T @ x) - y
        ax = L.abs() @ x.abs() if half else L.abs() @ (L.T.abs() @ x.abs())
        assert bool((r.abs() <= 20 * D * eps * (ax + y.abs()) + 1e-300).all())


@st.composite
def score_inputs(draw):
    N = draw(st.integers(0, 40))
    D = draw(st.integers(0, 12))
    L = draw(st.integers(0, 4))
    K = draw(st.integers(0, 3))
    fdtype = draw(st.sampled_from([torch.float16, torch.float32, torch.float64, torch.int64]))
    X = draw(tensors((N, D), torch.float64, special_rate=0.05))
    Z = draw(tensors((N + draw(st.sampled_from([0, 0, 0, 1])), L, K), torch.float64))
    X = X.to(fdtype) if fdtype != torch.int64 else X.nan_to_num(0, 0, 0).clamp(-100, 100).to(torch.int64)
    if draw(st.booleans()) and N and D:
        X = X[:, :1].expand(N, D)  # stride-0 columns: all equal
    return X, Z


@given(inputs=score_inputs(), mode=st.sampled_from(["exact", "reference"]), as_numpy=st.booleans())
def test_emms_score_fuzz(inputs, mode, as_numpy):
    X, Z = inputs
    X0, Z0 = X.clone(), Z.clone()
    args = (X.numpy(), Z.numpy()) if as_numpy and X.dtype != torch.float16 else (X, Z)
    try:
        with np.errstate(all="ignore"), _quiet():
            res = emms_ext.emms_score(*args, mode=mode)
    except (ValueError, TypeError) as exc:
        assert str(exc)  # a message, not a bare exception
        return
    finally:
        assert torch.equal(X.nan_to_num(7.0), X0.nan_to_num(7.0)) and torch.equal(Z.nan_to_num(7.0), Z0.nan_to_num(7.0))
    assert math.isfinite(res.score)
    ref = reference.emms_score(X.double(), Z, mode)["score"]
    if res.degenerate:
        # An exact fit scores exactly 0 (issue: ties are ties). The released algorithm's own value there is
        # not always 0: with fewer label rows than sources (N L < K) its t-step is underdetermined and the
        # minimum-norm t leaves a residual; the rule must still have a reason: D >= N - 1 varying columns
        # or a residual per sample and label dimension within sqrt(eps) of the Gram's precision (float32
        # unless the features are float64), up to the float32 tolerance below.
        Xs = X.double()
        varying = int((Xs.std(0, unbiased=False) > 0).sum()) if Xs.shape[0] else 0
        eps = torch.finfo(torch.float64 if X.dtype == torch.float64 else torch.float32).eps
        assert res.score == 0.0
        assert varying >= Xs.shape[0] - 1 or mode == "reference" or abs(ref) <= eps**0.5 * (1 + 5e-3) + 1e-9
        return
    # float64 inputs: to 1e-6. float32 / float16 inputs: the Gram runs in float32 unless its condition
    # number makes that untrustworthy (then float64), so the error is bounded by ~FLOAT32_TRUST.
    tol = 1e-6 if X.dtype == torch.float64 else 5e-3
    assert abs(res.score - ref) <= tol * max(1.0, abs(ref))


class _quiet:
    """Silence warnings (degeneracy) inside a hypothesis example."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
