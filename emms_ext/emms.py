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
from dataclasses import dataclass, field

import numpy as np
import torch

from ._validate import as_float_tensor, check_finite, describe
from .labels import LabelBasis, prepare_labels
from .ops import MODES, wlsr_simplex
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
    ridge: float | None
    solver: str  # how the Gram was inverted: "cholesky", "eigh" (rank-deficient) or "none" (no columns)
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
def _compute_dtype(dtype, first: torch.Tensor) -> torch.dtype:
    if dtype is not None:
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32, torch.float64 or None (got {dtype})")
        return dtype
    return torch.float64 if first.dtype == torch.float64 else torch.float32


def _chunks(features, name: str, chunk_size: int):
    """Yield [n_i, D] float tensors from an in-memory [N, D] tensor/array or an iterable of chunks."""
    if torch.is_tensor(features) or isinstance(features, np.ndarray):
        x = as_float_tensor(features, name, "[N, D]")
        if x.dim() != 2:
            raise ValueError(f"{name} must be [N, D] (got {describe(x)})")
        for start in range(0, x.shape[0], chunk_size):
            yield x[start:start + chunk_size]
        return
    if not isinstance(features, Iterable):
        raise ValueError(f"{name} must be an [N, D] tensor/array or an iterable of [n_i, D] chunks "
                         f"(got {describe(features)})")
    for i, chunk in enumerate(features):
        x = as_float_tensor(chunk, f"{name} chunk {i}", "[n_i, D]")
        if x.dim() != 2:
            raise ValueError(f"{name} chunk {i} must be [n_i, D] (got {describe(x)})")
        yield x


def feature_stats(features, basis: LabelBasis, *, dtype=None, chunk_size: int = 16384,
                  name: str = "features") -> StandardizedStats:
    """Stream features ([N, D] tensor/array or iterable of [n_i, D] chunks) into standardized statistics."""
    acc = None
    for x in _chunks(features, name, chunk_size):
        if acc is None:
            if x.shape[1] == 0:
                raise ValueError(f"{name} must be [N, D] with D >= 1 (got {describe(x)})")
            acc = FeatureStats(basis, x.shape[1], _compute_dtype(dtype, x))
        elif x.shape[1] != acc.D:
            raise ValueError(f"{name} chunks must all be [n_i, D={acc.D}] (got {describe(x)} after {acc.n} rows)")
        if acc.n + x.shape[0] > basis.N:
            raise ValueError(f"{name} must be [N, D] with N == {basis.N} (the label embeddings' N); "
                             f"got at least {acc.n + x.shape[0]} rows")
        x = x.to(acc.dtype).contiguous()
        if not bool(torch.isfinite(x.sum())):  # one cheap reduction; the exact count only on failure
            check_finite(x, name, f" in rows {acc.n}..{acc.n + x.shape[0] - 1}")
        acc.update(x)
    if acc is None or acc.n != basis.N:
        seen = 0 if acc is None else acc.n
        raise ValueError(f"{name} must be [N, D] with N == {basis.N} (the label embeddings' N); got {seen} rows")
    return acc.finalize()


# ------------------------------------------------------------------------------------ Gram inversion
class GramFactor:
    """(G + ridge I)^+ of standardized features as ``half(F)`` (W with F'G^+F = W'W) and ``solve(Y)``.

    Cholesky when the Gram is numerically positive definite (the fast path: D^3/3); otherwise an
    eigendecomposition keeping eigenvalues above ``max_eig * eps * D`` (eps of the precision the Gram was
    formed in): a relative cutoff, never an absolute one.
    """

    def __init__(self, st: StandardizedStats, ridge: float | None):
        G = st.G
        D = G.shape[0]
        self.method = "none" if D == 0 else "cholesky"
        if D == 0:
            return
        if ridge:
            G = G + ridge * torch.eye(D, dtype=G.dtype)
        L, info = torch.linalg.cholesky_ex(G)
        tol = st.eps * D * float(G.diagonal().max())
        if int(info) == 0 and float(L.diagonal().min()) ** 2 > tol:
            self.L = L
            return
        self.method = "eigh"
        e, V = torch.linalg.eigh(G)
        keep = e > (0.0 if ridge else st.eps * D * float(e.max()))
        self.V, self.e = V[:, keep], e[keep]

    def half(self, F: torch.Tensor) -> torch.Tensor:  # [D', r] -> [rank, r]
        if self.method == "none":
            return F
        if self.method == "cholesky":
            return torch.linalg.solve_triangular(self.L, F, upper=False)
        return (self.V.T @ F) / self.e.sqrt()[:, None]

    def solve(self, Y: torch.Tensor) -> torch.Tensor:  # [D', L] -> [D', L]
        if self.method == "none":
            return Y
        if self.method == "cholesky":
            return torch.cholesky_solve(Y, self.L)
        return self.V @ ((self.V.T @ Y) / self.e[:, None])


# ------------------------------------------------------------------------------------------- scoring
def _check_options(mode: str, ridge, max_iter: int, tol: float) -> float | None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)} (got {mode!r})")
    if ridge is not None:
        if not (isinstance(ridge, (int, float)) and math.isfinite(ridge) and ridge >= 0):
            raise ValueError(f"ridge must be None or a finite number >= 0 (got {ridge!r})")
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
            "(a known EMMS degeneracy). Pass ridge=<lambda> (e.g. ridge=1.0, sklearn Ridge's alpha on the "
            "standardized features) to get scores that discriminate, or use more samples.")


def _score_zoo(items, basis: LabelBasis, mode: str, ridge, return_W: bool, max_iter: int, tol: float,
               dtype, chunk_size: int, errors: str) -> ZooScores:
    prepared, failures = [], {}
    for name, features in items:
        try:
            st = feature_stats(features, basis, dtype=dtype, chunk_size=chunk_size,
                               name="features" if name is None else f"features[{name!r}]")
            factor = GramFactor(st, ridge)
            B = basis.B_from_half(factor.half(st.F))
            prepared.append((name, st, factor, B))
        except ValueError as exc:
            if errors == "raise":
                raise
            failures[name] = str(exc)
            warnings.warn(f"model {name!r} skipped: {exc}", stacklevel=3)
    results = {}
    if prepared:
        Bs = torch.stack([p[3] for p in prepared])
        t, obj, its = wlsr_simplex(basis.A, Bs, mode, max_iter, tol)
        for i, (name, st, factor, _) in enumerate(prepared):
            f = float(obj[i])
            score = -f / st.N * basis.L if mode == "reference" else -f / (st.N * basis.L)
            notes = []
            D_used = int(st.keep.sum())
            if ridge is None and D_used >= st.N - 1:
                notes.append(_degeneracy_message("features" if name is None else f"model {name!r}", D_used, st.N))
                warnings.warn(notes[-1], EMMSDegeneracyWarning, stacklevel=3)
            W = None
            if return_W:
                t_fit = torch.full_like(t[i], 1.0 / basis.K) if mode == "reference" else t[i]
                W = torch.zeros(st.D, basis.L, dtype=torch.float64)
                W[st.keep] = factor.solve(basis.mix(st.F, t_fit))
            results[name] = EMMSResult(
                score=score, t=t[i].clone(), mode=mode, iterations=int(its[i]), objective=f, n_samples=st.N,
                n_features=st.D, n_used_features=D_used, label_dim=basis.L, n_embedders=basis.K, ridge=ridge,
                solver=factor.method, W=W, warnings=notes)
    return ZooScores(results, failures)


def emms_score(features, label_embeddings, mode: str = "exact", ridge: float | None = None, *,
               return_W: bool = False, max_iter: int = 10_000, tol: float = 1e-12, dtype=None,
               chunk_size: int = 16384) -> EMMSResult:
    """EMMS transferability of one model: higher is better.

    Args:
        features: ``[N, D]`` torch tensor or numpy array (any float dtype, any strides), or an iterable of
            ``[n_i, D]`` chunks (streamed; O(D^2) memory).
        label_embeddings: F-labels: ``[N, L, K]``; a list of K arrays ``[N, L_k]`` (each standardized, then
            zero-padded to the widest); or ``ClassLabels(table, indices)`` / ``(table, indices)`` with
            ``table [C, L, K]`` class embeddings and ``indices [N]``. Dense labels whose rows take at most
            N/2 distinct values are detected and handled in the class basis automatically.
        mode: ``"exact"`` (the WLSR optimum), ``"alternating"`` (the paper's Algorithm 1 to convergence) or
            ``"reference"`` (the released code's single step and scaling).
        ridge: None for the paper's least squares; lambda > 0 to minimize ``||XW - Zt||^2 + lambda ||W||^2``
            (sklearn Ridge's alpha on the standardized features), which keeps D >= N models apart.
        return_W: also return the regression weights ``W [D, L]`` acting on the standardized features.
        max_iter, tol: stopping rule of ``mode="alternating"``.
        dtype: precision of the Gram (the GEMM): float32 or float64; default float64 for float64 features,
            float32 otherwise. Factorizations and the K x K solve are always float64.
        chunk_size: rows per chunk when ``features`` is in memory.
    """
    ridge = _check_options(mode, ridge, max_iter, tol)
    basis = prepare_labels(label_embeddings)
    return _score_zoo([(None, features)], basis, mode, ridge, return_W, max_iter, tol, dtype, chunk_size,
                      "raise")[None]


def emms_scores(zoo, label_embeddings, mode: str = "exact", ridge: float | None = None, *,
                return_W: bool = False, max_iter: int = 10_000, tol: float = 1e-12, dtype=None,
                chunk_size: int = 16384, errors: str = "raise") -> ZooScores:
    """EMMS for a zoo: ``zoo`` is a dict name -> features or a list of features (keys 0, 1, ...).

    The label statistics are computed once and shared; all K x K problems are solved in one op call.
    ``errors="skip"`` scores the remaining models when one has bad features and records the reason in
    ``result.failures``; ``"raise"`` (default) stops at the first bad model. Other arguments as
    ``emms_score``. Returns a ``ZooScores`` dict (name -> EMMSResult) with ``.scores`` and ``.order``.
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
    return _score_zoo(items, basis, mode, ridge, return_W, max_iter, tol, dtype, chunk_size, errors)
