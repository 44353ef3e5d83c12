"""Sufficient statistics of a batch of models' features (equal width D), accumulated over sample chunks.

For features X [N, D] and a task's label basis U [N, r] (labels.py) the score needs only the column
means, the centred Gram ``G = Xc' Xc [D, D]`` and the cross-product ``F = Xc' U [D, r]``: O(D^2 + D r)
memory whatever N. Chunks are merged with the pairwise co-moment update (Chan, Golub & LeVeque), each
chunk centred on its own mean before its Gram is formed, so features with large means keep their
precision even when the chunk Grams are computed in float32. Models of equal D are stacked into
[M, n, D] so that every GEMM is batched; everything runs on the features' device.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..common import workspace
from ..ops.operators import class_order, class_sums
from .labels import EPS_STD, LabelBasis
from .linalg import cross_product, eigh, symmetric_gram

_PER_MODEL = ("keep", "G", "G_diag", "F", "back", "used", "mean", "scale", "overflow")


@dataclass
class StandardizedStats:
    """Statistics of the z-scored feature columns of M models, float64.

    Columns that do not vary standardize to zero; they are kept in place (so that the models batch) with
    zero rows in F and a decoupled diagonal entry in G, which leaves every projection unchanged.
    """

    N: int
    D: int
    keep: torch.Tensor  # [M, D] bool: columns that vary
    G: torch.Tensor  # [M, D, D] Gram of the standardized columns
    F: torch.Tensor  # [M, D, r] cross-product of the standardized columns with the label basis
    eps: float  # machine epsilon of the precision the Grams were formed in
    # Kernel form (D > N, kernel_stats): the columns above are the model's principal components, at most
    # N of them; `back` [M, D, N] maps their regression weights to the standardized features' and
    # `used` [M] counts the features' varying columns.
    back: torch.Tensor | None = None
    used: torch.Tensor | None = None
    # The column means [M, D] and the factors [M, D] (0 for dropped columns) that standardize the features:
    # row x becomes (x - mean) * scale (core/jackknife.py standardizes left-out rows with them).
    mean: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    # [M] bool: the features overflowed the Gram's dtype or were not finite (FeatureStats); such a model's
    # statistics are meaningless and the caller re-checks its features for the error message.
    overflow: torch.Tensor | None = None
    # [M, D] set when a Cholesky factorization (factor.py) overwrote G's lower triangle in place: G's strict
    # upper triangle and this diagonal still hold the Gram, and ``gram()`` rebuilds it.
    G_diag: torch.Tensor | None = None

    def gram(self) -> torch.Tensor:
        """The Gram [M, D, D]: ``G`` itself, or, once factored in place, a new tensor rebuilt from G's strict
        upper triangle and ``G_diag``."""
        return self.G if self.G_diag is None else gram_from_upper(self.G, self.G_diag)

    def rows(self, keep: torch.Tensor) -> StandardizedStats:
        """The statistics of the models ``keep [M]`` (bool) of the batch."""
        pick = {f: None if getattr(self, f) is None else getattr(self, f)[keep] for f in _PER_MODEL}
        return StandardizedStats(N=self.N, D=self.D, eps=self.eps, **pick)

    def used_columns(self) -> torch.Tensor:
        """[M] varying feature columns of each model."""
        return self.used if self.used is not None else self.keep.sum(1)


def standardize(x: torch.Tensor, eps: float, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(z-scored columns, keep [M, 1, D]) of x [M, N, D] float64, the released code's z-score. Columns
    varying less than the rounding (eps) of their values become zero; `keep` overrides that choice (so
    that a second pass agrees with the statistics of the first)."""
    mean = x.mean(1, keepdim=True)
    std = (x - mean).pow(2).mean(1, keepdim=True).sqrt()
    if keep is None:
        keep = column_scales(std, mean, eps)[0]
    return torch.where(keep, (x - mean) / (std + EPS_STD), torch.zeros_like(x)), keep


def kernel_gram(xs: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(standardized features [M, N, D], varying columns [M], kernel X_s X_s' [M, N, N]) of M in-memory models,
    float64 (N is small where the kernel form is used)."""
    x = torch.stack([t.to(device, torch.float64) for t in xs])  # [M, N, D]
    xs_std, keep_cols = standardize(x, torch.finfo(torch.float64).eps)
    return xs_std, keep_cols.sum((1, 2)), xs_std @ xs_std.transpose(1, 2)


def kernel_stats(
    xs: list[torch.Tensor], basis: LabelBasis, device, gram: tuple[torch.Tensor, ...] | None = None
) -> StandardizedStats:
    """Statistics of M in-memory models with more columns than samples (D > N), in the N x N kernel form.

    Only the column space of the standardized features matters, and with ridge also their singular
    values: X_s = U S V' can be replaced by its principal components U S (N x rank) without changing any
    least-squares or ridge fit. So the work is one N x N Gram X_s X_s' per model (N^2 D) and its
    eigendecomposition (N^3) instead of a D x D Gram (N D^2) and a D x D factorization (D^3).
    Float64 throughout (N is small here). ``gram``: ``kernel_gram(xs, device)`` when already computed.
    """
    xs_std, used, K = kernel_gram(xs, device) if gram is None else gram
    M, N, D = xs_std.shape
    eps64 = torch.finfo(torch.float64).eps
    e, Uk = eigh(K)  # [M, N], [M, N, N]
    keep = e > eps64 * max(N, D) * e.amax(1, keepdim=True).clamp_min(1e-300)
    root = torch.where(keep, e.clamp_min(0).sqrt(), torch.zeros_like(e))
    comps = Uk * root[:, None, :]  # principal components U S [M, N, N] (columns orthogonal, centred)
    if basis.is_vocabulary:
        order, offsets = class_order(basis.classes.to(device), basis.r)
        F = class_sums(comps, order, offsets).transpose(1, 2)  # [M, N, C]
    else:
        F = comps.transpose(1, 2) @ basis.dense.to(device)  # [M, N, K*L]
    fill = e.amax(1, keepdim=True).clamp_min(1.0).expand_as(e)
    G = torch.diag_embed(torch.where(keep, e, fill))  # dropped directions: decoupled, F rows zero
    inv_root = torch.where(keep, 1.0 / root.clamp_min(1e-300), torch.zeros_like(root))
    back = xs_std.transpose(1, 2) @ (Uk * inv_root[:, None, :])  # [M, D, N]: V = X_s' U S^-1
    return StandardizedStats(N=N, D=D, keep=keep, G=G, F=F * keep[:, :, None], eps=eps64, back=back, used=used)


def gram_from_upper(G: torch.Tensor, diag: torch.Tensor) -> torch.Tensor:
    """The symmetric matrix [M, D, D] whose strict upper triangle is G's and whose diagonal is ``diag [M, D]``
    (a Gram whose lower triangle a Cholesky factorization overwrote in place)."""
    upper = G.triu(1)
    return upper + upper.transpose(1, 2) + torch.diag_embed(diag)


def column_scales(std: torch.Tensor, mean: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep [M, D] bool, scale [M, D]) of columns with population std and mean [M, D]: a column varies when
    its std is above the rounding (eps) of its values, and z-scores as ``(x - mean) * scale`` with the
    released code's ``scale = 1 / (std + 1e-8)`` (0 for the others)."""
    keep = (std > eps * mean.abs()) & (std > 0)
    return keep, torch.where(keep, 1.0 / (std + EPS_STD), torch.zeros_like(std))


def fill_dropped(G: torch.Tensor, keep: torch.Tensor) -> None:
    """Set the diagonal of G [M, D, D] at the dropped columns (keep [M, D] False) in place to the largest kept
    one (at least 1): decoupled unit directions scaled like the rest (so Cholesky's pivots stay comparable);
    their F rows are zero, so they add nothing to any projection."""
    diag = G.diagonal(dim1=1, dim2=2)
    fill = torch.where(keep, diag, torch.zeros_like(diag)).amax(1, keepdim=True).clamp_min(1.0)
    diag.copy_(torch.where(keep, diag, fill.expand_as(diag)))


@functools.lru_cache(maxsize=64)
def shift_rows(n: int, device: torch.device, k: int = 512) -> torch.Tensor:
    """[min(n, k)] int64 on ``device``: the rows of an n-row chunk whose mean centres it
    (``FeatureStats.update``), in order: all of them up to k, else k drawn without replacement by a fixed
    generator (the same every run). Kept per device: a GPU gets them copied once, not once per chunk."""
    if n <= k:
        return torch.arange(n, device=device)
    return torch.randperm(n, generator=torch.Generator().manual_seed(n))[:k].sort().values.to(device)


class FeatureStats:
    """Streaming accumulator for M models: ``update(x [M, n_i, D])`` for consecutive row blocks, then
    ``finalize()`` (once: it scales the co-moment in place)."""

    def __init__(self, basis: LabelBasis, M: int, D: int, dtype: torch.dtype, device=None):
        self.basis, self.M, self.D, self.dtype = basis, M, D, dtype
        kw = dict(dtype=torch.float64, device=device)
        self.n = 0
        self.mean = torch.zeros(M, D, **kw)
        self.comoment = None  # [M, D, D]
        self.cross = torch.zeros(M, D, basis.r, **kw)  # sum over chunks of (X_c - m_c)' U_c
        self.shift = None  # [M, D] first chunk's mean: reference point for the mean corrections below
        self.mean_cross = torch.zeros(M, D, basis.r, **kw)  # sum_c (m_c - shift) u_c'
        self.usum = torch.zeros(basis.r, **kw)  # column sums of U (shared by the models)
        # [M] bool: a chunk's Gram overflowed the compute dtype or met a non-finite value (checked by the
        # caller once per batch, so that a bad model costs no host sync per model)
        self.overflow = torch.zeros(M, dtype=torch.bool, device=device)

    def update(
        self,
        x: torch.Tensor | list[torch.Tensor],
        repeats: torch.Tensor | None = None,
        samples: torch.Tensor | None = None,
    ) -> None:
        """Add rows [n, n + n_i) of every model's features; x [M, n_i, D] (or a list of M [n_i, D]) in the
        compute dtype, on the statistics' device. ``samples [n_i]`` (int64): the samples x holds instead, in
        any order (one fold's rows of a stream, jackknife.py); their labels are the basis's rows ``samples``.

        repeats [n_i] (int64, dense label bases only): x holds samples and sample j stands for repeats[j]
        consecutive label rows, as if repeated (several texts per sample, docs/design.md §2): the
        statistics are then weighted, with no repeated copy of the features.
        """
        rows = list(x)  # M tensors [n_i, D] (views, for a stacked x)
        n_rows = rows[0].shape[0]
        n_i = n_rows if repeats is None else int(repeats.sum())
        if n_i == 0:
            return
        start, stop = self.n, self.n + n_i
        at = slice(start, stop) if samples is None else samples.to(self.basis.A.device)
        if repeats is None:
            # The stacked batch and the centred copy are one and the same write: each model's rows are centred
            # straight into their slot of one buffer (kept between chunks, batches and calls: workspace.py), so
            # the features are copied once per chunk.
            # The shift m_sub need not be the mean, only near it: the mean of 512 rows drawn at random (fixed:
            # shift_rows) costs no pass over the features. xc keeps a mean r_c (~ std / sqrt(512)); it is
            # measured exactly (from the class sums where there are classes, else one pass over xc) and taken out
            # of the Gram and the cross-product below, so that both are centred on the chunk's mean m_c; the
            # Gram of xc loses nothing to it (its rounding grows by a factor 1 + |r_c|^2 / var ~ 1 + 1 / 512).
            # Drawn, not evenly spaced: rows in a period dividing the spacing would all be seen in one phase.
            pick = shift_rows(n_rows, rows[0].device)
            m_sub = torch.stack([r.index_select(0, pick).mean(0, keepdim=True) for r in rows])  # [M, 1, D]
            xc = workspace.empty((len(rows), n_rows, self.D), m_sub.dtype, m_sub.device)
            for i, r in enumerate(rows):
                torch.sub(r, m_sub[i], out=xc[i])
            r_c = None if self.basis.is_vocabulary else xc.mean(1).to(torch.float64)  # [M, D]
            G_c = symmetric_gram(xc)
        else:
            x = torch.stack(rows)
            w = repeats.to(x.device, x.dtype)
            m_sub = (w @ x)[:, None] / n_i  # the weighted mean [M, 1, D]
            xc = x - m_sub
            r_c = ((w @ xc) / n_i).to(torch.float64)
            G_c = symmetric_gram(xc * w.sqrt()[:, None])  # sum_j w_j xc_j xc_j'
        if repeats is not None:
            if self.basis.is_vocabulary:
                raise ValueError("repeated rows need a dense label basis")
            U = self.basis.dense[at].to(xc.dtype)
            owner = torch.repeat_interleave(torch.arange(xc.shape[1], device=U.device), repeats.to(U.device))
            U_s = torch.zeros(xc.shape[1], U.shape[1], dtype=U.dtype, device=U.device).index_add_(0, owner, U)
            u_c = torch.sum(U, dim=0, dtype=torch.float64)
            cross_c = cross_product(xc, U_s)  # sum over a sample's rows, then one GEMM
        elif self.basis.is_vocabulary:
            cls = self.basis.classes[at]
            C = self.basis.r
            order, offsets = class_order(cls, C)
            S = class_sums(xc, order, offsets)  # [M, C, D]: the F = X'Y shortcut, no one-hot GEMM
            u_c = (offsets[1:] - offsets[:-1]).to(torch.float64)
            cross_c = S.transpose(1, 2).to(torch.float64)
            r_c = cross_c.sum(2) / n_i  # every row in one class: the class sums add up to the column sums
        else:
            U = self.basis.dense[at].to(xc.dtype)
            u_c = torch.sum(U, dim=0, dtype=torch.float64)
            cross_c = cross_product(xc, U)
        cross_c -= r_c[:, :, None] * u_c[None, None, :]
        # Non-finite or overflowing features show in the chunk Gram's diagonal (a centred square sum bounds
        # every product and partial sum of its column; a NaN or an infinity anywhere in a column makes it NaN
        # or infinite) and in the mean: no separate pass over the features. A quarter of the dtype's range
        # leaves room for the GEMM's rounding.
        dg = G_c.diagonal(dim1=-2, dim2=-1)
        self.overflow |= ~((dg <= torch.finfo(xc.dtype).max / 4).all(1) & torch.isfinite(m_sub[:, 0]).all(1))
        m_c = m_sub[:, 0].to(torch.float64) + r_c
        G_c.baddbmm_(r_c[:, :, None], r_c[:, None, :], alpha=-n_i)

        if self.shift is None:
            self.shift = m_c.clone()
        delta = m_c - self.mean
        n_new = self.n + n_i
        if self.comoment is None:
            self.comoment = G_c
        else:
            self.comoment += G_c
            self.comoment.baddbmm_(delta[:, :, None], delta[:, None, :], alpha=self.n * n_i / n_new)
        self.mean += delta * (n_i / n_new)
        self.cross += cross_c
        self.mean_cross += (m_c - self.shift)[:, :, None] * u_c[None, None, :]
        self.usum += u_c
        self.n = n_new

    def centred_cross(self) -> torch.Tensor:
        """``Xc'U`` [M, D, r] float64, the rows centred on their mean (not scaled)."""
        # Xc'U = sum_c (X_c - m_c)'U_c + sum_c (m_c - mean) u_c'; the second sum is formed from differences
        # to `shift` so that large means cancel before, not after, they meet the label basis.
        return self.cross + self.mean_cross - (self.mean - self.shift)[:, :, None] * self.usum[None, None, :]

    def finalize(self) -> StandardizedStats:
        """Centre the cross-product on the global mean and z-score the columns."""
        F = self.centred_cross()
        var = self.comoment.diagonal(dim1=1, dim2=2).clamp_min(0) / self.n  # [M, D]
        eps = torch.finfo(self.dtype).eps
        keep, scale = column_scales(var.sqrt(), self.mean, eps)
        # In place: a fresh D x D copy would cost a pass and its page faults (the accumulator is done).
        G, self.comoment = self.comoment, None
        G *= scale[:, :, None]
        G *= scale[:, None, :]
        fill_dropped(G, keep)
        return StandardizedStats(
            N=self.n,
            D=self.D,
            keep=keep,
            G=G,
            F=F * scale[:, :, None],
            eps=eps,
            mean=self.mean,
            scale=scale,
            overflow=self.overflow,
        )
