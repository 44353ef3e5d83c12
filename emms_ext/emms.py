"""The EMMS score API: one model (``emms_score``) or a whole zoo (``emms_scores``).

Per model the work is: stream the features once into sufficient statistics (stats.py), factor the
standardized Gram, and reduce everything to the K x K matrix ``B``; the per-task label statistics (``A``,
the label basis) are computed once (labels.py); all models' K x K problems then go to one call of the
fused op ``emms::wlsr_simplex``. Nothing of size N x L is formed per model.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from ._validate import as_float_tensor, check_finite, describe
from .labels import LabelBasis, prepare_labels
from .ops import MODES, wlsr_simplex
from .factor import make_factor
from .stats import FeatureStats, StandardizedStats


class EMMSDegeneracyWarning(UserWarning):
    """Features with at least N - 1 varying columns fit any target exactly: unregularized scores tie at 0."""


@dataclass
class EMMSResult:
    """Score of one model. ``score`` is ``-f(W*, t*) / (N L)`` (higher is better); in ``mode="reference"``
    it is the released code's ``-f / N * L``."""

    score: float
    t: torch.Tensor  # [K] float64 weights of the foundation models, on the simplex
    mode: str
    iterations: int
    objective: float  # unnormalized f = ||XW - Zt||^2 (+ ridge ||W||^2)
    n_samples: int
    n_features: int  # D of the input
    n_used_features: int  # columns that vary (constant columns standardize to zero)
    label_dim: int  # L
    n_embedders: int  # K
    ridge: float | None  # the ridge used (the GCV-chosen one with ridge="gcv")
    solver: str  # Gram inversion: "cholesky", "eigh" (rank-deficient), "gcv" (ridge="gcv") or "none" (no columns)
    gram_precision: str = "float64"  # the Gram's precision: "float32" / "float64" (after any automatic fallback)
    W: torch.Tensor | None = None  # [D, L] regression weights on the standardized features, if requested
    warnings: list[str] = field(default_factory=list)

    def __float__(self) -> float:
        return self.score


class ZooScores(dict):
    """name -> EMMSResult for the models that were scored, plus ``failures`` (name -> reason)."""

    def __init__(self, results, failures):
        super().__init__(results)
        self.failures: dict = dict(failures)

    @property
    def scores(self) -> dict:
        return {name: r.score for name, r in self.items()}

    @property
    def order(self) -> list:
        """Model names from best to worst score."""
        return sorted(self, key=lambda name: self[name].score, reverse=True)


# ------------------------------------------------------------------------------------------- features
PRECISIONS = {"float64": (torch.float64, False), "float32": (torch.float32, False), "tf32": (torch.float32, True)}


def _resolve_precision(precision, first_dtype: torch.dtype) -> tuple[torch.dtype, bool]:
    """(compute dtype of the Gram GEMMs, allow TF32) from the user's choice and the features' dtype."""
    if precision is None:
        return (torch.float64 if first_dtype == torch.float64 else torch.float32), False
    if precision in (torch.float32, torch.float64):
        return precision, False
    if isinstance(precision, str) and precision in PRECISIONS:
        return PRECISIONS[precision]
    raise ValueError(f"precision must be one of {sorted(PRECISIONS)} or None (got {precision!r})")


@contextmanager
def _tf32(enabled: bool):
    """TF32 tensor-core GEMMs on CUDA for the duration (no effect on CPU)."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def _check_chunk(x: torch.Tensor, name: str, seen: int, N: int, D: int | None) -> None:
    if x.dim() != 2:
        raise ValueError(f"{name} must be [N, D] (got {describe(x)})")
    if x.shape[1] == 0:
        raise ValueError(f"{name} must be [N, D] with D >= 1 (got {describe(x)})")
    if D is not None and x.shape[1] != D:
        raise ValueError(f"{name} chunks must all be [n_i, D={D}] (got {describe(x)} after {seen} rows)")
    if seen + x.shape[0] > N:
        raise ValueError(f"{name} must be [N, D] with N == {N} (the label embeddings' N); "
                         f"got at least {seen + x.shape[0]} rows")
    if not bool(torch.isfinite(x.sum())):  # one cheap reduction; the exact count only on failure
        check_finite(x, name, f" in rows {seen}..{seen + x.shape[0] - 1}")


def _in_memory(features, name: str, N: int) -> torch.Tensor | None:
    """Validated [N, D] float tensor for in-memory features; None for an iterable of chunks."""
    if not (torch.is_tensor(features) or isinstance(features, np.ndarray)):
        if not isinstance(features, Iterable):
            raise ValueError(f"{name} must be an [N, D] tensor/array or an iterable of [n_i, D] chunks "
                             f"(got {describe(features)})")
        return None
    x = as_float_tensor(features, name, "[N, D]")
    _check_chunk(x, name, 0, N, None)
    if x.shape[0] != N:
        raise ValueError(f"{name} must be [N, D] with N == {N} (the label embeddings' N); got {x.shape[0]} rows")
    return x


def _stream_stats(features, basis: LabelBasis, name: str, precision, device, chunk_size: int) -> StandardizedStats:
    """Statistics of one model whose features arrive as an iterable of [n_i, D] chunks."""
    acc, tf32 = None, False
    for i, chunk in enumerate(features):
        x = as_float_tensor(chunk, f"{name} chunk {i}", "[n_i, D]")
        _check_chunk(x, f"{name} chunk {i}" if acc is None or x.dim() != 2 else name, 0 if acc is None else acc.n,
                     basis.N, None if acc is None else acc.D)
        if acc is None:
            dtype, tf32 = _resolve_precision(precision, x.dtype)
            dev = torch.device(device) if device is not None else x.device
            acc = FeatureStats(basis.to(dev), 1, x.shape[1], dtype, dev)
        with _tf32(tf32):
            acc.update(x.to(acc.mean.device, acc.dtype).contiguous()[None])
    if acc is None or acc.n != basis.N:
        seen = 0 if acc is None else acc.n
        raise ValueError(f"{name} must be [N, D] with N == {basis.N} (the label embeddings' N); got {seen} rows")
    return acc.finalize()


def _batch_stats(xs: list[torch.Tensor], basis: LabelBasis, dtype, tf32: bool, device,
                 chunk_size: int) -> StandardizedStats:
    """Statistics of M in-memory models of equal D: every chunk's GEMMs batched over the models."""
    acc = FeatureStats(basis.to(device), len(xs), xs[0].shape[1], dtype, device)
    with _tf32(tf32):
        for start in range(0, basis.N, chunk_size):
            rows = [x[start:start + chunk_size].to(device, dtype) for x in xs]
            acc.update(rows[0][None].contiguous() if len(rows) == 1 else torch.stack(rows))
    return acc.finalize()


# ------------------------------------------------------------------------------------------- scoring
def _check_options(mode: str, ridge, max_iter: int, tol: float) -> float | None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)} (got {mode!r})")
    if isinstance(ridge, str):
        if ridge != "gcv":
            raise ValueError(f"ridge must be None, a finite number >= 0 or 'gcv' (got {ridge!r})")
        if mode == "reference":
            raise ValueError("ridge is not part of the released algorithm that mode='reference' reproduces; "
                             "use mode='exact' or 'alternating' with ridge")
    elif ridge is not None:
        if not (isinstance(ridge, (int, float)) and math.isfinite(ridge) and ridge >= 0):
            raise ValueError(f"ridge must be None, a finite number >= 0 or 'gcv' (got {ridge!r})")
        if mode == "reference" and ridge > 0:
            raise ValueError("ridge is not part of the released algorithm that mode='reference' reproduces; "
                             "use mode='exact' or 'alternating' with ridge")
        ridge = float(ridge) or None
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1 (got {max_iter})")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0 (got {tol})")
    return ridge


def _degeneracy_message(name: str, D: int, N: int) -> str:
    return (f"{name}: {D} varying feature columns >= N - 1 = {N - 1} samples. Least squares then fits every "
            "label embedding exactly, so this model scores a perfect 0 and ties with every other such model "
            "(a known EMMS degeneracy). Pass ridge='gcv' (a ridge chosen by generalized cross-validation) or "
            "ridge=<lambda> (sklearn Ridge's alpha on the standardized features) to get scores that "
            "discriminate, or use more samples.")


def _batch_budget(device: torch.device) -> int:
    """Bytes of statistics one batch of models may hold: a quarter of free GPU memory, 1 GiB on the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 4
    return 1 << 30


def _groups(tensors: dict, precision, device, chunk_size: int, r: int):
    """Batches of in-memory models sharing (D, device, compute dtype), each within the memory budget."""
    by_key: dict = {}
    for name, x in tensors.items():
        dtype, tf32 = _resolve_precision(precision, x.dtype)
        dev = torch.device(device) if device is not None else x.device
        by_key.setdefault((x.shape[1], dev, dtype, tf32), []).append(name)
    for (D, dev, dtype, tf32), names in by_key.items():
        per_model = 8 * (4 * D * D + 3 * D * r) + 2 * chunk_size * D * torch.finfo(dtype).bits // 8
        size = max(1, _batch_budget(dev) // per_model)
        for i in range(0, len(names), size):
            yield names[i:i + size], dtype, tf32, dev


def _score_zoo(items, basis: LabelBasis, mode: str, ridge, return_W: bool, max_iter: int, tol: float,
               precision, device, chunk_size: int, errors: str, progress) -> ZooScores:
    failures, tensors, streams = {}, {}, {}

    def fail(name, exc):
        if errors == "raise":
            raise exc
        failures[name] = str(exc)
        warnings.warn(f"model {name!r} skipped: {exc}", stacklevel=4)

    for name, features in items:
        label = "features" if name is None else f"features[{name!r}]"
        try:
            x = _in_memory(features, label, basis.N)
            (streams if x is None else tensors)[name] = features if x is None else x
        except ValueError as exc:
            fail(name, exc)

    prepared = []  # (names, stats, factor, B on the solve device)
    bar = _progress(len(tensors) + len(streams), progress)
    for names, dtype, tf32, dev in _groups(tensors, precision, device, chunk_size, basis.r):
        st = _batch_stats([tensors[n] for n in names], basis, dtype, tf32, dev, chunk_size)
        factor = make_factor(st, ridge, basis)
        if precision is None and dtype != torch.float64:
            # Automatic precision: models whose float32 Gram is too ill-conditioned are redone in float64.
            bad = factor.ill_conditioned(st.eps)
            if bool(bad.any()):
                redo = [n for n, b in zip(names, bad.tolist()) if b]
                names = [n for n, b in zip(names, bad.tolist()) if not b]
                st64 = _batch_stats([tensors[n] for n in redo], basis, torch.float64, False, dev, chunk_size)
                f64 = make_factor(st64, ridge, basis)
                prepared.append((redo, st64, f64, basis.to(dev).B_from_half(f64.half(st64.F))))
                bar.update(len(redo))
                if names:
                    keep = ~bad
                    st = StandardizedStats(N=st.N, D=st.D, keep=st.keep[keep], G=st.G[keep], F=st.F[keep], eps=st.eps)
                    factor = make_factor(st, ridge, basis)
        if names:
            prepared.append((names, st, factor, basis.to(dev).B_from_half(factor.half(st.F))))
        bar.update(len(names))
    for name, features in streams.items():
        label = "features" if name is None else f"features[{name!r}]"
        try:
            st = _stream_stats(features, basis, label, precision, device, chunk_size)
        except ValueError as exc:
            fail(name, exc)
            continue
        factor = make_factor(st, ridge, basis)
        if precision is None and st.eps > torch.finfo(torch.float64).eps and bool(factor.ill_conditioned(st.eps)[0]):
            warnings.warn(f"{label}: the float32 Gram of these streamed features is ill-conditioned "
                          f"(condition >= {float(factor.cond[0]):.1e}); its score may be off in the leading "
                          "digits. Pass precision='float64' (streams cannot be re-read automatically).",
                          stacklevel=3)
        prepared.append(([name], st, factor, basis.to(st.G.device).B_from_half(factor.half(st.F))))
        bar.update(1)
    bar.close()

    results = {}
    if not prepared:
        return ZooScores({}, failures)
    # One fused solve for the whole zoo, on the device of the first batch.
    solve_dev = prepared[0][3].device
    B_all = torch.cat([B.to(solve_dev) for *_, B in prepared])
    t_all, obj_all, its_all = wlsr_simplex(basis.A.to(solve_dev), B_all, mode, max_iter, tol)
    offset = 0
    for names, st, factor, B in prepared:
        sl = slice(offset, offset + len(names))
        offset += len(names)
        t, obj, its = t_all[sl], obj_all[sl].cpu(), its_all[sl].cpu()
        Ws = None
        if return_W:
            t_fit = torch.full_like(t, 1.0 / basis.K) if mode == "reference" else t
            Ws = factor.solve(basis.to(B.device).mix(st.F, t_fit.to(B.device))).cpu()
        t = t.cpu()
        for i, name in enumerate(names):
            f = float(obj[i])
            score = -f / st.N * basis.L if mode == "reference" else -f / (st.N * basis.L)
            notes = []
            D_used = int(st.keep[i].sum())
            if ridge is None and D_used >= st.N - 1:
                notes.append(_degeneracy_message("features" if name is None else f"model {name!r}", D_used, st.N))
                warnings.warn(notes[-1], EMMSDegeneracyWarning, stacklevel=3)
            results[name] = EMMSResult(
                score=score, t=t[i].clone(), mode=mode, iterations=int(its[i]), objective=f, n_samples=st.N,
                n_features=st.D, n_used_features=D_used, label_dim=basis.L, n_embedders=basis.K,
                ridge=factor.ridges()[i],
                solver=factor.methods[i], W=None if Ws is None else Ws[i].clone(), warnings=notes,
                gram_precision="float64" if st.eps <= torch.finfo(torch.float64).eps else "float32")
    order = [name for name, _ in items if name in results]
    return ZooScores({name: results[name] for name in order}, failures)


def _progress(total: int, progress):
    """A tqdm bar over models when asked (progress=True) or when the zoo is large (progress=None)."""
    show = progress if progress is not None else total >= 32
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are optional
        tqdm = None
    if not show or tqdm is None:
        return _NoBar()
    return tqdm(total=total, desc="EMMS", unit="model")


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


_COMMON_ARGS = """
        mode: ``"exact"`` (the WLSR optimum), ``"alternating"`` (the paper's Algorithm 1 to convergence) or
            ``"reference"`` (the released code's single step and scaling).
        ridge: None for the paper's least squares; lambda > 0 to minimize ``||XW - Zt||^2 + lambda ||W||^2``
            (sklearn Ridge's alpha on the standardized features), which keeps D >= N models apart; or
            ``"gcv"`` to choose lambda per model by generalized cross-validation (reported in ``.ridge``).
        return_W: also return the regression weights ``W [D, L]`` acting on the standardized features.
        max_iter, tol: stopping rule of ``mode="alternating"``.
        precision: the Gram GEMMs' precision: ``"float64"``, ``"float32"`` or ``"tf32"`` (TF32 tensor cores
            on CUDA; float32 elsewhere). Default: float64 for float64 features, float32 otherwise.
            Factorizations and the K x K solves are always float64.
        device: where the statistics are computed (e.g. ``"cuda"``); default: the features' device
            (CPU for numpy arrays and iterables).
        chunk_size: rows per chunk for in-memory features.
        progress: show a progress bar (default: for zoos of 32 models or more, if tqdm is installed)."""


def emms_score(features, label_embeddings, mode: str = "exact", ridge: float | None = None, *,
               return_W: bool = False, max_iter: int = 10_000, tol: float = 1e-12, precision=None, device=None,
               chunk_size: int = 16384, progress: bool | None = False) -> EMMSResult:
    """EMMS transferability of one model: higher is better.

    Args:
        features: ``[N, D]`` torch tensor or numpy array (any float dtype, any strides), or an iterable of
            ``[n_i, D]`` chunks (streamed; O(D^2) memory).
        label_embeddings: F-labels: ``[N, L, K]``; a list of K arrays ``[N, L_k]`` (each standardized, then
            zero-padded to the widest); or ``ClassLabels(table, indices)`` / ``(table, indices)`` with
            ``table [C, L, K]`` class embeddings and ``indices [N]``. Dense labels whose rows take at most
            N/2 distinct values are detected and handled in the class basis automatically.{common}
    """
    ridge = _check_options(mode, ridge, max_iter, tol)
    basis = prepare_labels(label_embeddings)
    return _score_zoo([(None, features)], basis, mode, ridge, return_W, max_iter, tol, precision, device,
                      chunk_size, "raise", progress)[None]


def emms_scores(zoo, label_embeddings, mode: str = "exact", ridge: float | None = None, *,
                return_W: bool = False, max_iter: int = 10_000, tol: float = 1e-12, precision=None, device=None,
                chunk_size: int = 16384, errors: str = "raise", progress: bool | None = None) -> ZooScores:
    """EMMS for a zoo: ``zoo`` is a dict name -> features or a list of features (keys 0, 1, ...).

    The label statistics are computed once and shared; in-memory models of equal width are batched (every
    GEMM and Cholesky runs over the batch); all K x K problems are solved in one op call.

    Args:
        zoo: dict name -> features (or a list); features as in ``emms_score``.
        label_embeddings: as in ``emms_score``.
        errors: ``"raise"`` (default) stops at the first model with bad features; ``"skip"`` scores the
            others and records the reason in ``result.failures``.{common}

    Returns a ``ZooScores`` dict (name -> EMMSResult) with ``.scores``, ``.order`` and ``.failures``.
    """
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip' (got {errors!r})")
    ridge = _check_options(mode, ridge, max_iter, tol)
    if isinstance(zoo, Mapping):
        items = list(zoo.items())
    elif isinstance(zoo, (list, tuple)):
        items = list(enumerate(zoo))
    else:
        raise ValueError(f"zoo must be a dict name -> features or a list of features (got {describe(zoo)})")
    basis = prepare_labels(label_embeddings)
    return _score_zoo(items, basis, mode, ridge, return_W, max_iter, tol, precision, device, chunk_size, errors,
                      progress)


emms_score.__doc__ = emms_score.__doc__.format(common=_COMMON_ARGS)
emms_scores.__doc__ = emms_scores.__doc__.format(common=_COMMON_ARGS)
