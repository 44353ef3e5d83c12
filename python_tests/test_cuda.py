"""CUDA-only cases of the four ops and of the score pipeline, beyond what the op suites run on every device
(``testing.DEVICES``): the kernels' launch regimes (wlsr_simplex's shared / opted-in shared / global scratch
at the K where they switch; class_sums' tiled and direct paths and its multi-launch grid), non-contiguous
inputs, half / bfloat16, index values checked on the device, no host synchronization inside the ops, the
out-of-sample modes through ``emms_score``, and the same ranking on CUDA as on the CPU for every mode.

Every case compares the CUDA result with the CPU kernel on the same (rounded) inputs. Both solve in float64,
but nvcc contracts multiply-adds into FMAs and the CPU build does not, so iterative solvers may stop one
iteration apart: objectives are compared to rounding and iteration counts to +-1. Random inputs come from
seeded CPU generators, then move to the GPU. The input builders and the launch-regime arithmetic run (and
are checked) on the CPU too; everything that needs a GPU skips without one.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import make_class_labels, make_dense_labels, make_features, rel_err
from test_baselines_logme import op_problem
from test_wlsr_simplex import _batched_problem
from testing import CPU_ONLY, CUDA_SKIP_REASON, DTYPES, HAS_CUDA, LOW_DTYPES, assert_close, gen, needs_cuda

import emms_ext
from emms_ext.ops import reference
from emms_ext.selection.ranking import SCORE_DIGITS

F64 = torch.float64
ITERATION_SLACK = 1  # FMA contraction on the GPU only: a stopping test may flip by one iteration


# ------------------------------------------------------------------------------------------ launch regimes
# Mirrors of the kernels' launch arithmetic (csrc/cuda/wlsr_kernel.cu, csrc/cuda/class_sums_kernel.cu), so
# that the tests land on both sides of every switch.
DEFAULT_SHARED_BYTES = 48 * 1024  # what a block gets without cudaFuncSetAttribute
CLASS_SUMS_ROWS_PER_TILE = 32


def wlsr_scratch_bytes(K: int) -> int:
    """Bytes of float64 scratch one wlsr_simplex solve needs (emms/wlsr.h wlsr_model_scratch: 5K^2 + 8K)."""
    return 8 * (5 * K * K + 8 * K)


def wlsr_shared_limits(optin_bytes: int) -> tuple[int, int]:
    """(largest K whose scratch fits the default 48 KB of shared memory, largest K that fits after opting in
    to ``optin_bytes``): K above the second runs on global scratch."""
    k_default = max(K for K in range(1, 200) if wlsr_scratch_bytes(K) <= DEFAULT_SHARED_BYTES)
    k_optin = max(K for K in range(1, 400) if wlsr_scratch_bytes(K) <= max(optin_bytes, DEFAULT_SHARED_BYTES))
    return k_default, k_optin


def class_sums_tiled(N: int, C: int) -> bool:
    """class_sums takes the tiled (rows split across blocks) path when classes average more than a tile."""
    return C * CLASS_SUMS_ROWS_PER_TILE < N


def test_wlsr_shared_limits_hand_computed():
    # 5K^2 + 8K doubles: K = 34 needs 6052 * 8 = 48416 bytes <= 49152, K = 35 needs 51240. An H100 / H200
    # block may opt in to 227 KB = 232448 bytes: K = 75 needs 229800, K = 76 needs 235904.
    assert wlsr_scratch_bytes(34) == 48416 and wlsr_scratch_bytes(35) == 51240
    assert wlsr_shared_limits(232448) == (34, 75)
    assert wlsr_shared_limits(48 * 1024) == (34, 34)  # a device without more: global from K = 35


def test_class_sums_path_rule():
    assert class_sums_tiled(5000, 10) and class_sums_tiled(5000, 156)  # 156 * 32 = 4992 < 5000
    assert not class_sums_tiled(5000, 157) and not class_sums_tiled(600, 300)


# ------------------------------------------------------------------------------------------ input builders
def wlsr_problems(K: int, M: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [K, K], B [M, K, K]) float64, scaled to |A| <= 1 (test_wlsr_simplex's batched statistics)."""
    A, B = _batched_problem(seed=seed, M=M, K=K, N=max(30, 2 * K), D=5 + K // 4)
    s = A.abs().max()
    return A / s, B / s


def class_sums_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, x [B, N, D] float64, classes [N]) covering class_sums' launch paths: tiled with classes of
    sizes that are not multiples of a tile and empty classes, tiled with one class, direct, and direct with
    B * C > 65535 (more (batch, class) rows than one grid dimension holds: several launches)."""
    g = gen(16000)
    cases = []
    classes = torch.randint(0, 10, (5000,), generator=g)
    classes[classes == 3] = 4  # an empty class in the middle
    cases.append(("tiled", torch.randn(2, 5000, 300, generator=g, dtype=F64), classes))
    cases.append(
        ("tiled, one class", torch.randn(1, 777, 129, generator=g, dtype=F64), torch.zeros(777, dtype=torch.long))
    )
    cases.append(
        ("direct", torch.randn(3, 600, 70, generator=g, dtype=F64), torch.randint(0, 300, (600,), generator=g))
    )
    multi = torch.randint(0, 300, (600,), generator=g)
    cases.append(("direct, B*C > 65535", torch.randn(230, 600, 3, generator=g, dtype=F64), multi))
    return cases


def non_contiguous_cases() -> dict[str, tuple]:
    """Per op, argument tuples whose tensors are views that are not contiguous (transposes, strided slices,
    expanded dimensions), float64 on the CPU."""
    g = gen(16100)
    A, B = wlsr_problems(4, 12, seed=16101)
    B_strided = torch.cat([B, B.flip(0)])[::2]  # every other model
    A_expanded = A.expand(B_strided.shape[0], 4, 4)  # stride 0 over models
    x = torch.randn(300, 40, generator=g, dtype=F64)
    classes = torch.randint(0, 7, (300,), generator=g)
    order, offsets = emms_ext.class_order(classes, 7)
    order_strided = torch.stack([order, order], 1)[:, 0]  # stride 2
    s, proj, y2 = op_problem(16102, 6, 9)
    return {
        "wlsr_simplex": (A_expanded, B_strided.transpose(1, 2), 0, 100, 1e-12),
        "class_sums": (x.T.contiguous().T, order_strided, offsets),
        "simplex_project": (torch.randn(9, 30, generator=g, dtype=F64).T,),
        "logme_evidence": (s, proj.T.contiguous().T, y2, 50, 8, 11, 1e-3, 1e-5),
    }


def score_zoo(N: int = 60) -> dict[str, torch.Tensor]:
    """float64 features: two models with D < N - 1 and three with D >= N (exact fits: degenerate in sample)."""
    return {f"d{D}": make_features(16200 + D, N, D, shift=2.0) for D in (8, 30, N, N + 20, 2 * N)}


def _call(op: str, args: tuple) -> tuple:
    """The op's outputs, always as a tuple."""
    out = getattr(torch.ops.emms, op)(*args)
    return out if isinstance(out, tuple) else (out,)


def _to(args: tuple, device) -> tuple:
    return tuple(a.to(device) if torch.is_tensor(a) else a for a in args)


def test_builders_give_what_they_promise():
    """The builders on the CPU: the cases are valid inputs (the CPU kernels match the float64 references),
    non-contiguous where promised, and cover both class_sums paths and its multi-launch case."""
    for name, x, classes in class_sums_cases():
        C = int(classes.max()) + 1
        assert x.dim() == 3 and x.shape[1] == classes.shape[0], name
        if "B*C" in name:
            assert x.shape[0] * C > 65535 and not class_sums_tiled(x.shape[1], C), name
        elif name.startswith("tiled"):
            assert class_sums_tiled(x.shape[1], C), name
        else:
            assert not class_sums_tiled(x.shape[1], C), name
    tiled = class_sums_cases()[0]
    order, offsets = emms_ext.class_order(tiled[2], 10)
    assert bool(offsets[4] == offsets[3]) and bool(((offsets[1:] - offsets[:-1]) % CLASS_SUMS_ROWS_PER_TILE != 0).any())
    assert_close(emms_ext.class_sums(tiled[1], order, offsets), reference.class_sums(tiled[1], order, offsets), F64)
    cases = non_contiguous_cases()
    assert set(cases) == set(DTYPES) - CPU_ONLY
    for op, args in cases.items():
        assert any(torch.is_tensor(a) and not a.is_contiguous() for a in args), op
        contiguous = tuple(a.contiguous() if torch.is_tensor(a) else a for a in args)
        for a, b in zip(_call(op, args), _call(op, contiguous)):
            assert torch.equal(a, b), op
    A, B = wlsr_problems(3, 5, seed=1)
    assert A.shape == (3, 3) and B.shape == (5, 3, 3) and float(A.abs().max()) == 1.0
    zoo = score_zoo()
    assert sum(x.shape[1] >= 60 for x in zoo.values()) == 3


# ------------------------------------------------------------------------------------------ helpers (GPU)
def assert_wlsr_cuda_matches_cpu(A, B, mode, max_iter, tol, name, dtype=F64):
    """CUDA wlsr_simplex against the CPU kernel: objectives to rounding, t where the optimum is unique to
    rounding, iterations within ITERATION_SLACK."""
    t, f, it = torch.ops.emms.wlsr_simplex(A.cuda(), B.cuda(), mode, max_iter, tol)
    t_c, f_c, it_c = torch.ops.emms.wlsr_simplex(A.cpu(), B.cpu(), mode, max_iter, tol)
    low = dtype in LOW_DTYPES
    rtol = 2 * torch.finfo(dtype).eps if low else 1e-9
    scale = float(f_c.double().abs().max()) if f_c.numel() else 1.0
    assert torch.allclose(f.cpu().double() / scale, f_c.double() / scale, rtol=rtol, atol=rtol, equal_nan=True), name
    assert torch.allclose(
        t.cpu().double(), t_c.double(), atol=4 * torch.finfo(dtype).eps if low else 1e-6, equal_nan=True
    ), name
    assert bool(((it.cpu() - it_c).abs() <= ITERATION_SLACK).all()), name


# ------------------------------------------------------------------------------------------ wlsr_simplex
@needs_cuda
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_wlsr_both_sides_of_every_scratch_switch(mode):
    """Shared scratch up to the default 48 KB, opted-in shared up to the device's per-block maximum, global
    beyond: K on both sides of each switch, several blocks' worth of models where cheap."""
    k_default, k_optin = wlsr_shared_limits(torch.cuda.get_device_properties(0).shared_memory_per_block_optin)
    for K in sorted({k_default, k_default + 1, k_optin, k_optin + 1}):
        M = 70 if K <= k_default else 5  # 70 models at K = 34: 70 blocks of one (48 KB each)
        A, B = wlsr_problems(K, M, seed=16300 + K)
        assert_wlsr_cuda_matches_cpu(A, B, mode, 10, 1e-12, f"K={K} mode={mode}")


@needs_cuda
@pytest.mark.parametrize("K", [3, 4, 8])
@pytest.mark.parametrize("shared_A", [True, False])
def test_wlsr_many_models_interleaved_scratch(K, shared_A):
    """Hundreds of models, a partial last block: every model's interleaved scratch stays its own."""
    M = 500  # 7 full blocks of 64 models and one of 52
    A, B = wlsr_problems(K, M, seed=16400 + K)
    if not shared_A:  # per-model A: c_m (A + 0.01 I), c_m in [1, 2], keeps A_m - B_m positive semi-definite
        A = (A + 0.01 * torch.eye(K, dtype=F64)) * torch.linspace(1, 2, M, dtype=F64)[:, None, None]
    for mode in (0, 1, 2):
        assert_wlsr_cuda_matches_cpu(A, B, mode, 50, 1e-12, f"K={K} mode={mode}")


# ------------------------------------------------------------------------------------------ class_sums
@needs_cuda
@pytest.mark.parametrize("case", range(4), ids=[c[0] for c in class_sums_cases()])
def test_class_sums_paths(case):
    name, x, classes = class_sums_cases()[case]
    C = int(classes.max()) + 1
    order, offsets = emms_ext.class_order(classes, C)
    out = emms_ext.class_sums(x.cuda(), order.cuda(), offsets.cuda())
    cpu = emms_ext.class_sums(x, order, offsets)
    assert_close(out, reference.class_sums(x, order, offsets), F64, msg=name)
    torch.testing.assert_close(out.cpu(), cpu, rtol=1e-13, atol=1e-12, msg=name)
    assert torch.equal(emms_ext.class_sums(x.cuda(), order.cuda(), offsets.cuda()), out), name + ": not deterministic"
    # a model's sums do not depend on the models batched with it (the path depends on N and C only)
    assert torch.equal(emms_ext.class_sums(x[-1:].cuda(), order.cuda(), offsets.cuda()), out[-1:]), name
    for dtype in (torch.float32, *LOW_DTYPES):
        xl = x.to(dtype)
        assert_close(
            emms_ext.class_sums(xl.cuda(), order.cuda(), offsets.cuda()),
            reference.class_sums(xl, order, offsets),
            dtype,
            msg=f"{name} {dtype}",
        )


@needs_cuda
def test_class_sums_bad_index_values_give_nan_on_the_device():
    """The CUDA op reads no index value on the host (no sync): bad offsets poison the whole output, an order
    value out of range its class, and nothing outside the tensors is read (compute-sanitizer checks that in
    scripts/gpu_check.sh). The CPU op raises on the same inputs (test_class_sums.py)."""
    g = gen(16500)
    for N, C in [(400, 3), (40, 30)]:  # tiled and direct
        x = torch.randn(2, N, 5, generator=g, dtype=F64).cuda()
        order, offsets = emms_ext.class_order(torch.randint(0, C, (N,), generator=g), C)
        order, offsets = order.cuda(), offsets.cuda()
        bad_end = offsets.clone()
        bad_end[-1] = N - 1
        bad_step = offsets.clone()
        bad_step[1] = offsets[2] + 1
        for bad in (bad_end, bad_step):
            assert bool(torch.isnan(emms_ext.class_sums(x, order, bad)).all()), (N, C)
        bad_order = order.clone()
        bad_order[int(offsets[1])] = N + 5  # first row of class 1
        out = emms_ext.class_sums(x, bad_order, offsets)
        assert bool(torch.isnan(out[:, 1]).all()) and bool(torch.isfinite(out[:, [0, 2]]).all()), (N, C)
        assert torch.equal(out[:, [0, 2]], emms_ext.class_sums(x, order, offsets)[:, [0, 2]])


@needs_cuda
def test_ops_do_not_synchronize_with_the_host():
    """torch's sync debug mode raises on any device-to-host synchronization inside the ops."""
    g = gen(16600)
    x = torch.randn(2, 500, 8, generator=g, dtype=F64).cuda()
    order, offsets = (t.cuda() for t in emms_ext.class_order(torch.randint(0, 4, (500,), generator=g), 4))
    A, B = (t.cuda() for t in wlsr_problems(40, 3, seed=16601))  # past the default 48 KB: opted-in shared
    s, proj, y2 = (t.cuda() for t in op_problem(16602, 5, 7))
    v = torch.randn(6, 5, generator=g, dtype=F64).cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        emms_ext.class_sums(x, order, offsets)
        emms_ext.class_sums(x[:, :, :3].to(torch.float16), order, offsets)
        torch.ops.emms.wlsr_simplex(A, B, 0, 10, 1e-12)
        torch.ops.emms.logme_evidence(s, proj, y2, 20, 5, 11, 1e-3, 1e-5)
        emms_ext.simplex_project(v)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ------------------------------------------------------------------------------------------ every op
@needs_cuda
@pytest.mark.parametrize("op", sorted(set(DTYPES) - CPU_ONLY))
def test_non_contiguous_inputs(op):
    args = non_contiguous_cases()[op]
    for a, b in zip(_call(op, _to(args, "cuda")), _call(op, args)):
        assert a.device.type == "cuda", op
        if a.dtype == torch.int64:  # iterations
            assert bool(((a.cpu() - b).abs() <= ITERATION_SLACK).all()), op
        else:
            torch.testing.assert_close(a.cpu(), b, rtol=1e-9, atol=1e-12, equal_nan=True, msg=op)


@needs_cuda
@pytest.mark.parametrize("op", [op for op, dtypes in DTYPES.items() if set(LOW_DTYPES) <= set(dtypes)])
@pytest.mark.parametrize("dtype", LOW_DTYPES, ids=["f16", "bf16"])
def test_low_precision_matches_the_cpu(op, dtype):
    """half / bfloat16 where the op takes them: the CUDA glue computes in float32 / float64 and rounds once,
    the CPU kernels read them directly; both round the same float64-accurate result."""
    args = tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in non_contiguous_cases()[op])
    if op == "wlsr_simplex":
        assert_wlsr_cuda_matches_cpu(*args, name=op, dtype=dtype)
        return
    (out,), (cpu,) = _call(op, _to(args, "cuda")), _call(op, args)
    assert out.dtype == cpu.dtype == dtype
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.cpu().double(), cpu.double(), rtol=2 * eps, atol=2 * eps)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES["logme_evidence"], ids=["f32", "f64"])
def test_logme_evidence_many_targets_and_opcheck(dtype):
    """Thousands of targets (many blocks) against the CPU kernel; opcheck on the CUDA tensors."""
    s, proj, y2 = (t.to(dtype) for t in op_problem(16700, 24, 3000))
    proj[17, 3] = float("nan")  # one poisoned target next to finite ones
    args = (s, proj, y2, 500, 64, 200, 1e-10, 1e-5)
    out = _call("logme_evidence", _to(args, "cuda"))
    cpu = _call("logme_evidence", args)
    rtol = 1e-9 if dtype == F64 else 1e-5
    for a, b in zip(out[:3], cpu[:3]):
        torch.testing.assert_close(a.cpu(), b, rtol=rtol, atol=1e-12, equal_nan=True)
    finite = torch.isfinite(cpu[0])
    assert int(finite.sum()) == 2999 and int((out[3].cpu() - cpu[3])[finite].abs().max()) <= ITERATION_SLACK
    torch.library.opcheck(
        torch.ops.emms.logme_evidence.default, _to((s[:8], proj[:5, :8], y2[:5], 50, 10, 11, 1e-3, 1e-5), "cuda")
    )


# ------------------------------------------------------------------------------------------ the pipeline
@needs_cuda
@pytest.mark.parametrize("labels", ["class", "dense"])
@pytest.mark.parametrize("mode, ridge", [("gcv", None), ("loo", None), ("exact", "gcv"), ("alternating", "gcv")])
def test_out_of_sample_and_gcv_ridge_on_cuda_match_the_cpu(labels, mode, ridge):
    N, D = 300, 40
    X = make_features(16800, N, D, shift=1.0)
    Z = make_class_labels(16800, N, 12, 6, 3) if labels == "class" else make_dense_labels(16800, N, 6, 3, X)
    cpu = emms_ext.emms_score(X, Z, mode, ridge=ridge)
    gpu = emms_ext.emms_score(X.cuda(), Z, mode, ridge=ridge)
    assert rel_err(gpu.score, cpu.score) < 1e-9 and rel_err(gpu.ridge, cpu.ridge) < 1e-9
    assert torch.allclose(gpu.t.cpu(), cpu.t, atol=1e-6)


def fold_scores_on(device: str, labels: str, mode: str, ridge, stream: bool) -> torch.Tensor:
    """``[5]`` fold scores of one model on ``device`` (the downdates for exact, refits at the ridge for the
    others and for a stream of chunks moved to the device as they come)."""
    N, D = 300, 40
    X = make_features(17000, N, D, shift=1.0)
    Z = make_class_labels(17000, N, 12, 6, 3) if labels == "class" else make_dense_labels(17000, N, 6, 3, X)
    x = (X[i : i + 70] for i in range(0, N, 70)) if stream else X.to(device)
    return emms_ext.emms_score(x, Z, mode, ridge=ridge, folds=5, seed=1, device=device).fold_scores


@needs_cuda
@pytest.mark.parametrize("labels", ["class", "dense"])
@pytest.mark.parametrize(
    "mode, ridge, stream",
    [("exact", None, False), ("gcv", None, False), ("loo", None, False), ("exact", 0.5, False), ("exact", None, True)],
)
def test_fold_scores_on_cuda_match_the_cpu(labels, mode, ridge, stream):
    cpu, gpu = (fold_scores_on(dev, labels, mode, ridge, stream) for dev in ("cpu", "cuda"))
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-9, atol=1e-12)


@needs_cuda
@pytest.mark.parametrize("labels", ["class", "dense"])
def test_same_ranking_on_cuda_and_cpu_for_every_mode(labels):
    """A zoo with three D >= N models: every mode ranks it the same on CUDA as on the CPU, with the same
    degenerate flags and scores equal to a Ranking's SCORE_DIGITS significant digits."""
    zoo = score_zoo()
    N = next(iter(zoo.values())).shape[0]
    Z = make_class_labels(16900, N, 6, 5, 3) if labels == "class" else make_dense_labels(16900, N, 5, 3)
    for mode in ("exact", "alternating", "reference", "gcv", "loo"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", emms_ext.EMMSDegeneracyWarning)  # the D >= N models, in sample
            cpu = emms_ext.emms_scores(zoo, Z, mode, precision="float64")
            gpu = emms_ext.emms_scores(zoo, Z, mode, precision="float64", device="cuda")
        assert not cpu.failures and not gpu.failures, mode
        for name in zoo:
            a, b = gpu[name].score, cpu[name].score  # equal to SCORE_DIGITS significant digits
            assert abs(a - b) <= 0.5 * 10.0 ** (1 - SCORE_DIGITS) * abs(b), (mode, name, a, b)
            assert gpu[name].degenerate == cpu[name].degenerate, (mode, name)
        assert gpu.order == cpu.order, mode
        in_sample = mode in ("exact", "alternating", "reference")
        assert sum(r.degenerate for r in cpu.values()) == (3 if in_sample else 0), mode


def test_skip_reason_names_the_check_script():
    assert HAS_CUDA or "gpu_check.sh" in CUDA_SKIP_REASON
