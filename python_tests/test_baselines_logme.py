"""LogME: the emms::logme_evidence op against its reference (float64, float32 rule, opcheck, bad arguments;
the tests over ``sample_inputs`` run on every device x dtype of ``testing.py``, CUDA too where built),
the whole score against an independent numpy implementation written from the paper's formulas, the
fixed point's stationarity, and LogME on F-labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from testing import DTYPES, assert_close, devices_dtypes, opcheck_samples

import emms_ext
from emms_ext import ops
from emms_ext.baselines import logme, logme_flabels
from emms_ext.ops import reference


def op_problem(seed, k, T, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(k, generator=g, dtype=torch.float64) * 20).to(dtype)
    x = (torch.randn(T, k, generator=g, dtype=torch.float64) * 3).to(dtype)
    y2 = ((x.double() ** 2).sum(1) + torch.rand(T, generator=g, dtype=torch.float64) * 10).to(dtype)
    return s, x, y2


@pytest.mark.parametrize(
    "seed,k,T,N,D", [(0, 5, 3, 20, 7), (1, 40, 17, 100, 40), (2, 1, 1, 3, 1), (3, 30, 8, 30, 90), (4, 0, 2, 5, 3)]
)
@pytest.mark.parametrize("max_iter,tol", [(11, 1e-3), (200, 1e-12)])
def test_op_matches_reference(seed, k, T, N, D, max_iter, tol):
    s, x, y2 = op_problem(seed, k, T)
    out = ops.logme_evidence(s, x, y2, N, D, max_iter, tol)
    ref = reference.logme_evidence(s, x, y2, N, D, max_iter, tol)
    for a, b in zip(out[:3], ref[:3]):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert torch.equal(out[3], ref[3])
    assert out[0].dtype == torch.float64 and out[3].dtype == torch.int64


def test_op_float32_rule():
    s, x, y2 = op_problem(5, 25, 12)
    args = (60, 25, 500, 1e-13)  # converged: the answer is a smooth function of the inputs
    ref64 = reference.logme_evidence(s, x, y2, *args)[0]
    s32, x32, y32 = s.float(), x.float(), y2.float()
    ref32 = reference.logme_evidence(s32, x32, y32, *args, dtype=torch.float32)[0]
    out32 = ops.logme_evidence(s32, x32, y32, *args)[0]
    assert out32.dtype == torch.float32
    err_op = (out32.double() - ref64).abs().max()
    err_ref = (ref32 - ref64).abs().max()
    assert err_op <= 2 * err_ref + 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dtype):
    s, x, y2 = op_problem(6, 6, 4, dtype)
    torch.library.opcheck(torch.ops.emms.logme_evidence.default, (s, x, y2, 30, 9, 11, 1e-3, 1e-5))


def test_nan_target_does_not_poison_others():
    s, x, y2 = op_problem(7, 5, 3)
    x = x.clone()
    x[1, 2] = float("nan")
    ev = ops.logme_evidence(s, x, y2, 20, 5)[0]
    assert torch.isnan(ev[1]) and torch.isfinite(ev[[0, 2]]).all()


@pytest.mark.parametrize(
    "args,exc,match",
    [
        (
            (
                torch.ones(3, dtype=torch.float16),
                torch.ones(2, 3, dtype=torch.float16),
                torch.ones(2, dtype=torch.float16),
                5,
                3,
            ),
            TypeError,
            "float32 or float64",
        ),
        ((torch.ones(3, 1), torch.ones(2, 3), torch.ones(2), 5, 3), ValueError, r"sigma must be \[k\]"),
        ((torch.ones(3), torch.ones(2, 4), torch.ones(2), 5, 3), ValueError, r"proj must be \[T, k\] with k = 3"),
        ((torch.ones(3), torch.ones(2, 3), torch.ones(3), 5, 3), ValueError, r"ynorm2 must be \[T\] with T = 2"),
        ((torch.ones(3), torch.ones(2, 3).double(), torch.ones(2), 5, 3), TypeError, "share a dtype"),
        ((torch.ones(3), torch.ones(2, 3), torch.ones(2), 2, 3), ValueError, r"<= min\(N, D\)"),
        ((torch.ones(3), torch.ones(2, 3), torch.ones(2), 5, 2), ValueError, r"<= min\(N, D\)"),
        ((torch.ones(3), torch.ones(2, 3), torch.ones(2), 0, 3), ValueError, "N must be >= 1"),
    ],
)
def test_bad_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        ops.logme_evidence(*args)


@pytest.mark.parametrize(
    "kw,match", [({"max_iter": 0}, "max_iter"), ({"tol": -1.0}, "tol must be"), ({"eps": -1.0}, "eps must be")]
)
def test_bad_options(kw, match):
    s, x, y2 = op_problem(8, 3, 2)
    with pytest.raises(ValueError, match=match):
        ops.logme_evidence(s, x, y2, 10, 3, **kw)


# ------------------------------------------------------------------- sample_inputs: every device x dtype
def sample_inputs(device, dtype) -> list[tuple]:
    """Argument tuples ``(sigma, proj, ynorm2, N, D, max_iter, tol, eps)`` of emms::logme_evidence on ``device``
    in ``dtype``: rank k = 0 and k = 1, k < D and k = D, wide features (D > N), one and many targets, no
    targets (T = 0), targets entirely inside F's span (|y|^2 = |proj|^2), the released stopping rule and a
    converged one, eps = 0, and a NaN target next to finite ones."""
    samples = []
    for seed, k, T, N, D in [
        (0, 5, 3, 20, 7),
        (1, 40, 17, 100, 40),
        (2, 1, 1, 3, 1),
        (3, 30, 8, 30, 90),
        (4, 0, 2, 5, 3),
        (5, 16, 64, 200, 16),
        (6, 4, 0, 10, 4),
    ]:
        s, x, y2 = op_problem(200 + seed, k, T)
        for max_iter, tol, eps in [(11, 1e-3, 1e-5), (200, 1e-12, 1e-5)]:
            samples.append((s, x, y2, N, D, max_iter, tol, eps))
    s, x, _ = op_problem(210, 6, 5)
    samples.append((s, x, (x * x).sum(1), 6, 6, 50, 1e-10, 0.0))  # y in span(F), k = N = D, eps = 0
    s, x, y2 = op_problem(211, 5, 3)
    x = x.clone()
    x[1, 2] = float("nan")
    samples.append((s, x, y2, 20, 5, 11, 1e-3, 1e-5))
    return [
        (s.to(device=device, dtype=dtype), x.to(device=device, dtype=dtype), y2.to(device=device, dtype=dtype), *rest)
        for s, x, y2, *rest in samples
    ]


@devices_dtypes(DTYPES["logme_evidence"])
def test_sample_inputs_match_reference(device, dtype):
    for i, (s, x, y2, *rest) in enumerate(sample_inputs(device, dtype)):
        name = f"sample {i}: k = {s.shape[0]}, T = {x.shape[0]}, N, D, max_iter, tol, eps = {rest}"
        before = (s.clone(), x.clone(), y2.clone())
        out = torch.ops.emms.logme_evidence(s, x, y2, *rest)
        T = x.shape[0]
        assert all(o.shape == (T,) and o.device == s.device for o in out), name
        assert [o.dtype for o in out] == [dtype, dtype, dtype, torch.int64], name
        assert all(torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0)) for a, b in zip((s, x, y2), before)), name
        # computed in float64 from the (rounded) inputs, rounded once: the reference on the same values
        ref = reference.logme_evidence(s, x, y2, *rest)
        for what, a, b in zip(("evidence", "alpha", "beta"), out, ref):
            assert_close(a, b, dtype, scale=2, msg=f"{name} {what}")
        # the CPU kernel stops where the reference does; CUDA's FMAs may move the stopping test by one
        slack = 0 if device == "cpu" else 1
        assert bool(((out[3].cpu() - ref[3]).abs() <= slack).all()), name + " iterations"
        finite = torch.isfinite(x).all(1) & torch.isfinite(y2)
        assert bool(torch.isfinite(out[0][finite]).all()) and bool(torch.isnan(out[0][~finite]).all()), name
        if device != "cpu":  # the CUDA kernel agrees with the CPU kernel
            cpu = torch.ops.emms.logme_evidence(s.cpu(), x.cpu(), y2.cpu(), *rest)
            for a, b in zip(out, cpu):
                assert torch.allclose(
                    a.cpu().double(),
                    b.double(),
                    rtol=1e-9 if dtype == torch.float64 else 1e-6,
                    atol=1e-12,
                    equal_nan=True,
                ), name


@devices_dtypes(DTYPES["logme_evidence"])
def test_sample_inputs_opcheck(device, dtype):
    samples = sample_inputs(device, dtype)  # not differentiable: no autograd formula is registered
    assert opcheck_samples(torch.ops.emms.logme_evidence.default, samples, dtype) == len(samples)


# ----------------------------------------------------------------------------- independent implementation
def numpy_logme(F, Y, max_iter=11, tol=1e-3, eps=1e-5):
    """Written from the paper: explicit D x D matrix A = alpha I + beta F'F, m = beta A^-1 F'y, log|A| by
    slogdet, MacKay updates with gamma = sum beta s_i / (alpha + beta s_i). Mean evidence over columns of Y."""
    F = np.asarray(F, dtype=np.float64)
    N, D = F.shape
    FtF = F.T @ F
    s = np.clip(np.linalg.eigvalsh(FtF), 0, None)
    evs = []
    for y in np.asarray(Y, dtype=np.float64).T:
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            lam = alpha / beta
            A = alpha * np.eye(D) + beta * FtF
            m = beta * np.linalg.solve(A, F.T @ y)
            gamma = float(np.sum(beta * s / (alpha + beta * s)))
            m2 = float(m @ m)
            res2 = float(np.sum((y - F @ m) ** 2))
            alpha = gamma / (m2 + eps)
            beta = (N - gamma) / (res2 + eps)
            if abs(alpha / beta - lam) / lam <= tol:
                break
        logdet = np.linalg.slogdet(alpha * np.eye(D) + beta * FtF)[1]
        ev = (
            D / 2 * np.log(alpha)
            + N / 2 * np.log(beta)
            - logdet / 2
            - beta / 2 * res2
            - alpha / 2 * m2
            - N / 2 * np.log(2 * np.pi)
        )
        evs.append(ev / N)
    return float(np.mean(evs))


def features_and_labels(seed, N, D, C, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (N,), generator=g)
    y[:C] = torch.arange(C)
    centers = torch.randn(C, D, generator=g, dtype=torch.float64)
    X = torch.randn(N, D, generator=g, dtype=torch.float64) + 1.5 * centers[y] + shift
    return X, y


@pytest.mark.parametrize("seed,N,D,C", [(0, 200, 12, 4), (1, 60, 30, 5), (2, 40, 70, 3), (3, 500, 3, 2)])
def test_logme_classification_matches_numpy(seed, N, D, C, rel):
    X, y = features_and_labels(seed, N, D, C)
    onehot = np.eye(C)[y.numpy()]
    assert rel(logme(X, y), numpy_logme(X.numpy(), onehot)) < 1e-6
    # numpy input, non-contiguous features, arbitrary label values: same number; inputs untouched
    Xt = X.T.contiguous().T
    before = Xt.clone()
    assert rel(logme(Xt.numpy(), (y * 7 + 3).numpy()), numpy_logme(X.numpy(), onehot)) < 1e-6
    assert torch.equal(Xt, before)


@pytest.mark.parametrize("seed,N,D,T", [(4, 150, 10, 3), (5, 30, 45, 2)])
def test_logme_regression_matches_numpy(seed, N, D, T, rel):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, D, generator=g, dtype=torch.float64)
    Y = X @ torch.randn(D, T, generator=g, dtype=torch.float64) * 0.3 + torch.randn(
        N, T, generator=g, dtype=torch.float64
    )
    assert rel(logme(X, Y, regression=True), numpy_logme(X.numpy(), Y.numpy())) < 1e-6
    assert rel(logme(X, Y[:, 0], regression=True), numpy_logme(X.numpy(), Y[:, :1].numpy())) < 1e-6


def test_logme_converged_fixed_point_is_stationary():
    """Hand-checkable property: with eps = 0 and the iteration run to convergence, (alpha, beta) is a
    stationary point of the evidence, which we differentiate numerically with the explicit formula."""
    X, y = features_and_labels(9, 120, 6, 3)
    F = X.numpy()
    Y = np.eye(3)[y.numpy()][:, 0]
    s_t, V = torch.linalg.eigh(X.T @ X)
    proj = ((V.T @ (X.T @ torch.from_numpy(Y))) / s_t.sqrt())[None]
    ev, alpha, beta, it = ops.logme_evidence(
        s_t, proj, torch.tensor([float(Y @ Y)], dtype=torch.float64), 120, 6, max_iter=1000, tol=1e-14, eps=0.0
    )

    def evidence(a, b):
        A = a * np.eye(6) + b * F.T @ F
        m = b * np.linalg.solve(A, F.T @ Y)
        return (
            3 * np.log(a)
            + 60 * np.log(b)
            - np.linalg.slogdet(A)[1] / 2
            - b / 2 * np.sum((Y - F @ m) ** 2)
            - a / 2 * m @ m
            - 60 * np.log(2 * np.pi)
        ) / 120

    a, b = float(alpha[0]), float(beta[0])
    assert abs(evidence(a, b) - float(ev[0])) < 1e-10
    for h in (1e-4,):
        da = (evidence(a * (1 + h), b) - evidence(a * (1 - h), b)) / (2 * h)
        db = (evidence(a, b * (1 + h)) - evidence(a, b * (1 - h))) / (2 * h)
        assert abs(da) < 1e-8 and abs(db) < 1e-8
        assert evidence(a * 1.1, b) < float(ev[0]) and evidence(a, b * 0.9) < float(ev[0])


def test_logme_hand_case():
    """N = 2, D = 1, F = [1, 1]', y = [1, -1]': y is orthogonal to F, so |F'y| = 0, m = 0 and
    gamma = s/(s + alpha/beta) with s = 2. One update from alpha = beta = 1: gamma = 2/3, m2 = 0,
    res2 = |y|^2 = 2, so alpha = (2/3)/eps, beta = (4/3)/(2 + eps)."""
    ev, alpha, beta, it = ops.logme_evidence(
        torch.tensor([2.0], dtype=torch.float64),
        torch.tensor([[0.0]], dtype=torch.float64),
        torch.tensor([2.0], dtype=torch.float64),
        2,
        1,
        max_iter=1,
    )
    eps = 1e-5
    a, b = (2 / 3) / eps, (4 / 3) / (2 + eps)
    expect = (0.5 * np.log(a) + np.log(b) - 0.5 * np.log(a + 2 * b) - b / 2 * 2 - np.log(2 * np.pi)) / 2
    assert abs(float(alpha[0]) - a) < 1e-6 * a and abs(float(beta[0]) - b) < 1e-12
    assert abs(float(ev[0]) - expect) < 1e-12 and int(it[0]) == 1


def test_logme_classification_equals_one_hot_regression():
    X, y = features_and_labels(10, 90, 8, 3)
    assert abs(logme(X, y) - logme(X, torch.nn.functional.one_hot(y).double(), regression=True)) < 1e-12


def standardized_concat(zs):
    out = []
    for z in zs:
        z = np.asarray(z, dtype=np.float64)
        z = (z - z.mean(0)) / (z.std(0) + 1e-8)
        out.append(z[:, np.abs(z).max(0) > 0])
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize("seed", [0, 1])
def test_logme_flabels(seed, rel):
    X, y = features_and_labels(seed, 120, 10, 5)
    g = torch.Generator().manual_seed(seed + 10)
    tables = [torch.randn(5, 6, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)]
    expect = numpy_logme(X.numpy(), standardized_concat([t[y].numpy() for t in tables]))
    assert rel(logme_flabels(X, emms_ext.ClassLabels(tables, y)), expect) < 1e-6  # vocabulary path
    assert rel(logme_flabels(X, [t[y] for t in tables]), expect) < 1e-6  # dense, detected as vocabulary
    Z = torch.randn(120, 7, 2, generator=g, dtype=torch.float64)  # free text: dense path
    expect = numpy_logme(X.numpy(), standardized_concat([Z[:, :, 0].numpy(), Z[:, :, 1].numpy()]))
    assert rel(logme_flabels(X, Z), expect) < 1e-6


def test_logme_bad_inputs():
    X, y = features_and_labels(11, 20, 3, 2)
    with pytest.raises(ValueError, match=r"labels must be \[N\] with N = 20"):
        logme(X, y[:10])
    with pytest.raises(ValueError, match=r"features must be \[N, D\]"):
        logme(X[0], y)
    with pytest.raises(ValueError, match=r"labels must be an integer vector"):
        logme(X, y.double())
    with pytest.raises(ValueError, match="N = 20"):
        logme_flabels(X, torch.randn(10, 4, 2, dtype=torch.float64))
