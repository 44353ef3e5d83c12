"""CUDA backend: every op compared directly with the CPU backend, opcheck on CUDA, and the score API on
the GPU. Skipped cleanly where no GPU (or no CUDA build) is available, as in CI."""
from __future__ import annotations

import pytest
import torch
from conftest import make_class_labels, make_dense_labels, make_features, rel_err

import emms_ext

HAS_CUDA = torch.cuda.is_available() and emms_ext.build_info()["cuda"]
pytestmark = pytest.mark.skipif(
    not HAS_CUDA, reason="needs a CUDA GPU and a build with EMMS_WITH_CUDA=ON (scripts/gpu_check.sh runs these)")


def random_problems(seed, M, K, dtype=torch.float64):
    """A [K, K], B [M, K, K] from random features and labels (A - B positive semi-definite)."""
    g = torch.Generator().manual_seed(seed)
    N, D, L = 40, 9, 5
    Z = torch.randn(N, L, K, generator=g, dtype=torch.float64)
    A = torch.einsum("nlk,nlj->kj", Z, Z)
    Bs = []
    for _ in range(M):
        X = torch.randn(N, D, generator=g, dtype=torch.float64)
        P = X @ torch.linalg.pinv(X)
        Bs.append(torch.einsum("nlk,nm,mlj->kj", Z, P, Z))
    return A.to(dtype), torch.stack(Bs).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1000, 7), (3, 5, 33), (10, 1), (0, 4)])
def test_simplex_project_cuda_equals_cpu(dtype, shape):
    v = (3 * torch.randn(*shape, dtype=torch.float64)).to(dtype)
    v[..., :1][0:1] = float("nan") if v.numel() else 0  # one NaN row
    cpu = emms_ext.simplex_project(v)
    gpu = emms_ext.simplex_project(v.cuda()).cpu()
    assert gpu.dtype == dtype
    assert torch.allclose(gpu.double(), cpu.double(), atol=1e-12 if dtype == torch.float64 else 1e-6,
                          equal_nan=True)


@pytest.mark.parametrize("mode", ["exact", "alternating", "reference"])
@pytest.mark.parametrize("K,M", [(1, 5), (3, 1024), (8, 64), (32, 16), (40, 4)])  # K=40: global-scratch path
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_wlsr_simplex_cuda_equals_cpu(mode, K, M, dtype):
    A, B = random_problems(K * 1000 + M, M, K, dtype)
    t_c, f_c, it_c = emms_ext.wlsr_simplex(A, B, mode)
    t_g, f_g, it_g = emms_ext.wlsr_simplex(A.cuda(), B.cuda(), mode)
    assert torch.allclose(f_g.cpu().double(), f_c.double(), rtol=1e-9, atol=1e-9)
    assert torch.allclose(t_g.cpu().double(), t_c.double(), atol=1e-6)
    assert torch.equal(it_g.cpu(), it_c)


def test_wlsr_simplex_cuda_batched_A_and_nan_isolation():
    A, B = random_problems(7, 6, 3)
    A3 = A.expand(6, 3, 3).clone()
    B[2, 0, 0] = float("nan")
    t_c, f_c, _ = emms_ext.wlsr_simplex(A3, B, "exact")
    t_g, f_g, _ = emms_ext.wlsr_simplex(A3.cuda(), B.cuda(), "exact")
    assert torch.allclose(f_g.cpu(), f_c, equal_nan=True, rtol=1e-10)
    assert torch.isnan(f_g[2]) and bool(torch.isfinite(f_g[[0, 1, 3, 4, 5]]).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_class_sums_cuda_equals_cpu_and_is_deterministic(dtype):
    x = torch.randn(3, 5000, 300, dtype=dtype)
    classes = torch.randint(0, 100, (5000,))
    order, offsets = emms_ext.class_order(classes, 100)
    cpu = emms_ext.class_sums(x, order, offsets)
    a = emms_ext.class_sums(x.cuda(), order.cuda(), offsets.cuda())
    b = emms_ext.class_sums(x.cuda(), order.cuda(), offsets.cuda())
    assert torch.equal(a, b)
    assert torch.allclose(a.cpu(), cpu, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=1e-5)


def test_opcheck_on_cuda():
    v = torch.randn(6, 5, device="cuda")
    torch.library.opcheck(torch.ops.emms.simplex_project.default, (v,))
    A, B = random_problems(3, 4, 3)
    for mode in range(3):
        torch.library.opcheck(torch.ops.emms.wlsr_simplex.default, (A.cuda(), B.cuda(), mode, 50, 1e-12))
    x = torch.randn(2, 30, 4, device="cuda", dtype=torch.float64)
    order, offsets = emms_ext.class_order(torch.randint(0, 5, (30,), device="cuda"), 5)
    torch.library.opcheck(torch.ops.emms.class_sums.default, (x, order, offsets))


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


@pytest.mark.parametrize("mode", ["gcv", "loo"])
def test_out_of_sample_on_gpu_matches_the_reference_for_wide_features(mode):
    from emms_ext.ops import reference

    N, D, grid = 30, 50, [0.1, 1.0, 10.0, 100.0]
    X = make_features(310, N, D)
    Z = make_dense_labels(310, N, 4, 2, X)
    res = emms_ext.emms_score(X.cuda(), Z, mode, ridge=grid)
    ref = reference.out_of_sample_score(X, Z, mode, grid)
    assert rel_err(res.score, ref["score"]) < 1e-9 and res.ridge == ref["ridge"]


def test_tf32_ranking_agrees_with_float64():
    N, L, K = 4000, 32, 2
    labels = make_class_labels(310, N, 50, L, K)
    zoo = {f"m{i}": make_features(311 + i, N, 256).float().cuda() for i in range(8)}
    f64 = emms_ext.emms_scores(zoo, labels, precision="float64")
    tf32 = emms_ext.emms_scores(zoo, labels, precision="tf32")
    for name in zoo:
        assert rel_err(tf32[name].score, f64[name].score) < 1e-2
