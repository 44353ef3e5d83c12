"""From features to statistics: input validation, precision choice, batching models of equal width into
groups that fit in memory, and streaming chunks into ``FeatureStats`` (stats.py)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import contextmanager

import numpy as np
import torch

from ..common.validate import as_float_tensor, check_features, check_finite, describe
from .labels import LabelBasis
from .stats import FeatureStats, StandardizedStats

PRECISIONS = {"float64": (torch.float64, False), "float32": (torch.float32, False), "tf32": (torch.float32, True)}


def resolve_precision(precision, first_dtype: torch.dtype) -> tuple[torch.dtype, bool]:
    """(compute dtype of the Gram GEMMs, allow TF32) from the user's choice and the features' dtype."""
    if precision is None:
        return (torch.float64 if first_dtype == torch.float64 else torch.float32), False
    if precision in (torch.float32, torch.float64):
        return precision, False
    if isinstance(precision, str) and precision in PRECISIONS:
        return PRECISIONS[precision]
    raise ValueError(f"precision must be one of {sorted(PRECISIONS)} or None (got {precision!r})")


def gram_bound(dtype: torch.dtype, N: int) -> float:
    """Largest |x| whose centred Gram over N rows cannot overflow `dtype`: a centred value is at most 2|x|
    and a Gram entry sums N products of two of them."""
    return math.sqrt(torch.finfo(dtype).max / (4 * max(N, 1)))


def largest(x: torch.Tensor) -> float:
    """max |x| without an |x| temporary the size of x (features can be gigabytes)."""
    if not x.numel():
        return 0.0
    lo, hi = torch.aminmax(x)
    return max(-float(lo), float(hi))


def check_range(big: float, dtype: torch.dtype, name: str, N: int) -> None:
    """ValueError when values up to `big` are too large for a `dtype` Gram over N rows (it would overflow)."""
    if big > gram_bound(dtype, N):
        hint = "" if dtype == torch.float64 else " or pass precision='float64'"
        raise ValueError(
            f"{name} has values up to {big:.3g}, too large for a {str(dtype).removeprefix('torch.')} "
            f"Gram over N={N} rows (|x| must stay below {gram_bound(dtype, N):.3g}); rescale the "
            f"features{hint}"
        )


def compute_precision(x: torch.Tensor, precision, name: str, N: int) -> tuple[torch.dtype, bool]:
    """resolve_precision for one in-memory model, plus a range check: with the automatic precision, float32
    features too large for a float32 Gram are computed in float64; an explicit precision, or values too
    large even for float64, get a clear error instead of an overflowed Gram."""
    dtype, tf32 = resolve_precision(precision, x.dtype)
    big = largest(x)
    if precision is None and big > gram_bound(dtype, N):
        dtype, tf32 = torch.float64, False
    check_range(big, dtype, name, N)
    return dtype, tf32


def recheck(x: torch.Tensor, precision, dtype: torch.dtype, name: str, N: int) -> tuple[torch.dtype, bool]:
    """For a model whose `dtype` statistics overflowed or met a non-finite value (``StandardizedStats.
    overflow``): the clear ValueError (non-finite values, or values too large for the Gram), or, with the
    automatic precision, the float64 precision to recompute it in. The one extra pass over the features
    is paid by such models only."""
    check_finite(x, name, f" in rows 0..{x.shape[0] - 1}")
    new = compute_precision(x, precision, name, N)
    if new[0] == dtype:  # within the conservative bound yet overflowed: cannot happen, say so clearly
        raise ValueError(f"{name}: its {str(dtype).removeprefix('torch.')} Gram overflowed; rescale the features")
    return new


@contextmanager
def tf32_matmul(enabled: bool):
    """TF32 tensor-core GEMMs on CUDA for the duration (no effect on CPU)."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def in_memory_features(features, name: str, N: int, finite: bool = True) -> torch.Tensor | None:
    """Validated [N, D] float tensor for in-memory features; None for an iterable of chunks. finite=False
    leaves the finite check to the statistics (``StandardizedStats.overflow``, then ``recheck``)."""
    if not (torch.is_tensor(features) or isinstance(features, np.ndarray)):
        if not isinstance(features, Iterable):
            raise ValueError(
                f"{name} must be an [N, D] tensor/array or an iterable of [n_i, D] chunks (got {describe(features)})"
            )
        return None
    return check_features(features, name, N=N, finite=finite)


# Bytes of per-fold statistics one streamed model may hold for the jackknife: one D x D float64 co-moment (and
# a D x r cross-product) per fold. 2 GiB: D = 4096 with 10 folds (1.3 GiB) fits, D = 8192 does not.
STREAM_FOLD_BUDGET = 1 << 31


def stream_fold_rows(D: int) -> int:
    """Rows of one fold a stream buffers before adding them to the fold's statistics: every update costs a few
    passes over a D x D co-moment, so a fold's rows are gathered to D of them (at least 1024) first."""
    return max(D, 1024)


def stream_fold_bytes(folds: int, D: int, r: int, itemsize: int = 4) -> int:
    """Bytes of the per-fold statistics of a stream: F float64 co-moments [D, D] and cross-products [D, r],
    and F row buffers [stream_fold_rows(D), D] of the compute dtype."""
    return folds * ((D * D + D * r) * 8 + stream_fold_rows(D) * D * itemsize)


def stream_stats(
    features, basis: LabelBasis, name: str, precision, device, chunk_size: int, fold_of: torch.Tensor | None = None
) -> tuple[StandardizedStats, list | str | None]:
    """Statistics of one model whose features arrive as an iterable of [n_i, D] chunks, and with ``fold_of [N]``
    (the jackknife's fold of each sample) each fold's own statistics, accumulated in the same pass (a second
    Gram of every chunk, by fold): a list of F ``FeatureStats`` (not finalized), or, when they would exceed
    ``STREAM_FOLD_BUDGET``, the reason there are none; None without ``fold_of``."""
    acc, tf32, per_fold = None, False, None
    for i, chunk in enumerate(features):
        x = as_float_tensor(chunk, f"{name} chunk {i}", "[n_i, D]")
        check_features(
            x,
            f"{name} chunk {i}" if acc is None or x.dim() != 2 else name,
            N=basis.N,
            width=None if acc is None else acc.D,
            seen=0 if acc is None else acc.n,
        )
        if acc is None:
            dtype, tf32 = resolve_precision(precision, x.dtype)
            dev = torch.device(device) if device is not None else x.device
            acc = FeatureStats(basis.to(dev), 1, x.shape[1], dtype, dev)
            if fold_of is not None:
                F, D = int(fold_of.max()) + 1, x.shape[1]
                need = stream_fold_bytes(F, D, basis.r, torch.finfo(dtype).bits // 8)
                if need > STREAM_FOLD_BUDGET:
                    per_fold = (
                        f"folds={F} on a stream of [N, {D}] features would hold {F} per-fold {D}x{D} float64 Grams "
                        f"({need / 2**20:.1f} MiB, over the {STREAM_FOLD_BUDGET / 2**20:.1f} MiB of "
                        "ingest.STREAM_FOLD_BUDGET); pass in-memory features [N, D] (their folds' Grams are formed "
                        "on the fly) or fewer folds"
                    )
                else:
                    per_fold = [FeatureStats(basis.to(dev), 1, D, dtype, dev) for _ in range(F)]
                    fold_dev, pending = fold_of.to(dev), [[] for _ in range(F)]
        # A stream's precision is fixed by its first chunk: a later chunk too large for it is an error.
        check_range(largest(x), acc.dtype, f"{name} chunk {i}", basis.N)
        with tf32_matmul(tf32):
            xd = x.to(acc.mean.device, acc.dtype)
            if isinstance(per_fold, list):  # before acc.update, which advances acc.n
                idx = torch.arange(acc.n, acc.n + xd.shape[0], device=xd.device)
                of = fold_dev[idx]
                for f in torch.unique(of).tolist():
                    sel = torch.nonzero(of == f).reshape(-1)
                    pending[f].append((xd.index_select(0, sel), idx[sel]))
                    if sum(p[1].numel() for p in pending[f]) >= stream_fold_rows(acc.D):
                        _flush(per_fold[f], pending[f])
            acc.update([xd])
    if acc is None or acc.n != basis.N:
        seen = 0 if acc is None else acc.n
        raise ValueError(f"{name} must be [N, D] with N == {basis.N} (the label embeddings' N); got {seen} rows")
    if isinstance(per_fold, list):
        for f, rows in enumerate(pending):
            _flush(per_fold[f], rows)
    return acc.finalize(), per_fold


def _flush(acc: FeatureStats, pending: list) -> None:
    """Add a fold's buffered ``(rows [n, D], sample indices [n])`` pairs to its statistics, as one update."""
    if pending:
        acc.update([torch.cat([p[0] for p in pending])], samples=torch.cat([p[1] for p in pending]))
        pending.clear()


def batch_stats(
    xs: list[torch.Tensor],
    basis: LabelBasis,
    dtype,
    tf32: bool,
    device,
    chunk_size: int,
) -> StandardizedStats:
    """Statistics of M in-memory models of equal D: every chunk's GEMMs batched over the models. xs hold
    N rows, or the S samples of a basis with several label rows per sample (``weighted_rows``)."""
    acc = FeatureStats(basis.to(device), len(xs), xs[0].shape[1], dtype, device)
    # Features of S samples against N > S label rows (several texts per sample): weighted statistics.
    repeats = basis.rows_per_sample if xs[0].shape[0] != basis.N else None
    with tf32_matmul(tf32):
        for start in range(0, xs[0].shape[0], chunk_size):
            # A list, not a stacked copy: update() centres each model's rows into the batch's one buffer.
            rows = [x[start : start + chunk_size].to(device, dtype) for x in xs]
            acc.update(rows, None if repeats is None else repeats[start : start + chunk_size])
    return acc.finalize()


def batch_budget(device: torch.device) -> int:
    """Bytes of statistics one batch of models may hold: a quarter of free GPU memory, 128 MiB on the CPU.
    A CPU batch's GEMMs gain nothing from more models (each model's blocks already fill the cores): the
    batch shares the label work and the fused solve, so small batches cost no speed and keep a zoo's peak
    memory near its features'."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 4
    return 1 << 27


def model_groups(tensors: dict, precisions: dict, device, chunk_size: int, r: int):
    """Batches of in-memory models sharing (D, device, compute dtype), each within the memory budget;
    precisions: name -> (compute dtype, tf32), from compute_precision."""
    by_key: dict = {}
    for name, x in tensors.items():
        dtype, tf32 = precisions[name]
        dev = torch.device(device) if device is not None else x.device
        by_key.setdefault((x.shape[1], dev, dtype, tf32), []).append(name)
    for (D, dev, dtype, tf32), names in by_key.items():
        rows = min(chunk_size, max(tensors[n].shape[0] for n in names))
        per_model = 8 * (4 * D * D + 3 * D * r) + 2 * rows * D * torch.finfo(dtype).bits // 8
        size = max(1, batch_budget(dev) // per_model)
        for i in range(0, len(names), size):
            yield names[i : i + size], dtype, tf32, dev


def weighted_rows(basis: LabelBasis, D: int, out_of_sample: bool) -> bool:
    """True when features of S samples can be scored against a basis with several label rows per sample
    as weighted statistics, without repeating them: dense labels, an in-sample mode (leave-one-out and GCV
    need the rows themselves) and D <= N (the kernel form works on rows)."""
    return basis.rows_per_sample is not None and not basis.is_vocabulary and not out_of_sample and D <= basis.N
