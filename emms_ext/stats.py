"""Sufficient statistics of one model's features, accumulated over sample chunks.

For features X [N, D] and a task's label basis U [N, r] (labels.py) the score needs only the column
means, the centred Gram ``G = Xc' Xc [D, D]`` and the cross-product ``F = Xc' U [D, r]``: O(D^2 + D r)
memory whatever N. Chunks are merged with the pairwise co-moment update (Chan, Golub & LeVeque), each
chunk centred on its own mean before its Gram is formed, so features with large means keep their
precision even when the chunk Grams are computed in float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .labels import EPS_STD, LabelBasis


@dataclass
class StandardizedStats:
    """Statistics of the z-scored, non-constant feature columns, float64."""

    N: int
    D: int  # columns of the input
    keep: torch.Tensor  # [D] bool: columns that vary (constant ones standardize to 0 and drop out)
    G: torch.Tensor  # [D', D'] Gram of the standardized kept columns
    F: torch.Tensor  # [D', r] cross-product of the standardized kept columns with the label basis
    eps: float  # machine epsilon of the precision the Grams were formed in


def symmetric_gram(x: torch.Tensor, block: int = 512) -> torch.Tensor:
    """x' x for x [n, D] as float64 [D, D], computing only the blocks on and below the diagonal.

    torch exposes no SYRK; column blocks of ~512 give BLAS GEMMs big enough to run at full speed while
    skipping most of the upper triangle (4 blocks: 10 of 16 block products), then mirror it.
    """
    D = x.shape[1]
    nb = max(1, round(D / block))
    if nb == 1:
        return (x.T @ x).to(torch.float64)
    edges = [round(D * i / nb) for i in range(nb + 1)]
    G = torch.empty(D, D, dtype=torch.float64)
    for i in range(nb):
        rows = slice(edges[i], edges[i + 1])
        xi = x[:, rows]
        for j in range(i + 1):
            cols = slice(edges[j], edges[j + 1])
            blk = (xi.T @ x[:, cols]).to(torch.float64)
            G[rows, cols] = blk
            if i != j:
                G[cols, rows] = blk.T
    return G


class FeatureStats:
    """Streaming accumulator: ``update(chunk)`` for consecutive row blocks, then ``finalize()``."""

    def __init__(self, basis: LabelBasis, D: int, dtype: torch.dtype):
        self.basis, self.D, self.dtype = basis, D, dtype
        f64 = torch.float64
        self.n = 0
        self.mean = torch.zeros(D, dtype=f64)
        self.comoment = torch.zeros(D, D, dtype=f64)
        self.cross = torch.zeros(D, basis.r, dtype=f64)  # sum over chunks of (X_c - m_c)' U_c
        self.shift = None  # [D] first chunk's mean: reference point for the mean corrections below
        self.mean_cross = torch.zeros(D, basis.r, dtype=f64)  # sum_c (m_c - shift) u_c'
        self.usum = torch.zeros(basis.r, dtype=f64)  # column sums of U

    def update(self, x: torch.Tensor) -> None:
        """Add rows [n, n + len(x)) of the features; x [n_i, D] in the compute dtype, contiguous."""
        n_i = x.shape[0]
        if n_i == 0:
            return
        start, stop = self.n, self.n + n_i
        m_sub = x.mean(0)  # pairwise-summed in the compute dtype
        xc = x - m_sub
        # m_sub is rounded, so xc keeps a tiny mean r_c; it is measured and taken out of the Gram and the
        # cross-product below, so that both are centred on the chunk's exact mean m_c.
        r_c = xc.mean(0).to(torch.float64)
        m_c = m_sub.to(torch.float64) + r_c
        G_c = torch.addr(symmetric_gram(xc), r_c, r_c, alpha=-n_i)

        if self.basis.is_vocabulary:
            cls = self.basis.classes[start:stop]
            C = self.basis.r
            S = torch.zeros(C, self.D, dtype=x.dtype).index_add_(0, cls, xc)  # per-class sums [C, D]
            u_c = torch.bincount(cls, minlength=C).to(torch.float64)
            cross_c = S.T.to(torch.float64) - torch.outer(r_c, u_c)
        else:
            U = self.basis.basis_rows(start, stop, x.dtype)
            u_c = torch.sum(U, dim=0, dtype=torch.float64)
            cross_c = (xc.T @ U).to(torch.float64) - torch.outer(r_c, u_c)

        if self.shift is None:
            self.shift = m_c.clone()
        delta = m_c - self.mean
        n_new = self.n + n_i
        if self.n == 0:
            self.comoment = G_c
        else:
            self.comoment += G_c
            self.comoment.addr_(delta, delta, alpha=self.n * n_i / n_new)
        self.mean += delta * (n_i / n_new)
        self.cross += cross_c
        self.mean_cross += torch.outer(m_c - self.shift, u_c)
        self.usum += u_c
        self.n = n_new

    def finalize(self) -> StandardizedStats:
        """Centre the cross-product on the global mean, z-score, and drop constant columns."""
        # Xc'U = sum_c (X_c - m_c)'U_c + sum_c (m_c - mean) u_c'; the second sum is formed from differences
        # to `shift` so that large means cancel before, not after, they meet the label basis.
        F = self.cross + self.mean_cross - torch.outer(self.mean - self.shift, self.usum)
        var = self.comoment.diagonal().clamp_min(0) / self.n
        std = var.sqrt()
        eps = torch.finfo(self.dtype).eps
        keep = std > eps * self.mean.abs()  # variation above the rounding of the values themselves
        keep &= std > 0
        all_kept = bool(keep.all())
        scale = 1.0 / ((std if all_kept else std[keep]) + EPS_STD)
        G = self.comoment if all_kept else self.comoment[keep][:, keep]
        G = G * scale[:, None]
        G *= scale[None, :]  # only the lower triangle is read downstream (Cholesky / eigh)
        return StandardizedStats(N=self.n, D=self.D, keep=keep, G=G, F=(F if all_kept else F[keep]) * scale[:, None],
                                 eps=eps)
