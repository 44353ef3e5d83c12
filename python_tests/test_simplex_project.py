"""Tests of emms::simplex_project: agreement with the float64 sort-based reference, hand-computed
projections, invariants, strides, non-finite rows, dtypes, argument errors, autograd, opcheck, compile.
The tests over ``sample_inputs`` run on every device x dtype of ``testing.py`` (CUDA too, where built)."""

from __future__ import annotations

import pytest
import torch
from testing import DTYPES, GRAD_DTYPES, assert_close, devices_dtypes, opcheck_samples

import emms_ext
from emms_ext.ops import reference

F64 = torch.float64


def err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max abs difference, computed in float64 (0 for empty tensors)."""
    if a.numel() == 0:
        return 0.0
    return (a.to(F64) - b.to(F64)).abs().max().item()


def rand(shape, seed: int, scale: float = 2.0, dtype=F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g, dtype=F64)).to(dtype)


SHAPES = [(1,), (2,), (7,), (100,), (5, 1), (9, 2), (13, 7), (4, 100), (2, 3, 7), (3, 4, 2), (2, 2, 100)]


# ------------------------------------------------------------------------------- vs the reference
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference_float64(shape):
    v = rand(shape, seed=hash(shape) % 2**31)
    out = emms_ext.simplex_project(v)
    ref = reference.simplex_project(v)
    assert out.shape == v.shape and out.dtype == F64
    assert err(out, ref) <= 1e-12


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_float32_tolerance_rule(shape):
    v64 = rand(shape, seed=7 + hash(shape) % 2**31)
    v32 = v64.float()
    out = emms_ext.simplex_project(v32)
    assert out.dtype == torch.float32 and out.shape == v32.shape
    ref64 = reference.simplex_project(v64)
    ref32 = reference.simplex_project(v32).float()
    assert err(out, ref64) <= 2 * err(ref32, ref64) + 1e-6


# ---------------------------------------------------------------------------------- hand-computed
@pytest.mark.parametrize(
    "v, expected",
    [
        ([2.0, 0.0], [1.0, 0.0]),
        ([0.5, 0.5], [0.5, 0.5]),
        ([0.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]),
        ([1.0, 1.0, -5.0], [0.5, 0.5, 0.0]),
        ([0.3, 0.1], [0.6, 0.4]),
        ([5.0], [1.0]),
        ([-3.0], [1.0]),
        ([0.0, 10.0, 0.0, -1.0], [0.0, 1.0, 0.0, 0.0]),
    ],
)
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_hand_computed(v, expected, dtype):
    out = emms_ext.simplex_project(torch.tensor(v, dtype=dtype))
    tol = 1e-15 if dtype == F64 else 1e-7
    assert err(out, torch.tensor(expected, dtype=F64)) <= tol
    # the same values as one row of a batch
    batch = torch.tensor([v, v], dtype=dtype)
    assert err(emms_ext.simplex_project(batch), torch.tensor([expected, expected], dtype=F64)) <= tol


# ------------------------------------------------------------------------------------- properties
@pytest.mark.parametrize("K", [1, 2, 3, 7, 31, 100])
def test_on_simplex_and_idempotent(K):
    v = rand((64, K), seed=100 + K, scale=3.0)
    out = emms_ext.simplex_project(v)
    assert (out >= 0).all()
    assert err(out.sum(-1), torch.ones(64, dtype=F64)) <= 1e-12
    assert err(emms_ext.simplex_project(out), out) <= 1e-14
    # projection optimality (KKT): out = max(v - theta, 0) with one theta per row
    support = out > 0
    theta = torch.where(support, v - out, torch.full_like(v, float("nan")))
    th_max = torch.where(support, theta, torch.full_like(v, -float("inf"))).max(-1).values
    th_min = torch.where(support, theta, torch.full_like(v, float("inf"))).min(-1).values
    assert (th_max - th_min).abs().max() <= 1e-12 * (1 + v.abs().max())
    assert (v[~support] <= th_max.unsqueeze(-1).expand_as(v)[~support] + 1e-12).all()


@pytest.mark.parametrize("K", [1, 2, 5, 50])
def test_point_on_simplex_unchanged(K):
    g = torch.Generator().manual_seed(200 + K)
    w = torch.rand(20, K, generator=g, dtype=F64)
    w[:, : K // 2] *= torch.rand(20, K // 2, generator=g, dtype=F64) > 0.5  # some exact zeros
    w[w.sum(-1) == 0, 0] = 1.0
    w = w / w.sum(-1, keepdim=True)
    assert err(emms_ext.simplex_project(w), w) <= 1e-15
    # vertices are exact
    eye = torch.eye(K, dtype=F64)
    assert torch.equal(emms_ext.simplex_project(eye), eye)


def test_translation_invariance():
    # proj(v + c 1) == proj(v): the threshold absorbs the shift
    v = rand((30, 6), seed=3)
    shifted = v + torch.linspace(-50, 50, 30, dtype=F64)[:, None]
    assert err(emms_ext.simplex_project(shifted), emms_ext.simplex_project(v)) <= 1e-12


# ---------------------------------------------------------------------------------------- strides
STRIDED = {  # name -> builder(dtype) of a non-contiguous view
    "transposed": lambda dt: rand((7, 5), seed=11, dtype=dt).t(),
    "step2": lambda dt: rand((6, 14), seed=12, dtype=dt)[:, ::2],
    "step2_batch": lambda dt: rand((10, 3, 4), seed=13, dtype=dt)[::2],
    "expand_rows": lambda dt: rand((1, 7), seed=14, dtype=dt).expand(4, 7),
    "expand_last": lambda dt: rand((4, 1), seed=15, dtype=dt).expand(4, 7),
    "expand_3d": lambda dt: rand((1, 1, 5), seed=16, dtype=dt).expand(2, 3, 5),
}


@pytest.mark.parametrize("name", list(STRIDED))
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_non_contiguous(name, dtype):
    v = STRIDED[name](dtype)
    assert not v.is_contiguous() and v.dtype == dtype
    before = v.clone()
    out = emms_ext.simplex_project(v)
    assert torch.equal(v, before), "input was mutated"
    assert out.shape == v.shape
    assert torch.equal(out, emms_ext.simplex_project(v.contiguous()))
    assert err(out, reference.simplex_project(v)) <= (1e-12 if dtype == F64 else 1e-6)
    if name == "expand_last":  # equal entries project to the barycentre
        assert err(out, torch.full(v.shape, 1 / 7, dtype=F64)) <= 1e-7


def test_input_not_mutated():
    v = rand((50, 9), seed=21)
    before = v.clone()
    emms_ext.simplex_project(v)
    assert torch.equal(v, before)


# ----------------------------------------------------------------------------------- non-finite
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_non_finite_rows(dtype):
    v = rand((6, 4), seed=31).to(dtype)
    v[1, 2] = float("nan")
    v[3, 0] = float("inf")
    v[4, 3] = -float("inf")
    out = emms_ext.simplex_project(v)
    bad = torch.tensor([False, True, False, True, True, False])
    assert torch.isnan(out[bad]).all()
    assert torch.isfinite(out[~bad]).all()
    good = v[~bad]
    assert err(out[~bad], reference.simplex_project(good)) <= (1e-12 if dtype == F64 else 1e-6)
    assert torch.equal(out[~bad], emms_ext.simplex_project(good))


# ------------------------------------------------------------------------------ shapes and dtypes
def test_empty_batch():
    for shape in [(0, 5), (3, 0, 4), (0,)]:
        v = torch.empty(shape, dtype=torch.float32)
        out = emms_ext.simplex_project(v)
        assert out.shape == v.shape and out.dtype == v.dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(dtype):
    v64 = rand((40, 7), seed=41, scale=1.0)
    v = v64.to(dtype)
    out = emms_ext.simplex_project(v)
    assert out.dtype == dtype and out.shape == v.shape
    eps = torch.finfo(dtype).eps
    # exact projection of the rounded input, rounded once to the output dtype (values <= 1)
    assert err(out, reference.simplex_project(v)) <= eps
    # and close to the float64 projection of the unrounded input (input rounding moves theta too)
    assert err(out, reference.simplex_project(v64)) <= 4 * eps * (1 + v64.abs().max().item())
    assert (out >= 0).all()
    assert err(out.double().sum(-1), torch.ones(40, dtype=F64)) <= 4 * eps


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_input_is_type_error(dtype):
    with pytest.raises(TypeError, match=r"\bv\b"):
        emms_ext.simplex_project(torch.ones(3, 4, dtype=dtype))


def test_zero_dim_is_value_error():
    with pytest.raises(ValueError, match=r"\bv must be\b"):
        emms_ext.simplex_project(torch.tensor(1.0))
    with pytest.raises(ValueError):
        torch.ops.emms.simplex_project(torch.tensor(0.5, dtype=F64))


# ---------------------------------------------------------------------------------------- autograd
def _kink_free(rows: int, K: int, seed: int) -> torch.Tensor:
    """Inputs whose projection has a support of size 2..K-1 and whose entries sit >= 0.05 away from the
    threshold (so finite differences never cross a kink)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(rows, K, dtype=F64)
    for r in range(rows):
        s = 2 + r % (K - 2)  # support size in [2, K-1]
        perm = torch.randperm(K, generator=g)
        p = 0.1 + torch.rand(s, generator=g, dtype=F64)
        p = p / p.sum()
        theta = 3 * torch.randn((), generator=g, dtype=F64)
        out[r, perm[:s]] = p + theta
        out[r, perm[s:]] = theta - 0.2 - torch.rand(K - s, generator=g, dtype=F64)
    return out


def test_kink_free_construction():
    v = _kink_free(12, 6, seed=51)
    sizes = (emms_ext.simplex_project(v) > 0).sum(-1)
    assert (sizes >= 2).all() and (sizes <= 5).all() and len(set(sizes.tolist())) > 1


@pytest.mark.parametrize("shape", [(12, 6), (2, 3, 5)])
def test_gradcheck(shape):
    K = shape[-1]
    rows = int(torch.tensor(shape[:-1]).prod())
    v = _kink_free(rows, K, seed=60 + K).reshape(shape).requires_grad_(True)
    assert torch.autograd.gradcheck(emms_ext.simplex_project, (v,), eps=1e-6, atol=1e-8, rtol=1e-6)
    assert torch.autograd.gradgradcheck(emms_ext.simplex_project, (v,), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_backward_is_jacobian_transpose_product():
    K = 7
    v = _kink_free(10, K, seed=71).requires_grad_(True)
    g = rand((10, K), seed=72)
    out = emms_ext.simplex_project(v)
    (grad,) = torch.autograd.grad(out, v, g)
    for r in range(10):
        S = out[r].detach() > 0
        J = torch.zeros(K, K, dtype=F64)
        idx = S.nonzero().flatten()
        n = len(idx)
        J[idx[:, None], idx[None, :]] = torch.eye(n, dtype=F64) - 1.0 / n
        assert err(grad[r], J.T @ g[r]) <= 1e-14
        assert err(grad[r][~S], torch.zeros(int((~S).sum()), dtype=F64)) == 0.0
        assert abs(grad[r].sum().item()) <= 1e-12  # J^T g is orthogonal to 1
    # the analytic Jacobian from autograd equals J row by row
    J_auto = torch.autograd.functional.jacobian(emms_ext.simplex_project, v[0].detach())
    S = emms_ext.simplex_project(v[0].detach()) > 0
    n = int(S.sum())
    expected = torch.zeros(K, K, dtype=F64)
    expected[S.nonzero()[:, 0][:, None], S.nonzero()[:, 0][None, :]] = torch.eye(n, dtype=F64) - 1.0 / n
    assert err(J_auto, expected) <= 1e-14


# ------------------------------------------------------------------------------- opcheck / compile
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(dtype, requires_grad):
    x = _kink_free(5, 6, seed=81).reshape(5, 6).to(dtype).requires_grad_(requires_grad)
    torch.library.opcheck(torch.ops.emms.simplex_project.default, (x,))
    y = rand((2, 3, 4), seed=82, dtype=dtype).requires_grad_(requires_grad)
    torch.library.opcheck(torch.ops.emms.simplex_project.default, (y,))


def test_torch_compile_aot_eager():
    def fn(x):
        return emms_ext.simplex_project(2.0 * x + 1.0).sum(-1, keepdim=True) * emms_ext.simplex_project(x)

    x = rand((8, 5), seed=91)
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(x), fn(x))
    xg = _kink_free(8, 5, seed=92).requires_grad_(True)
    (g_compiled,) = torch.autograd.grad(compiled(xg).pow(2).sum(), xg)
    (g_eager,) = torch.autograd.grad(fn(xg).pow(2).sum(), xg)
    assert err(g_compiled, g_eager) <= 1e-14


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_huge_entries_do_not_lose_the_unit_mass(dtype):
    """The projection is shift-invariant; rows near 1e16 (float64) or 3e38 (float32) still sum to 1."""
    big = 3e38 if dtype == torch.float32 else 1e300
    v = torch.tensor([[big, big], [1e16, 1e16], [1e15, 1e15 - 0.5], [-big, -big]], dtype=dtype)
    out = emms_ext.simplex_project(v)
    assert torch.allclose(out.sum(-1), torch.ones(4, dtype=dtype))
    assert torch.allclose(out[0], torch.tensor([0.5, 0.5], dtype=dtype))
    assert torch.allclose(out[3], torch.tensor([0.5, 0.5], dtype=dtype))
    assert torch.allclose(out.double(), reference.simplex_project(v), atol=1e-6)


# ------------------------------------------------------------------- sample_inputs: every device x dtype
def sample_inputs(device, dtype) -> list[tuple[torch.Tensor]]:
    """Argument tuples of emms::simplex_project on ``device`` in ``dtype``: K = 1 (single rows and batches),
    small and wide K, 2-d and 3-d batches, empty batches, ties (equal entries, all-equal rows, a repeated
    maximum), a shifted batch, non-finite rows (NaN, +Inf, -Inf) next to finite ones, strided views."""

    def on(x: torch.Tensor) -> torch.Tensor:
        return x.to(device=device, dtype=dtype)

    shapes = [(1,), (7,), (5, 1), (10, 1), (13, 7), (4, 100), (2, 3, 7), (3, 5, 33), (1000, 7), (0, 4), (3, 0, 4)]
    samples = [(on(rand(shape, seed=300 + i, scale=3.0)),) for i, shape in enumerate(shapes)]
    ties = torch.tensor(
        [
            [1.0, 1.0, -5.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [2.0, 2.0, 2.0, 2.0],
            [0.5, 0.25, 0.5, 0.25],
            [3.0, -1.0, 3.0, 3.0],
            [-2.0, -2.0, -7.0, -2.0],
        ],
        dtype=F64,
    )
    samples.append((on(ties),))
    samples.append((on(rand((8, 6), seed=320) + torch.linspace(-40, 40, 8, dtype=F64)[:, None]),))
    bad = rand((7, 5), seed=321)
    bad[0, 0], bad[2, 3], bad[4, 1], bad[5] = float("nan"), float("inf"), -float("inf"), float("nan")
    samples.append((on(bad),))
    samples.append((on(rand((6, 14), seed=322))[:, ::2],))  # every other column: stride 2
    samples.append((on(rand((9, 4), seed=323)).t(),))  # transposed: rows are strided columns
    samples.append((on(rand((1, 6), seed=324)).expand(5, 6),))  # stride-0 batch
    return samples


def _finite_rows(v: torch.Tensor) -> torch.Tensor:
    return (
        torch.isfinite(v.double()).all(-1)
        if v.shape[-1]
        else torch.ones(v.shape[:-1], dtype=torch.bool, device=v.device)
    )


@devices_dtypes(DTYPES["simplex_project"])
def test_sample_inputs_match_reference(device, dtype):
    for i, (v,) in enumerate(sample_inputs(device, dtype)):
        before = v.clone()
        out = emms_ext.simplex_project(v)
        assert out.shape == v.shape and out.dtype == dtype and out.device == v.device, i
        assert torch.equal(v.nan_to_num(7.0), before.nan_to_num(7.0)), f"sample {i}: input was mutated"
        ref = reference.simplex_project(v)  # float64 projection of the same (rounded) values
        assert_close(out, ref, dtype, msg=f"sample {i} {tuple(v.shape)}")
        finite = _finite_rows(v)
        assert bool(torch.isnan(out[~finite]).all()), f"sample {i}: a non-finite row did not come back NaN"
        good = out[finite].double()
        if good.numel():
            assert bool((good >= 0).all()), i
            assert_close(good.sum(-1), torch.ones(good.shape[:-1], dtype=F64), dtype, scale=4, msg=f"sample {i} sum")
        if device != "cpu":  # the CUDA kernel agrees with the CPU kernel, not only with the reference
            cpu = emms_ext.simplex_project(v.cpu())
            atol = 1e-12 if dtype == F64 else 1e-6  # half / bfloat16: both compute in float32, round once
            assert torch.allclose(out.cpu().double(), cpu.double(), atol=atol, rtol=0, equal_nan=True), i


def _differentiable(v: torch.Tensor, margin: float = 1e-3) -> bool:
    """Finite, with every entry >= margin away from its row's threshold (finite differences cross no kink)."""
    if v.numel() == 0 or not bool(torch.isfinite(v).all()):
        return v.numel() == 0
    out = reference.simplex_project(v)
    x = v.detach().cpu().double()
    on = out > 0
    theta = torch.where(on, x - out, torch.zeros_like(x)).sum(-1, keepdim=True) / on.sum(-1, keepdim=True)
    return bool(((x - theta).abs() >= margin).all())


@devices_dtypes(GRAD_DTYPES)
def test_sample_inputs_gradcheck(device, dtype):
    checked = 0
    for i, (v,) in enumerate(sample_inputs(device, dtype)):
        if not _differentiable(v) or v.numel() > 2000:
            continue  # kinks (ties at the threshold), non-finite rows; gradcheck's Jacobian is numel^2
        x = v.detach().clone().requires_grad_(True)
        assert torch.autograd.gradcheck(emms_ext.simplex_project, (x,), eps=1e-6, atol=1e-8, rtol=1e-6), i
        checked += 1
    assert checked >= 8  # most samples are differentiable: the filter must not hollow the test out


@devices_dtypes(DTYPES["simplex_project"])
def test_sample_inputs_opcheck(device, dtype):
    samples = sample_inputs(device, dtype)
    calls = opcheck_samples(
        torch.ops.emms.simplex_project.default, samples, dtype, differentiable=lambda args: _differentiable(args[0])
    )
    assert calls > len(samples)  # the autograd registration was exercised too
