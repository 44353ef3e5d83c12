"""Leave-one-fold-out scores of the in-sample EMMS modes from the full data's statistics (docs/design.md §3).

Deleting the ``n_f`` samples of fold f from a least-squares fit changes its residual cross-products by a
rank-``n_f`` downdate (the grouped deletion formula): with the hat matrix ``H`` of the features plus an
intercept and the full fit's residuals ``E = (I - H) U`` of the label basis ``U``, the residual Gram of a
refit on the other samples is ``E'E - E_f' (I - H_ff)^-1 E_f``. Every term comes from the batch's factor
(factor.py): ``H_ff = V'V + 1/N`` with ``V = half(X_f')`` the standardized left-out rows, ``E_f = U_f - u_mean
- V'W`` with ``W = half(F)``. A fold costs one triangular solve of its rows, O(n_f D^2) (all folds together:
one pass over the features) plus O(n_f^2 r + n_f^3), instead of a new Gram and factorization.

What a re-scoring of the subset would change besides the fit, and why it is still exact here:
* the features' z-score on the subset: column scalings change no unregularized fit, and the new means are
  the intercept's;
* the labels' z-score on the subset (re-done per fold, exactly as a re-scoring does, and shared by the zoo):
  per column an affine map of the full data's standardized labels; the intercept absorbs the shift, a
  factor per label column the scale (dense labels), or the subset's class table replaces the full one
  (class labels: their residuals are ``(I - H) U R``, U the one-hot classes).
So the fold scores equal re-scored subsets (tested to 1e-10). A model whose fit loses rank when a fold is
left out (``I - H_ff`` numerically singular: a feature varying only inside the fold, or as many varying
columns as the subset has samples) is left to the re-scoring path (``score._add_jackknife``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..ops.operators import wlsr_simplex
from .folds import fold_subsets, subset_labels
from .labels import LabelBasis, prepare_labels
from .linalg import cholesky, triangular_solve
from .pipeline import Batch, ScoreOptions, degenerate_fits

DOWNDATE_MODES = ("exact", "alternating", "reference")


@dataclass
class FoldLabels:
    """The label side of one leave-one-fold-out subset, shared by every model."""

    rows: torch.Tensor  # [n_f] int64 the left-out samples
    basis: LabelBasis  # the subset's labels, standardized on the subset (what a re-scoring builds)
    classes: torch.Tensor | None = None  # [C, C'] 0/1: full-basis class c is part of subset class c' (vocabulary)
    scale: torch.Tensor | None = None  # [K*L] subset column = shift + scale * full column (dense labels)


def fold_labels(label_embeddings, basis: LabelBasis, fold_of: torch.Tensor) -> list[FoldLabels] | None:
    """The F folds' label sides, or None when a subset's labels do not map onto the full basis (a class
    basis on one side and a dense one on the other): then only re-scoring applies."""
    out = []
    for f, keep in enumerate(fold_subsets(fold_of)):
        sub = prepare_labels(subset_labels(label_embeddings, keep), pairs=False)
        if sub.is_vocabulary != basis.is_vocabulary or sub.rows_per_sample is not None:
            return None
        rows = torch.nonzero(fold_of == f).reshape(-1)
        if basis.is_vocabulary:
            # Each class of the full basis present in the subset is (part of) one subset class: detected
            # classes may come split in two (labels.py), and a subset's one-hot column is then the sum of
            # the full basis's columns, its residual Gram the sum of their blocks.
            P = torch.zeros(basis.r, sub.r, dtype=torch.float64)
            P[basis.classes[keep], sub.classes] = 1.0
            if bool((P.sum(1) > 1).any()):
                return None
            out.append(FoldLabels(rows, sub, classes=P))
        else:
            Z, Zsub = basis.dense[keep], sub.dense
            Zc = Z - Z.mean(0)
            ss = (Zc * Zc).sum(0)
            scale = torch.where(ss > 0, (Zsub * Zc).sum(0) / ss.clamp_min(1e-300), torch.zeros_like(ss))
            out.append(FoldLabels(rows, sub, scale=scale))
    return out


class _Downdates:
    """One batch's full-data quantities the fold downdates share: ``W = half(F)`` [M, D, r], the residual
    Gram of the label basis, and the whitening of left-out rows at the Gram's precision (a float32 Gram's
    rounding already bounds the scores' accuracy; its rows are whitened in float32, twice as fast)."""

    def __init__(self, b: Batch, basis: LabelBasis):
        self.b, self.st, self.basis = b, b.st, basis.to(b.st.G.device)
        self.W = b.factor.half(b.st.F)
        self.gram = self._residual_gram()
        f64 = self.st.eps <= torch.finfo(torch.float64).eps
        self.dtype = torch.float64 if f64 else torch.float32
        eig = getattr(b.factor, "eig", None) is not None
        self.L = None if eig or f64 else b.factor.L.to(torch.float32)

    def _residual_gram(self) -> torch.Tensor:
        """The full fit's residual Gram of the label basis: ``[M, C, C]`` for class labels, or its per-label-
        column entries ``[M, K, K, L]`` for dense ones (the subset's column scales act per column)."""
        N, basis, W = self.st.N, self.basis, self.W
        if basis.is_vocabulary:
            counts = basis.counts
            return torch.diag(counts) - counts[:, None] * counts[None, :] / N - W.transpose(1, 2) @ W
        Z = basis.dense.reshape(N, basis.K, basis.L)
        zbar = Z.mean(0)
        Wb = W.reshape(*W.shape[:2], basis.K, basis.L)
        ZZ = torch.einsum("nkj,nlj->klj", Z, Z) - N * zbar[:, None, :] * zbar[None, :, :]
        return ZZ[None] - torch.einsum("mdkj,mdlj->mklj", Wb, Wb)

    def _whiten(self, xs: torch.Tensor) -> torch.Tensor:
        """``V = half(X_f')`` [M, D, n_f] for standardized rows xs [M, n_f, D] (V'V = X_f G^+ X_f')."""
        if self.L is None:
            return self.b.factor.half(xs.transpose(1, 2).to(torch.float64))
        return triangular_solve(self.L, xs.transpose(1, 2), half=True)

    def fold(self, fl: FoldLabels) -> tuple[torch.Tensor, torch.Tensor]:
        """(``A' - B'`` [M, K, K]: the K x K residual matrix of the refit without fold ``fl``, ok [M] bool:
        ``I - H_ff`` safely positive definite)."""
        st, basis, dev = self.st, self.basis, self.st.G.device
        N, M = st.N, len(self.b.names)
        rows = fl.rows.to(dev)
        xf = torch.stack([x.index_select(0, rows.to(x.device)).to(dev, self.dtype) for x in self.b.xs])
        V = self._whiten(xf.sub_(st.mean[:, None].to(self.dtype)).mul_(st.scale[:, None].to(self.dtype)))
        n_f = V.shape[2]
        IH = (V.transpose(1, 2) @ V).to(torch.float64).neg_().sub_(1.0 / N)  # I - H_ff, H with the intercept
        IH.diagonal(dim1=1, dim2=2).add_(1.0)
        Lc, info = cholesky(IH)
        # I - H_ff has eigenvalues in [0, 1]; one at the Gram's rounding level means the subset lost rank.
        ok = (info == 0) & (Lc.diagonal(dim1=1, dim2=2).amin(1) ** 2 > st.eps**0.5)
        if not bool(ok.all()):
            Lc = torch.where(ok[:, None, None], Lc, torch.eye(n_f, dtype=torch.float64, device=dev))
        E = (V.transpose(1, 2).to(torch.float64) @ self.W).neg_()  # the full fit's residuals on the fold:
        if basis.is_vocabulary:  # E_f = U_f - u_mean - V'W, U_f the one-hot classes of the fold
            E[:, torch.arange(n_f, device=dev), basis.classes[rows]] += 1.0
            E -= basis.counts / N
        else:
            E += basis.dense[rows] - basis.dense.mean(0)
        Y = triangular_solve(Lc, E, half=True)  # E_f'(I - H_ff)^-1 E_f = Y'Y
        sub = fl.basis.to(dev)
        if basis.is_vocabulary:
            P = fl.classes.to(dev)
            return sub.B_from_class_gram(P.T @ (self.gram - Y.transpose(1, 2) @ Y) @ P), ok
        Yb = Y.reshape(M, n_f, basis.K, basis.L)
        s = fl.scale.to(dev).reshape(basis.K, basis.L)
        R = torch.einsum("mklj,kj,lj->mkl", self.gram - torch.einsum("mnkj,mnlj->mklj", Yb, Yb), s, s)
        return (R + R.transpose(1, 2)) / 2, ok


def downdated_fold_scores(batches: list[Batch], basis: LabelBasis, folds: list[FoldLabels], opts: ScoreOptions) -> dict:
    """name -> ``[F]`` float64 leave-one-fold-out scores, for every model of ``batches`` the downdates
    handle (in-memory, D x D statistics, no fold loses rank); the others are left out of the dict."""
    usable = [b for b in batches if b.xs is not None and b.st.back is None and b.st.mean is not None]
    if not usable:
        return {}
    prepared = [_Downdates(b, basis) for b in usable]
    oks = [torch.ones(len(b.names), dtype=torch.bool, device=b.st.G.device) for b in usable]
    solve_dev = usable[0].st.G.device
    per_fold = []
    for fl in folds:
        N_sub = basis.N - fl.rows.numel()
        Bs = []
        for i, (b, d) in enumerate(zip(usable, prepared)):
            R, ok = d.fold(fl)
            oks[i] &= ok & (b.st.used_columns().to(ok.device) < N_sub - 1)
            Bs.append((fl.basis.A.to(R.device) - R).to(solve_dev))
        A = fl.basis.A.to(solve_dev)
        B = torch.cat(Bs)
        B = torch.where(torch.cat([o.to(solve_dev) for o in oks])[:, None, None], B, A)  # the rest: any finite B
        _, obj, _ = wlsr_simplex(A, B, opts.mode, opts.max_iter, opts.tol)
        per_fold.append((N_sub, obj))
    out, offset = {}, 0
    L = basis.L
    for i, b in enumerate(usable):
        M = len(b.names)
        scores = []
        for N_sub, obj in per_fold:
            o = obj[offset : offset + M].to(b.st.G.device)
            o = torch.where(degenerate_fits(replace(b.st, N=N_sub), o, L), torch.zeros_like(o), o)
            scores.append(-o / N_sub * L if opts.mode == "reference" else -o / (N_sub * L))
        values, ok = (torch.stack(scores, 1) + 0.0).cpu(), oks[i].cpu().tolist()
        out.update({name: values[j] for j, name in enumerate(b.names) if ok[j]})
        offset += M
    return out
