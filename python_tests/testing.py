"""Shared test parameters of the op suites (pytorch_scatter style): the devices this build can run on, the
dtypes each op accepts, one ``devices x dtypes`` parametrization, and tolerances per dtype.

``DEVICES`` is ``["cpu"]``, plus ``"cuda"`` when a GPU is visible *and* the extension was built with its CUDA
kernels, so on a GPU machine every suite that parametrizes over it runs on CUDA as well. Tests that only make
sense on a GPU use ``needs_cuda`` (skipped, with the reason spelled out, everywhere else).
"""

from __future__ import annotations

import itertools

import pytest
import torch

import emms_ext

HAS_CUDA = bool(torch.cuda.is_available() and emms_ext.build_info()["cuda"])
CUDA_SKIP_REASON = "needs a CUDA GPU and a build with EMMS_WITH_CUDA=ON (scripts/gpu_check.sh runs these)"
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason=CUDA_SKIP_REASON)

DEVICES: list[str] = ["cpu"] + (["cuda"] if HAS_CUDA else [])

FLOAT_DTYPES = [torch.float32, torch.float64]
LOW_DTYPES = [torch.float16, torch.bfloat16]
GRAD_DTYPES = [torch.float64]  # gradcheck runs in float64 only

# What each op's glue accepts (csrc/include/emms/checks.h and the AT_DISPATCH of csrc/cpu/*.cpp; the CUDA
# glue computes half / bfloat16 in float32 or float64 and rounds once): logme_evidence is float32 / float64.
DTYPES: dict[str, list[torch.dtype]] = {
    "simplex_project": FLOAT_DTYPES + LOW_DTYPES,
    "wlsr_simplex": FLOAT_DTYPES + LOW_DTYPES,
    "class_sums": FLOAT_DTYPES + LOW_DTYPES,
    "logme_evidence": FLOAT_DTYPES,
    "cholesky_": FLOAT_DTYPES,
    "cholesky_solve": FLOAT_DTYPES,
    "tridiagonal_solve": FLOAT_DTYPES,
}
# Thread-count-independent LAPACK / BLAS tiles on the CPU; CUDA Grams use torch's cuSOLVER Cholesky and solves
# (and torch's eigendecomposition for gcv's grid, whose tridiagonal route is CPU-only).
CPU_ONLY = {"cholesky_", "cholesky_solve", "tridiagonal_solve"}
OPS = tuple(DTYPES)

_SHORT = {torch.float16: "f16", torch.bfloat16: "bf16", torch.float32: "f32", torch.float64: "f64"}


def dtype_id(dtype: torch.dtype) -> str:
    return _SHORT.get(dtype, str(dtype).replace("torch.", ""))


def devices_dtypes(dtypes, on=None):
    """``@devices_dtypes(DTYPES["op"])``: parametrize a test's ``device`` and ``dtype`` over the product of
    ``on`` (default DEVICES) and ``dtypes``."""
    params = list(itertools.product(DEVICES if on is None else on, dtypes))
    return pytest.mark.parametrize("device, dtype", params, ids=[f"{d}-{dtype_id(t)}" for d, t in params])


def devices(fn=None):
    """``@devices``: parametrize a test's ``device`` over DEVICES."""
    mark = pytest.mark.parametrize("device", DEVICES)
    return mark if fn is None else mark(fn)


# Tolerances of a result against the float64 reference evaluated on the *same* (rounded) inputs: the ops
# compute in float32 or float64 whatever the input dtype and round once to the output dtype, so the error is
# a few units of the output's rounding. ``scale`` widens them for results that go through more arithmetic.
EPS = {t: torch.finfo(t).eps for t in FLOAT_DTYPES + LOW_DTYPES}
_TOL = {
    torch.float64: (1e-11, 1e-12),
    torch.float32: (4 * EPS[torch.float32], 1e-6),
    torch.float16: (2 * EPS[torch.float16], 1e-4),
    torch.bfloat16: (2 * EPS[torch.bfloat16], 1e-3),
}


def tol(dtype: torch.dtype, scale: float = 1.0) -> dict:
    """``dict(rtol=..., atol=...)`` for ``torch.allclose`` / ``assert_close`` of a ``dtype`` result."""
    rtol, atol = _TOL[dtype]
    return {"rtol": rtol * scale, "atol": atol * scale}


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, scale: float = 1.0, msg: str = ""
) -> None:
    """``actual`` (any device, any dtype) against ``expected`` in float64 on the CPU, NaN equal to NaN."""
    torch.testing.assert_close(
        actual.detach().cpu().to(torch.float64),
        expected.detach().cpu().to(torch.float64),
        equal_nan=True,
        check_dtype=False,
        msg=(lambda m: f"{msg}: {m}") if msg else None,
        **tol(dtype, scale),
    )


def with_threads(n: int, fn):
    """fn() run with n torch (and BLAS) threads, the previous count restored after."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(n)
        return fn()
    finally:
        torch.set_num_threads(before)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# opcheck: test_aot_dispatch_dynamic (tracing through AOTAutograd, ~0.2 s a call and ~1 s with gradients)
# dominates the cost; the other three checks are cheap and run on every sample.
CHEAP_OPCHECKS = ("test_schema", "test_autograd_registration", "test_faketensor")
AOT = "test_aot_dispatch_dynamic"


def _all_finite(args) -> bool:
    return all(bool(torch.isfinite(a).all()) for a in args if torch.is_tensor(a) and a.is_floating_point())


def _spread(indices: list[int], n: int) -> set[int]:
    """n of ``indices``, evenly spread from the first to the last."""
    if n >= len(indices):
        return set(indices)
    if n <= 1:
        return set(indices[:n])
    return {indices[round(j * (len(indices) - 1) / (n - 1))] for j in range(n)}


def opcheck_samples(
    op, samples, dtype, differentiable=None, aot_samples: int | None = None, aot_grad_samples: int = 2
) -> int:
    """``torch.library.opcheck`` of ``op`` on every argument tuple of ``samples``.

    Every sample gets the schema, autograd-registration and fake-tensor checks; so does a copy whose first
    argument requires grad where ``differentiable(args)``. The AOTAutograd tracing check compares outputs
    with NaN != NaN, so it runs on finite samples only: ``aot_samples`` of them spread over the list (default
    8 in float64, 2 in the other dtypes), and ``aot_grad_samples`` of the differentiable ones with gradients.
    Returns the number of opcheck calls.
    """
    aot_samples = (8 if dtype == torch.float64 else 2) if aot_samples is None else aot_samples
    finite = [i for i, args in enumerate(samples) if _all_finite(args)]
    grad = [i for i in finite if differentiable is not None and differentiable(samples[i])]
    aot, aot_grad = _spread(finite, aot_samples), _spread(grad, aot_grad_samples)
    assert aot, "no sample went through the AOTAutograd check"
    calls = 0
    for i, args in enumerate(samples):
        torch.library.opcheck(op, args, test_utils=CHEAP_OPCHECKS + (AOT,) * (i in aot))
        calls += 1
        if differentiable is not None and differentiable(args):
            grad_args = (args[0].detach().clone().requires_grad_(True), *args[1:])
            torch.library.opcheck(op, grad_args, test_utils=CHEAP_OPCHECKS + (AOT,) * (i in aot_grad))
            calls += 1
    return calls
