"""emms::class_sums against its float64 reference, a one-hot GEMM, hand cases; autograd, opcheck."""
from __future__ import annotations

import pytest
import torch

import emms_ext
from emms_ext.ops import reference


def problem(seed, N, D, C, B=None, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*(() if B is None else (B,)), N, D, generator=g, dtype=torch.float64).to(dtype)
    classes = torch.randint(0, C, (N,), generator=g)
    return x, classes


@pytest.mark.parametrize("seed,N,D,C,B", [(0, 50, 7, 5, None), (1, 200, 33, 20, None), (2, 64, 5, 3, 4),
                                         (3, 10, 1, 12, None), (4, 300, 130, 1, 2)])
def test_matches_reference_and_one_hot_gemm(seed, N, D, C, B):
    x, classes = problem(seed, N, D, C, B)
    order, offsets = emms_ext.class_order(classes, C)
    out = emms_ext.class_sums(x, order, offsets)
    assert out.shape == (*x.shape[:-2], C, D)
    assert torch.allclose(out, reference.class_sums(x, order, offsets), atol=1e-12)
    onehot = torch.nn.functional.one_hot(classes, C).to(x.dtype)
    assert torch.allclose(out, onehot.T @ x, atol=1e-12)  # classes without samples sum to zero


def test_hand_computed():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    order, offsets = emms_ext.class_order(torch.tensor([1, 0, 1]), 3)
    assert order.tolist() == [1, 0, 2] and offsets.tolist() == [0, 1, 3, 3]
    assert emms_ext.class_sums(x, order, offsets).tolist() == [[3.0, 4.0], [6.0, 8.0], [0.0, 0.0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_accumulates_in_float64(dtype):
    x, classes = problem(5, 600, 6, 3, dtype=dtype)
    x = x + 10  # sums of ~2000: float64 accumulation keeps them to the output's rounding (< float16 max)
    order, offsets = emms_ext.class_order(classes, 3)
    out = emms_ext.class_sums(x, order, offsets)
    ref = reference.class_sums(x, order, offsets)
    assert out.dtype == dtype
    assert torch.allclose(out.double(), ref, rtol=2 * torch.finfo(dtype).eps, atol=0)


def test_deterministic_and_inputs_untouched():
    x, classes = problem(6, 500, 40, 9)
    xt = x.T.contiguous().T  # non-contiguous
    order, offsets = emms_ext.class_order(classes, 9)
    before = (xt.clone(), order.clone(), offsets.clone())
    a = emms_ext.class_sums(xt, order, offsets)
    b = emms_ext.class_sums(xt, order, offsets)
    assert torch.equal(a, b) and torch.equal(xt, before[0]) and torch.equal(order, before[1])
    assert torch.allclose(a, emms_ext.class_sums(x.contiguous(), order, offsets), atol=1e-12)


def test_gradcheck():
    x, classes = problem(7, 12, 3, 4, B=2)
    order, offsets = emms_ext.class_order(classes, 4)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: emms_ext.class_sums(t, order, offsets), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batched", [False, True])
def test_opcheck(dtype, batched):
    x, classes = problem(8, 30, 4, 5, B=3 if batched else None, dtype=dtype)
    order, offsets = emms_ext.class_order(classes, 5)
    torch.library.opcheck(torch.ops.emms.class_sums.default, (x, order, offsets))
    torch.library.opcheck(torch.ops.emms.class_sums.default, (x.requires_grad_(True), order, offsets))


@pytest.mark.parametrize("args,exc,match", [
    ((torch.ones(3, 2, dtype=torch.int64), torch.arange(3), torch.tensor([0, 3])), TypeError, "x must be a floating"),
    ((torch.ones(3), torch.arange(3), torch.tensor([0, 3])), ValueError, r"x must be \[N, D\]"),
    ((torch.ones(3, 2), torch.arange(4), torch.tensor([0, 4])), ValueError, r"order must be \[N\]"),
    ((torch.ones(3, 2), torch.arange(3).int(), torch.tensor([0, 3])), TypeError, "int64"),
    ((torch.ones(3, 2), torch.arange(3), torch.tensor([0, 2])), ValueError, "end at N = 3"),
    ((torch.ones(3, 2), torch.arange(3), torch.tensor([0, 2, 1, 3])), ValueError, "must not decrease"),
    ((torch.ones(3, 2), torch.tensor([0, 1, 7]), torch.tensor([0, 3])), ValueError, r"order values must lie"),
])
def test_bad_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        emms_ext.class_sums(*args)
