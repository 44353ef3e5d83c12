"""emms::class_sums against its float64 reference, a one-hot GEMM, hand cases; autograd, opcheck. The tests
over ``sample_inputs`` run on every device x dtype of ``testing.py`` (CUDA too, where built)."""

from __future__ import annotations

import pytest
import torch
from testing import DTYPES, GRAD_DTYPES, assert_close, devices_dtypes, opcheck_samples

import emms_ext
from emms_ext.ops import reference


def problem(seed, N, D, C, B=None, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*(() if B is None else (B,)), N, D, generator=g, dtype=torch.float64).to(dtype)
    classes = torch.randint(0, C, (N,), generator=g)
    return x, classes


@pytest.mark.parametrize(
    "seed,N,D,C,B",
    [(0, 50, 7, 5, None), (1, 200, 33, 20, None), (2, 64, 5, 3, 4), (3, 10, 1, 12, None), (4, 300, 130, 1, 2)],
)
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_cpu_row_scan_and_gather_give_the_same_bits(dtype):
    """The CPU kernel scans rows in memory order when the batch has a model per thread and order is
    class_order's, and gathers class segments otherwise (one thread per model is too few, or an order of
    its own): both add a class's rows in the same order, so the thread count never changes a bit."""
    C, B = 13, 4
    x, classes = problem(8, 700, 300, C, B, dtype=dtype)
    x = x + 5.0
    order, offsets = emms_ext.class_order(classes, C)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        scan = emms_ext.class_sums(x, order, offsets)  # B = 4 >= 1 thread: row scan
        torch.set_num_threads(8)
        gather = emms_ext.class_sums(x, order, offsets)  # B = 4 < 8 threads: gather
    finally:
        torch.set_num_threads(before)
    assert torch.equal(scan, gather)
    assert torch.allclose(scan.double(), reference.class_sums(x, order, offsets), rtol=2 * torch.finfo(dtype).eps)
    # An order of its own (rows descending inside each class, repeated rows) takes the gather at any thread
    # count and still sums exactly those rows.
    own = torch.cat([order[offsets[c] : offsets[c + 1]].flip(0) for c in range(C)])
    own[:5] = own[0]
    torch.set_num_threads(1)
    try:
        out = emms_ext.class_sums(x, own, offsets)
    finally:
        torch.set_num_threads(before)
    assert torch.allclose(out.double(), reference.class_sums(x, own, offsets), rtol=2 * torch.finfo(dtype).eps)


def test_cpu_row_scan_column_blocks():
    """Many classes: the scan's float64 accumulators are split into column blocks (2 MB per thread)."""
    C, D = 3000, 200  # 3000 x 200 doubles > 262,144: blocks of 87 columns
    x, classes = problem(9, 4000, D, C, 2, dtype=torch.float32)
    order, offsets = emms_ext.class_order(classes, C)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = emms_ext.class_sums(x, order, offsets)
    finally:
        torch.set_num_threads(before)
    assert torch.allclose(out.double(), reference.class_sums(x, order, offsets), rtol=3e-7, atol=1e-6)


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


@pytest.mark.parametrize(
    "args,exc,match",
    [
        (
            (torch.ones(3, 2, dtype=torch.int64), torch.arange(3), torch.tensor([0, 3])),
            TypeError,
            "x must be a floating",
        ),
        ((torch.ones(3), torch.arange(3), torch.tensor([0, 3])), ValueError, r"x must be \[N, D\]"),
        ((torch.ones(3, 2), torch.arange(4), torch.tensor([0, 4])), ValueError, r"order must be \[N\]"),
        ((torch.ones(3, 2), torch.arange(3).int(), torch.tensor([0, 3])), TypeError, "int64"),
        ((torch.ones(3, 2), torch.arange(3), torch.tensor([0, 2])), ValueError, "end at N = 3"),
        ((torch.ones(3, 2), torch.arange(3), torch.tensor([0, 2, 1, 3])), ValueError, "must not decrease"),
        ((torch.ones(3, 2), torch.tensor([0, 1, 7]), torch.tensor([0, 3])), ValueError, r"order values must lie"),
    ],
)
def test_bad_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        emms_ext.class_sums(*args)


# ------------------------------------------------------------------- sample_inputs: every device x dtype
def _index(classes: torch.Tensor, C: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    return emms_ext.class_order(classes.to(device), C)  # class_order runs on the device too


def sample_inputs(device, dtype) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Argument tuples ``(x, order, offsets)`` of emms::class_sums on ``device``, x in ``dtype``: [N, D] and
    batched [B, N, D] features, one class (C = 1), more classes than samples (empty classes, D = 1), empty
    classes first / in the middle / last, singleton classes, no samples at all (N = 0), a wide batch
    (3 x 5000 x 300, 100 classes), a non-contiguous x and a shared order over an expanded batch."""
    samples = []
    for seed, N, D, C, B in [
        (0, 50, 7, 5, None),
        (1, 200, 33, 20, None),
        (2, 64, 5, 3, 4),
        (3, 10, 1, 12, None),
        (4, 300, 130, 1, 2),
        (5, 5000, 300, 100, 3),
    ]:
        x, classes = problem(100 + seed, N, D, C, B)
        samples.append((x.to(device=device, dtype=dtype), *_index(classes, C, device)))
    x, _ = problem(110, 9, 4, 1)
    classes = torch.tensor([1, 1, 3, 1, 3, 3, 6, 1, 3])  # classes 0, 2, 4, 5 and 7 are empty
    samples.append((x.to(device=device, dtype=dtype), *_index(classes, 8, device)))
    x, _ = problem(111, 6, 3, 1)
    samples.append((x.to(device=device, dtype=dtype), *_index(torch.arange(6).flip(0), 6, device)))  # singletons
    empty = torch.empty(0, 4, dtype=dtype, device=device)
    samples.append((empty, *_index(torch.empty(0, dtype=torch.int64), 3, device)))  # N = 0: zero sums
    x, classes = problem(112, 40, 6, 4)
    samples.append((x.to(device=device, dtype=dtype).T.contiguous().T, *_index(classes, 4, device)))  # column-major
    x, classes = problem(113, 30, 5, 3)
    samples.append((x.to(device=device, dtype=dtype).expand(2, 30, 5), *_index(classes, 3, device)))  # stride-0 batch
    return samples


@devices_dtypes(DTYPES["class_sums"])
def test_sample_inputs_match_reference(device, dtype):
    for i, (x, order, offsets) in enumerate(sample_inputs(device, dtype)):
        name = f"sample {i}: x {tuple(x.shape)}, C = {offsets.shape[0] - 1}"
        before = (x.clone(), order.clone(), offsets.clone())
        out = emms_ext.class_sums(x, order, offsets)
        C = offsets.shape[0] - 1
        assert out.shape == (*x.shape[:-2], C, x.shape[-1]) and out.dtype == dtype and out.device == x.device, name
        assert all(torch.equal(a, b) for a, b in zip((x, order, offsets), before)), name + ": input mutated"
        # float64 accumulation in a fixed order, one rounding to the output dtype
        assert_close(out, reference.class_sums(x, order, offsets), dtype, msg=name)
        empty = offsets[1:] == offsets[:-1]
        assert bool((out[..., empty, :] == 0).all()), name + ": an empty class does not sum to zero"
        assert torch.equal(emms_ext.class_sums(x, order, offsets), out), name + ": not deterministic"
        if device != "cpu":  # the CUDA kernel agrees with the CPU kernel
            cpu = emms_ext.class_sums(x.cpu(), order.cpu(), offsets.cpu())
            rtol = 1e-12 if dtype == torch.float64 else 1e-6 if dtype == torch.float32 else torch.finfo(dtype).eps
            assert torch.allclose(out.cpu().double(), cpu.double(), rtol=rtol, atol=1e-5), name


@devices_dtypes(GRAD_DTYPES)
def test_sample_inputs_gradcheck(device, dtype):
    checked = 0
    for i, (x, order, offsets) in enumerate(sample_inputs(device, dtype)):
        if x.numel() > 1000:
            continue  # gradcheck builds the numel x numel Jacobian column by column
        xg = x.detach().clone().requires_grad_(True)
        assert torch.autograd.gradcheck(emms_ext.class_sums, (xg, order, offsets)), i
        checked += 1
    assert checked >= 5


@devices_dtypes(DTYPES["class_sums"])
def test_sample_inputs_opcheck(device, dtype):
    samples = sample_inputs(device, dtype)
    calls = opcheck_samples(torch.ops.emms.class_sums.default, samples, dtype, differentiable=lambda args: True)
    assert calls == 2 * len(samples)
