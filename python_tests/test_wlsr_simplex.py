"""Tests of emms::wlsr_simplex: the three modes against the float64 references (support enumeration,
the paper's loop, the released single step), a brute-force grid, hand-computed optima, monotonicity of
the alternating objective, batching / strides / dtypes / non-finite models, argument errors and opcheck.
The tests over ``sample_inputs`` run on every device x dtype of ``testing.py`` (CUDA too, where built)."""

from __future__ import annotations

import functools

import pytest
import torch
from testing import DTYPES, assert_close, devices, devices_dtypes, opcheck_samples

import emms_ext
from emms_ext.ops import reference

F64 = torch.float64
MODES = ["exact", "alternating", "reference"]


# ------------------------------------------------------------------------------------------ helpers
def make_problem(seed: int, M: int, K: int, N: int = 30, D: int = 5, L: int = 3, identical: bool = False, dtype=F64):
    """Realistic K x K statistics of M models sharing one label set.

    X_m [N, D] centred features (partly driven by the labels, so models differ in fit), Z [N, L, K]
    centred labels from K correlated embedders; P_m = X_m X_m^+, A_kl = <Z_k, Z_l>, B_kl = <Z_k, P_m Z_l>.
    identical=True makes embedder 1 a copy of embedder 0 (A singular). D >= N - 1 gives perfect fits.
    """
    g = torch.Generator().manual_seed(seed)
    common = torch.randn(N, L, 1, generator=g, dtype=F64)
    Z = torch.randn(N, L, K, generator=g, dtype=F64) + 1.5 * common
    if identical:
        assert K >= 2
        Z[:, :, 1] = Z[:, :, 0]
    Z = Z - Z.mean(0)
    A = torch.einsum("nlk,nlj->kj", Z, Z)
    Bs = []
    for _ in range(M):
        X = torch.randn(N, D, generator=g, dtype=F64)
        mix = torch.randn(L * K, D, generator=g, dtype=F64) * torch.rand((), generator=g, dtype=F64)
        X = X + Z.reshape(N, L * K) @ mix  # features that explain the labels to a varying degree
        X = X - X.mean(0)
        P = X @ torch.linalg.pinv(X)
        Bs.append(torch.einsum("nlk,nm,mlj->kj", Z, P, Z))
    return A.to(dtype), torch.stack(Bs).to(dtype)


def quad(H: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """t' H t for batched H [M, K, K] (or shared [K, K]) and t [M, K], in float64."""
    H, t = H.to(F64), t.to(F64)
    if H.dim() == 2:
        H = H.expand(t.shape[0], -1, -1)
    return torch.einsum("mk,mkl,ml->m", t, H, t)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (objectives), float64."""
    a, b = a.to(F64), b.to(F64)
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def assert_on_simplex(t: torch.Tensor, tol: float = 1e-12):
    assert (t >= 0).all(), t
    assert ((t.to(F64).sum(-1) - 1).abs() <= tol).all(), t.sum(-1)


CASES = [(K, i) for K in range(1, 7) for i in range(2)]  # (K, replicate); seed derived from both


# ------------------------------------------------------------------------------------------- exact
@pytest.mark.parametrize("K, rep", CASES)
def test_exact_matches_support_enumeration(K, rep):
    A, B = make_problem(seed=1000 * K + rep, M=4, K=K)
    t, f, it = emms_ext.wlsr_simplex(A, B, "exact")
    tr, fr, _ = reference.wlsr_simplex(A, B, "exact")
    assert t.shape == (4, K) and f.shape == (4,) and it.shape == (4,)
    assert t.dtype == F64 and f.dtype == F64 and it.dtype == torch.int64
    assert_on_simplex(t)
    assert rel(f, fr) <= 1e-9
    assert ((f - quad(A - B, t)).abs() <= 1e-12 * f.abs()).all()  # reported objective is t'(A-B)t
    assert (it >= 1).all()
    # A - B is positive definite here, so the optimum is unique and t must match
    lam = torch.linalg.eigvalsh(A - B)
    assert (lam[:, 0] > 1e-6 * lam[:, -1]).all()
    assert (t - tr).abs().max() <= 1e-6


@pytest.mark.parametrize("K", [2, 3, 4, 5])
def test_exact_identical_embedders(K):
    A, B = make_problem(seed=2000 + K, M=3, K=K, identical=True)
    assert torch.linalg.eigvalsh(A)[0] <= 1e-12 * torch.linalg.eigvalsh(A)[-1]  # A singular
    t, f, _ = emms_ext.wlsr_simplex(A, B, "exact")
    _, fr, _ = reference.wlsr_simplex(A, B, "exact")
    assert_on_simplex(t)
    assert rel(f, fr) <= 1e-9  # t itself is not unique (t_0 and t_1 trade off)


@pytest.mark.parametrize("K", [1, 2, 3, 4])
def test_perfect_fit(K):
    # D >= N: the projector is the identity on centred data, B == A, every model scores 0.
    A, B = make_problem(seed=2100 + K, M=3, K=K, N=12, D=15)
    scale = torch.diagonal(A).sum().item()
    assert (A - B).abs().max() <= 1e-10 * scale
    for mode in ["exact", "alternating"]:
        t, f, _ = emms_ext.wlsr_simplex(A, B, mode)
        assert_on_simplex(t)
        assert f.abs().max() <= 1e-10 * scale, mode
    t, f, _ = emms_ext.wlsr_simplex(A, B, "reference")
    assert (t - 1.0 / K).abs().max() <= 1e-8  # lambda = A^+ B t0 = t0, already on the simplex
    assert f.abs().max() <= 1e-10 * scale


def _simplex_grid(K: int, n: int) -> torch.Tensor:
    """All points of the simplex with coordinates in {0, 1/n, ..., 1} ([P, K])."""
    if K == 1:
        return torch.ones(1, 1, dtype=F64)
    if K == 2:
        i = torch.arange(n + 1, dtype=F64)
        return torch.stack([i, n - i], -1) / n
    i, j = torch.meshgrid(torch.arange(n + 1), torch.arange(n + 1), indexing="ij")
    keep = i + j <= n
    i, j = i[keep], j[keep]
    return torch.stack([i, j, n - i - j], -1).to(F64) / n


@pytest.mark.parametrize("K, n", [(1, 1), (2, 4000), (3, 400)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_vs_grid_search(K, n, seed):
    A, B = make_problem(seed=3000 + 10 * K + seed, M=3, K=K)
    t, f, _ = emms_ext.wlsr_simplex(A, B, "exact")
    grid = _simplex_grid(K, n)
    h = 1.0 / n
    for m in range(3):
        H = A - B[m]
        vals = torch.einsum("pk,kl,pl->p", grid, H, grid)
        best = vals.min().item()
        fm = f[m].item()
        assert fm <= best + 1e-12 * abs(best)  # the op is at least as good as every grid point
        # and no better than the grid's resolution allows: the grid point nearest t* is within h
        g = (H @ t[m]).abs().max().item()
        resolution = 2 * g * K * h + torch.linalg.matrix_norm(H, ord=2).item() * K * h * h
        assert best - fm <= resolution + 1e-12 * abs(best)


def test_exact_hand_computed_diagonal():
    # A - B = diag(m): t_i proportional to 1/m_i, objective 1 / sum(1/m_i)
    m = torch.tensor([1.0, 2.0, 4.0, 0.5], dtype=F64)
    c = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)
    B = torch.stack([torch.outer(c, c), torch.zeros(4, 4, dtype=F64)])
    A = B + torch.diag(m)
    t, f, _ = emms_ext.wlsr_simplex(A, B, "exact")
    expected_t = (1 / m) / (1 / m).sum()
    assert (t - expected_t).abs().max() <= 1e-14
    assert (f - 1 / (1 / m).sum()).abs().max() <= 1e-14
    ta, fa, ita = emms_ext.wlsr_simplex(A, B, "alternating", 10_000, 0.0)
    assert (fa - 1 / (1 / m).sum()).abs().max() <= 1e-10
    assert (ita >= 1).all()


def test_exact_hand_computed_vertex():
    # H = [[1, 2], [2, 5]]: on t = (1 - s, s), t'Ht = 1 + 2s + 2s^2, increasing on [0, 1] -> vertex (1, 0)
    H = torch.tensor([[1.0, 2.0], [2.0, 5.0]], dtype=F64)
    B = torch.stack([torch.eye(2, dtype=F64), torch.zeros(2, 2, dtype=F64)])
    A = B + torch.stack([H, H.flip(0, 1)])  # second model: mirrored, optimum at (0, 1)
    t, f, _ = emms_ext.wlsr_simplex(A, B, "exact")
    assert torch.equal(t, torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64))
    assert (f - 1.0).abs().max() <= 1e-14


@pytest.mark.parametrize("K", [7, 8])
def test_exact_larger_K(K):
    A, B = make_problem(seed=2200 + K, M=2, K=K, N=60, D=8, L=4)
    t, f, _ = emms_ext.wlsr_simplex(A, B, "exact")
    tr, fr, _ = reference.wlsr_simplex(A, B, "exact")
    assert_on_simplex(t)
    assert rel(f, fr) <= 1e-9
    assert (t - tr).abs().max() <= 1e-6


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("c", [1e-150, 1e-20, 1e20, 1e150])
def test_scale_invariance(mode, c):
    # scaling A and B scales the objective and leaves t unchanged (all tolerances must be relative)
    A, B = make_problem(seed=2300, M=4, K=4)
    t, f, it = emms_ext.wlsr_simplex(A, B, mode)
    tc, fc, itc = emms_ext.wlsr_simplex(A * c, B * c, mode)
    assert (tc - t).abs().max() <= 1e-12
    assert rel(fc / c, f) <= 1e-12
    if mode != "alternating":
        assert torch.equal(itc, it)


# ------------------------------------------------------------------------------------- alternating
@pytest.mark.parametrize("K, seed", [(2, 0), (3, 1), (4, 2), (6, 3)])
def test_alternating_monotone(K, seed):
    A, B = make_problem(seed=4000 + 10 * K + seed, M=4, K=K)
    t0 = torch.full((4, K), 1.0 / K, dtype=F64)
    f_prev = quad(A - B, t0)  # objective at the starting point
    fs = []
    for n in range(1, 31):
        t, f, it = emms_ext.wlsr_simplex(A, B, "alternating", n, 0.0)
        assert_on_simplex(t)
        assert (it <= n).all() and (it >= 0).all()
        assert ((f - quad(A - B, t)).abs() <= 1e-12 * f.abs()).all()
        assert (f <= f_prev + 1e-12 * f_prev.abs()).all(), (n, f, f_prev)
        f_prev = f
        fs.append(f)
    # the loop actually moves: after 30 alternations the objective is clearly below the first step's
    assert (fs[-1] < fs[0] * (1 - 1e-6)).any()
    _, fe, _ = emms_ext.wlsr_simplex(A, B, "exact")
    assert (fs[-1] >= fe * (1 - 1e-12)).all()  # never below the optimum


@pytest.mark.parametrize("K, rep", CASES)
@pytest.mark.parametrize("tol", [0.0, 1e-15])
def test_alternating_converges_to_exact(K, rep, tol):
    A, B = make_problem(seed=5000 + 10 * K + rep, M=3, K=K)
    max_iter = 5000
    t, f, it = emms_ext.wlsr_simplex(A, B, "alternating", max_iter, tol)
    _, fe, _ = emms_ext.wlsr_simplex(A, B, "exact")
    assert_on_simplex(t)
    assert rel(f, fe) <= 1e-6
    assert (f >= fe * (1 - 1e-12)).all()
    if K > 1:
        assert (it >= 1).all()
    assert (it <= max_iter).all()


@pytest.mark.parametrize("K", [1, 2, 3, 4, 5])
def test_alternating_matches_reference_fixed_steps(K):
    # with few steps and tol = 0 both loops run every step, so the iterates must agree closely
    A, B = make_problem(seed=6000 + K, M=3, K=K)
    for n in (1, 3, 6):
        t, f, it = emms_ext.wlsr_simplex(A, B, "alternating", n, 0.0)
        tr, fr, itr = reference.wlsr_simplex(A, B, "alternating", n, 0.0)
        assert torch.equal(it, itr)
        assert rel(f, fr) <= 1e-10
        assert (t - tr).abs().max() <= 1e-8


@pytest.mark.parametrize("K", [2, 3, 4])
def test_alternating_matches_reference_converged(K):
    A, B = make_problem(seed=6100 + K, M=3, K=K)
    t, f, it = emms_ext.wlsr_simplex(A, B, "alternating", 1000, 1e-9)
    tr, fr, itr = reference.wlsr_simplex(A, B, "alternating", 1000, 1e-9)
    assert rel(f, fr) <= 1e-8
    assert (t - tr).abs().max() <= 1e-4
    assert ((it - itr).abs() <= 2).all()  # stopping point can move by rounding, not by much


@pytest.mark.parametrize("K", [2, 3, 4])
def test_alternating_identical_embedders(K):
    # singular A in the t-step QP: still matches the reference loop step by step and converges
    A, B = make_problem(seed=6200 + K, M=3, K=K, identical=True)
    t, f, it = emms_ext.wlsr_simplex(A, B, "alternating", 5, 0.0)
    tr, fr, itr = reference.wlsr_simplex(A, B, "alternating", 5, 0.0)
    assert ((it - itr).abs() <= 2).all()  # with tol=0 the last accepted step is decided by rounding
    assert rel(f, fr) <= 1e-10
    # only t_0 + t_1 is determined (embedders 0 and 1 are the same); the rest of t is unique
    merge = lambda x: torch.cat([x[:, :1] + x[:, 1:2], x[:, 2:]], 1)  # noqa: E731
    assert (merge(t) - merge(tr)).abs().max() <= 1e-8
    t, f, _ = emms_ext.wlsr_simplex(A, B, "alternating", 5000, 0.0)
    _, fe, _ = emms_ext.wlsr_simplex(A, B, "exact")
    assert_on_simplex(t)
    assert rel(f, fe) <= 1e-6


# --------------------------------------------------------------------------------------- reference
@pytest.mark.parametrize("K, rep", CASES)
def test_reference_mode_matches_released_step(K, rep):
    A, B = make_problem(seed=7000 + 10 * K + rep, M=4, K=K)
    t, f, it = emms_ext.wlsr_simplex(A, B, "reference")
    tr, fr, itr = reference.wlsr_simplex(A, B, "reference")
    assert_on_simplex(t)
    assert (t - tr).abs().max() <= 1e-10
    assert rel(f, fr) <= 1e-10
    assert (it == 1).all()
    # objective formula: t0'B t0 - 2 t1'B t0 + t1'A t1
    t0 = torch.full_like(t, 1.0 / K)
    expected = torch.einsum("mk,mkl,ml->m", t0, B, t0) - 2 * torch.einsum("mk,mkl,ml->m", t, B, t0) + quad(A, t)
    assert rel(f, expected) <= 1e-12
    # a single step cannot beat the optimum of t'(A - B)t ... and the released objective is >= it
    _, fe, _ = emms_ext.wlsr_simplex(A, B, "exact")
    assert (f >= fe * (1 - 1e-10)).all()


@pytest.mark.parametrize("K", [2, 3, 4, 5])
def test_reference_mode_identical_embedders(K):
    A, B = make_problem(seed=7500 + K, M=3, K=K, identical=True)
    t, f, _ = emms_ext.wlsr_simplex(A, B, "reference")
    tr, fr, _ = reference.wlsr_simplex(A, B, "reference")
    assert torch.isfinite(t).all()
    assert (t - tr).abs().max() <= 1e-10
    assert rel(f, fr) <= 1e-10
    # the minimum-norm lambda splits the duplicated embedder evenly
    assert (t[:, 0] - t[:, 1]).abs().max() <= 1e-10


# --------------------------------------------------------------------------------------- batching
@pytest.mark.parametrize("mode", MODES)
def test_shared_A_equals_expanded_A(mode):
    A, B = make_problem(seed=8000, M=5, K=4)
    out_shared = emms_ext.wlsr_simplex(A, B, mode, 200, 1e-12)
    out_expanded = emms_ext.wlsr_simplex(A.expand(5, 4, 4), B, mode, 200, 1e-12)
    out_batched = emms_ext.wlsr_simplex(A.expand(5, 4, 4).contiguous(), B, mode, 200, 1e-12)
    for a, b, c in zip(out_shared, out_expanded, out_batched):
        assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize("mode", MODES)
def test_batch_independent_of_neighbours(mode):
    A, B = make_problem(seed=8100, M=6, K=3)
    t, f, it = emms_ext.wlsr_simplex(A, B, mode, 100, 1e-12)
    for m in range(6):
        tm, fm, im = emms_ext.wlsr_simplex(A, B[m : m + 1], mode, 100, 1e-12)
        assert torch.equal(tm[0], t[m]) and torch.equal(fm[0], f[m]) and torch.equal(im[0], it[m])


@pytest.mark.parametrize("mode", MODES)
def test_per_model_A(mode):
    # a batched A with different label Grams per model equals M separate calls
    A1, B1 = make_problem(seed=8200, M=2, K=3)
    A2, B2 = make_problem(seed=8201, M=2, K=3)
    A = torch.stack([A1, A1, A2, A2])
    B = torch.cat([B1, B2])
    t, f, _ = emms_ext.wlsr_simplex(A, B, mode, 100, 1e-12)
    t1, f1, _ = emms_ext.wlsr_simplex(A1, B1, mode, 100, 1e-12)
    t2, f2, _ = emms_ext.wlsr_simplex(A2, B2, mode, 100, 1e-12)
    assert torch.equal(t, torch.cat([t1, t2])) and torch.equal(f, torch.cat([f1, f2]))


@pytest.mark.parametrize("shared", [True, False])
def test_empty_batch(shared):
    K = 3
    A = torch.eye(K, dtype=F64) if shared else torch.empty(0, K, K, dtype=F64)
    B = torch.empty(0, K, K, dtype=F64)
    for mode in MODES:
        t, f, it = emms_ext.wlsr_simplex(A, B, mode)
        assert t.shape == (0, K) and f.shape == (0,) and it.shape == (0,)
        assert t.dtype == F64 and f.dtype == F64 and it.dtype == torch.int64


# ------------------------------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("K, seed", [(2, 0), (3, 1), (5, 2)])
def test_float32_tolerance_rule(mode, K, seed):
    A, B = make_problem(seed=9000 + 10 * K + seed, M=4, K=K)
    A32, B32 = A.float(), B.float()
    # alternating with a fixed number of steps so that the three runs take the same path
    kw = dict(max_iter=5, tol=0.0) if mode == "alternating" else {}
    t32, f32, _ = emms_ext.wlsr_simplex(A32, B32, mode, **kw)
    assert t32.dtype == torch.float32 and f32.dtype == torch.float32
    assert_on_simplex(t32, tol=1e-6)
    _, f64, _ = reference.wlsr_simplex(A, B, mode, **kw)
    _, fref32, _ = reference.wlsr_simplex(A32, B32, mode, **kw)  # float64 math on float32-rounded inputs
    assert rel(f32, f64) <= 2 * rel(fref32.float(), f64) + 1e-6


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_runs(dtype):
    A, B = make_problem(seed=9100, M=3, K=3)
    s = A.abs().max()
    t, f, _ = emms_ext.wlsr_simplex((A / s).to(dtype), (B / s).to(dtype), "exact")
    assert t.dtype == dtype and f.dtype == dtype
    _, fr, _ = reference.wlsr_simplex((A / s).to(dtype), (B / s).to(dtype), "exact")
    assert ((f.double() - fr).abs() <= 2 * torch.finfo(dtype).eps * fr.abs() + 1e-6).all()


# ----------------------------------------------------------------------------- strides / mutation
@pytest.mark.parametrize("mode", MODES)
def test_inputs_not_mutated(mode):
    A, B = make_problem(seed=9200, M=3, K=4)
    for a in (A, A.expand(3, 4, 4).clone()):
        a0, b0 = a.clone(), B.clone()
        emms_ext.wlsr_simplex(a, B, mode, 50, 0.0)
        assert torch.equal(a, a0) and torch.equal(B, b0)


@pytest.mark.parametrize("mode", MODES)
def test_non_contiguous_inputs(mode):
    A, B = make_problem(seed=9300, M=6, K=4)
    A = (A + A.T) / 2  # exactly symmetric, so transposes are the same matrices
    B = (B + B.transpose(1, 2)) / 2
    expected = emms_ext.wlsr_simplex(A, B, mode, 100, 1e-12)
    At = A.T.contiguous().T  # a transposed view holding the same values
    Bt = B.transpose(1, 2).contiguous().transpose(1, 2)
    assert not At.is_contiguous() and not Bt.is_contiguous()
    for a, b in [(At, B), (A, Bt), (At, Bt)]:
        for x, y in zip(emms_ext.wlsr_simplex(a, b, mode, 100, 1e-12), expected):
            assert torch.equal(x, y)
    # slices with a step: every other model of a larger batch
    A2, B2 = make_problem(seed=9301, M=6, K=4)
    Abig = torch.stack([A] * 6 + [A2] * 6)  # [12, K, K] per-model label Grams
    Bbig = torch.cat([B, B2])  # [12, K, K]
    As, Bs = Abig[::2], Bbig[::2]
    assert not Bs.is_contiguous() and not As.is_contiguous()
    got = emms_ext.wlsr_simplex(As, Bs, mode, 100, 1e-12)
    want = emms_ext.wlsr_simplex(As.contiguous(), Bs.contiguous(), mode, 100, 1e-12)
    for x, y in zip(got, want):
        assert torch.equal(x, y)


# ------------------------------------------------------------------------------------- non-finite
@pytest.mark.parametrize("mode", MODES)
@devices
def test_non_finite_model_isolated(mode, device):
    A, B = make_problem(seed=9400, M=5, K=3)
    A = A.expand(5, 3, 3).clone().to(device)
    B = B.to(device)
    clean = emms_ext.wlsr_simplex(A, B, mode, 100, 1e-12)
    A[1, 0, 0] = float("inf")
    B[2, 1, 2] = float("nan")
    B[3, 0, 1] = -float("inf")
    t, f, it = emms_ext.wlsr_simplex(A, B, mode, 100, 1e-12)
    bad = torch.tensor([False, True, True, True, False], device=device)
    assert torch.isnan(t[bad]).all() and torch.isnan(f[bad]).all()
    assert torch.isfinite(t[~bad]).all() and torch.isfinite(f[~bad]).all()
    assert torch.equal(t[~bad], clean[0][~bad]) and torch.equal(f[~bad], clean[1][~bad])
    assert torch.equal(it[~bad], clean[2][~bad])
    if device != "cpu":  # per-model A with poisoned models: the CUDA kernel agrees with the CPU kernel
        t_c, f_c, it_c = emms_ext.wlsr_simplex(A.cpu(), B.cpu(), mode, 100, 1e-12)
        assert torch.allclose(f.cpu(), f_c, equal_nan=True, rtol=1e-10)
        assert torch.allclose(t.cpu(), t_c, equal_nan=True, atol=1e-6) and torch.equal(it.cpu(), it_c)


def test_non_finite_shared_A_poisons_all():
    A, B = make_problem(seed=9401, M=3, K=2)
    A[0, 1] = float("nan")
    t, f, _ = emms_ext.wlsr_simplex(A, B, "exact")
    assert torch.isnan(t).all() and torch.isnan(f).all()


# ------------------------------------------------------------------------------------------ errors
def _ok(K=3, M=2, dtype=F64):
    return torch.eye(K, dtype=dtype) * 2, torch.eye(K, dtype=dtype).expand(M, K, K).clone()


@pytest.mark.parametrize("B_shape", [(3, 3), (2, 3, 4), (2, 3, 3, 1), (2, 0, 0)], ids=["2d", "non_square", "4d", "K0"])
def test_bad_B_shape(B_shape):
    A, _ = _ok()
    with pytest.raises(ValueError, match=r"B must be \[M, K, K\]"):
        emms_ext.wlsr_simplex(A, torch.zeros(B_shape, dtype=F64))


@pytest.mark.parametrize("A_shape", [(4, 4), (3, 4), (3, 3, 3), (2, 3, 4), (3,), (1, 2, 3, 3)])
def test_bad_A_shape(A_shape):
    _, B = _ok()
    with pytest.raises(ValueError, match=r"A must be \[K, K\] or \[M, K, K\]"):
        emms_ext.wlsr_simplex(torch.zeros(A_shape, dtype=F64), B)


def test_dtype_errors():
    A, B = _ok()
    with pytest.raises(TypeError, match="A and B must share a dtype"):
        emms_ext.wlsr_simplex(A.float(), B)
    with pytest.raises(TypeError, match=r"\bA must be a floating-point"):
        emms_ext.wlsr_simplex(A.long(), B)
    with pytest.raises(TypeError, match=r"\bB must be a floating-point"):
        emms_ext.wlsr_simplex(A, B.int())
    with pytest.raises(TypeError):
        torch.ops.emms.wlsr_simplex(A.long(), B.long(), 0, 10, 0.0)


def test_value_errors():
    A, B = _ok()
    with pytest.raises(ValueError, match="mode"):
        torch.ops.emms.wlsr_simplex(A, B, 3, 10, 0.0)
    with pytest.raises(ValueError, match="mode"):
        torch.ops.emms.wlsr_simplex(A, B, -1, 10, 0.0)
    with pytest.raises(ValueError, match="mode"):
        emms_ext.wlsr_simplex(A, B, 3)
    with pytest.raises(ValueError, match="max_iter"):
        torch.ops.emms.wlsr_simplex(A, B, 1, 0, 0.0)
    with pytest.raises(ValueError, match="max_iter"):
        emms_ext.wlsr_simplex(A, B, "alternating", max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        torch.ops.emms.wlsr_simplex(A, B, 1, 10, -1e-3)
    with pytest.raises(ValueError, match="tol"):
        emms_ext.wlsr_simplex(A, B, "alternating", tol=-1.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        emms_ext.wlsr_simplex(A, B, "newton")
    # the integer codes and names are the same thing
    for name, code in [("exact", 0), ("alternating", 1), ("reference", 2)]:
        for x, y in zip(emms_ext.wlsr_simplex(A + 1, B, name), emms_ext.wlsr_simplex(A + 1, B, code)):
            assert torch.equal(x, y)


# ---------------------------------------------------------------------------------------- opcheck
@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("shared", [True, False])
def test_opcheck(mode, dtype, shared):
    A, B = make_problem(seed=9500 + mode, M=3, K=3, dtype=dtype)
    if not shared:
        A = A.expand(3, 3, 3).clone()
    torch.library.opcheck(torch.ops.emms.wlsr_simplex.default, (A, B, mode, 100, 1e-12))


# ------------------------------------------------------------------- sample_inputs: every device x dtype
def _batched_problem(seed: int, M: int, K: int, N: int = 30, D: int = 5, L: int = 3):
    """make_problem's statistics for many models at once (batched pinv): A [K, K], B [M, K, K]."""
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(N, L, K, generator=g, dtype=F64) + 1.5 * torch.randn(N, L, 1, generator=g, dtype=F64)
    Z = Z - Z.mean(0)
    X = torch.randn(M, N, D, generator=g, dtype=F64)
    mix = torch.randn(M, L * K, D, generator=g, dtype=F64) * torch.rand(M, 1, 1, generator=g, dtype=F64)
    X = X + Z.reshape(1, N, L * K) @ mix  # features that explain the labels to a varying degree
    X = X - X.mean(1, keepdim=True)
    PZ = (X @ torch.linalg.pinv(X)) @ Z.reshape(1, N, L * K)  # [M, N, L K]
    B = torch.einsum("nlk,mnlj->mkj", Z, PZ.reshape(M, N, L, K))
    return torch.einsum("nlk,nlj->kj", Z, Z), (B + B.transpose(1, 2)) / 2


@functools.lru_cache(maxsize=1)
def _sample_problems() -> tuple:
    """The float64 problems of sample_inputs: (A, B, max_iter, tol), |A| <= 1."""
    problems = []  # alternating runs to convergence on the large ones, a few steps on the others
    for K, M in [(1, 5), (2, 4), (3, 1), (4, 3), (6, 2), (8, 64), (3, 1024), (32, 16), (40, 4)]:
        A, B = _batched_problem(seed=12000 + 100 * K + M, M=M, K=K, N=max(30, 2 * K), D=5 + K // 4)
        problems.append((A, B, 10_000, 1e-12) if K > 8 or M > 8 else (A, B, 8, 1e-12))
    A, B = _batched_problem(seed=12900, M=6, K=3)
    A = A.expand(6, 3, 3).clone()
    B[2, 0, 0] = float("nan")  # batched A, one poisoned model
    problems.append((A, B, 8, 1e-12))
    problems.append((*make_problem(seed=12901, M=3, K=3, identical=True), 8, 0.0))
    problems.append((torch.eye(3, dtype=F64), torch.empty(0, 3, 3, dtype=F64), 8, 1e-12))
    problems.append((2 * torch.eye(4, dtype=F64), torch.eye(4, dtype=F64).expand(2, 4, 4), 8, 1e-12))
    A, B = _batched_problem(seed=12902, M=8, K=4)
    problems.append((A, B[::2], 8, 1e-12))  # every other model: a strided batch
    return tuple(
        (A / A.abs().max().clamp_min(1e-300), B / A.abs().max().clamp_min(1e-300), it, tol)
        for A, B, it, tol in problems
    )


def sample_inputs(device, dtype) -> list[tuple]:
    """Argument tuples ``(A, B, mode, max_iter, tol)`` of emms::wlsr_simplex on ``device`` in ``dtype``, each
    problem in the three modes: K = 1, K = 2..6, K = 8, K = 32 and K = 40 (past the CUDA kernel's shared-memory
    scratch), M = 1, 64 and 1024 models, an empty batch, a per-model A with a non-finite model in the batch,
    identical embedders (singular A), a tie (A - B = I: the barycentre), and a strided B. Entries are scaled
    to |A| <= 1 so that float16 holds them."""

    def on(x: torch.Tensor) -> torch.Tensor:
        return x.to(device=device, dtype=dtype)

    return [(on(A), on(B), mode, max_iter, tol) for A, B, max_iter, tol in _sample_problems() for mode in (0, 1, 2)]


def _reference_is_cheap(A, B, mode) -> bool:
    """The references enumerate 2^K supports in Python, per model and (alternating) per step."""
    M, K = B.shape[0], B.shape[-1]
    return M >= 1 and (mode == 2 and M <= 64 or K <= 6 and M <= 8)


def _unique_optimum(A: torch.Tensor, B: torch.Tensor) -> bool:
    """A and A - B positive definite for every model: the exact optimum and every t-step are unique."""
    lam_a = torch.linalg.eigvalsh(A.cpu().double())
    lam_ab = torch.linalg.eigvalsh((A - B).cpu().double())
    return bool((lam_a[:, 0] > 1e-6 * lam_a[:, -1]).all() and (lam_ab[:, 0] > 1e-6 * lam_ab[:, -1]).all())


@devices_dtypes(DTYPES["wlsr_simplex"])
def test_sample_inputs_match_reference(device, dtype):
    low = dtype in (torch.float16, torch.bfloat16)
    for i, (A, B, mode, max_iter, tol) in enumerate(sample_inputs(device, dtype)):
        name = f"sample {i}: K={B.shape[-1]} M={B.shape[0]} mode={mode}"
        A0, B0 = A.clone(), B.clone()
        t, f, it = torch.ops.emms.wlsr_simplex(A, B, mode, max_iter, tol)
        M, K = B.shape[0], B.shape[-1]
        assert t.shape == (M, K) and f.shape == (M,) and it.shape == (M,), name
        assert t.dtype == dtype and f.dtype == dtype and it.dtype == torch.int64, name
        assert t.device == B.device and it.device == B.device, name
        assert torch.equal(A.nan_to_num(7.0), A0.nan_to_num(7.0)) and torch.equal(B.nan_to_num(7.0), B0.nan_to_num(7.0))
        # models with a non-finite input come back NaN; the others are finite, on the simplex
        Ab = A.expand(M, K, K) if A.dim() == 2 else A
        ok = torch.isfinite(Ab).flatten(1).all(1) & torch.isfinite(B).flatten(1).all(1)
        assert bool(torch.isnan(t[~ok]).all()) and bool(torch.isnan(f[~ok]).all()), name
        assert bool(torch.isfinite(t[ok]).all()) and bool(torch.isfinite(f[ok]).all()), name
        assert_on_simplex(t[ok], tol=1e-12 if dtype == F64 else 4 * torch.finfo(dtype).eps)
        # The kernels solve in float64 whatever the dtype and round once: every error below is a few units
        # of the output's rounding (objectives relative to the batch's largest).
        fscale = float(f[ok].double().abs().max()) if bool(ok.any()) else 1.0
        if mode != 2:  # exact and alternating report the objective t'(A - B)t at the returned t
            assert_close(f[ok] / fscale, quad((Ab - B)[ok], t[ok].double()) / fscale, dtype, scale=2, msg=name)
        if _reference_is_cheap(A, B, mode):
            tr, fr, itr = reference.wlsr_simplex(A, B, ("exact", "alternating", "reference")[mode], max_iter, tol)
            assert_close(f / fscale, fr / fscale, dtype, scale=2, msg=name + " objective")
            if mode == 2 or _unique_optimum(Ab[ok], B[ok]):  # identical embedders: only t0 + t1 is determined
                assert_close(t, tr, dtype, scale=2, msg=name + " t")
            if mode == 1:  # the same loop: the stopping step can move by rounding, not by much
                assert bool(((it.cpu() - itr).abs()[ok.cpu()] <= 2).all()), name
        if mode == 0:
            assert bool((it[ok] >= 1).all()), name
        elif mode == 1:
            assert bool(((it[ok] >= 0) & (it[ok] <= max_iter)).all()), name
        else:
            assert bool((it[ok] == 1).all()), name
        if device != "cpu":  # the CUDA kernel agrees with the CPU kernel (both solve in float64)
            t_c, f_c, it_c = torch.ops.emms.wlsr_simplex(A.cpu(), B.cpu(), mode, max_iter, tol)
            rtol = 1e-9 if not low else 2 * torch.finfo(dtype).eps
            assert torch.allclose(f.cpu().double(), f_c.double(), rtol=rtol, atol=rtol, equal_nan=True), name
            assert torch.allclose(
                t.cpu().double(), t_c.double(), atol=1e-6 if not low else 4 * torch.finfo(dtype).eps, equal_nan=True
            ), name
            # nvcc contracts multiply-adds into FMAs, the CPU build does not: a stopping test may flip
            assert bool(((it.cpu() - it_c).abs() <= 1).all()), name


@devices_dtypes(DTYPES["wlsr_simplex"])
def test_sample_inputs_opcheck(device, dtype):
    samples = sample_inputs(device, dtype)  # not differentiable: no autograd formula is registered
    assert opcheck_samples(torch.ops.emms.wlsr_simplex.default, samples, dtype) == len(samples)
