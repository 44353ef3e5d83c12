"""Leave-one-fold-out scores of EMMS from the full data's statistics (docs/design.md §3), two routes.

**Downdates** (``exact``, ``alternating``, ``reference`` without a ridge: ``_Downdates``). Deleting the
``n_f`` samples of fold f from a least-squares fit changes its residual cross-products by a rank-``n_f``
downdate (the grouped deletion formula): with the hat matrix ``H`` of the features plus an intercept and the
full fit's residuals ``E = (I - H) U`` of the label basis ``U``, the residual Gram of a refit on the other
samples is ``E'E - E_f' (I - H_ff)^-1 E_f``. Every term comes from the batch's factor (factor.py): ``H_ff =
V'V + 1/N`` with ``V = half(X_f')`` the standardized left-out rows, ``E_f = U_f - u_mean - V'W`` with ``W =
half(F)``. A fold costs one triangular solve of its rows, O(n_f D^2) (all folds together: one pass over the
features) plus O(n_f^2 r + n_f^3), instead of a new Gram and factorization.

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

**Refits at the ridge** (``gcv``, ``loo``, and a fixed ridge or ``ridge="gcv"``: ``_Refits``). A ridge acts on the
subset's own z-scores, so the fit has no downdate; the statistics do: the subset's Gram and cross-product
are the full ones minus the fold's (Chan's merge backwards), re-standardized on the subset, and one
Cholesky factorization at the model's ridge gives its K x K problem. GCV's and LOO's ridge is the full data's
grid entry, held (the jackknife of the score at that choice: first-order the same, the score being a minimum
over the ridge). Equal to re-scored subsets where they choose the same entry. A stream's fold statistics come
from its per-fold accumulators (``ingest.stream_stats``), and every mode of a stream refits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..ops.operators import wlsr_simplex
from .factor import GCVFactor, GramFactor, single_precision
from .folds import fold_subsets, subset_labels
from .labels import LabelBasis, prepare_labels
from .linalg import cholesky, cross_product, symmetric_gram, triangular_solve
from .out_of_sample import OutOfSampleFactor, loo_criterion, loo_residual_gram
from .pipeline import Batch, ScoreOptions, degenerate_fits, strategy_for
from .stats import StandardizedStats, column_scales, fill_dropped

DOWNDATE_MODES = ("exact", "alternating", "reference")  # without a ridge: downdates
FOLD_STAT_MODES = (*DOWNDATE_MODES, "gcv", "loo")  # fold scores from the full data's statistics (with a ridge: refits)


@dataclass
class FoldLabels:
    """The label side of one leave-one-fold-out subset, shared by every model."""

    fold: int  # f: the fold left out
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
            out.append(FoldLabels(f, rows, sub, classes=P))
        else:
            Z, Zsub = basis.dense[keep], sub.dense
            Zc = Z - Z.mean(0)
            ss = (Zc * Zc).sum(0)
            scale = torch.where(ss > 0, (Zsub * Zc).sum(0) / ss.clamp_min(1e-300), torch.zeros_like(ss))
            out.append(FoldLabels(f, rows, sub, scale=scale))
    return out


class _Downdates:
    """One batch's full-data quantities the fold downdates share: ``W = half(F)`` [M, D, r], the residual
    Gram of the label basis, and the whitening of left-out rows at the Gram's precision (a float32 Gram's
    rounding already bounds the scores' accuracy; its rows are whitened in float32, twice as fast)."""

    def __init__(self, b: Batch, basis: LabelBasis, opts: ScoreOptions):
        self.b, self.st, self.basis, self.mode = b, b.st, basis.to(b.st.G.device), opts.mode
        self.W = b.factor.half(b.st.F)
        self.gram = self._residual_gram()
        single = single_precision(self.st)
        self.dtype = torch.float32 if single else torch.float64  # the rows, read at the Gram's precision
        # ... and whitened in the factor's (float32 unless a model needed the eigendecomposition)
        self.rows_dtype = torch.float32 if single and getattr(b.factor, "eig", None) is None else torch.float64
        self.W_rows = self.W.to(self.rows_dtype)  # meets the whitened rows

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
        return self.b.factor.half(xs.transpose(1, 2).to(self.rows_dtype))

    def fold(self, fl: FoldLabels):
        """(B' [M, K, K] of the refit without fold ``fl``, ok [M] bool: ``I - H_ff`` safely positive definite,
        finish): ``finish(t, obj, its)`` turns the fused solve's results into the subset's scores [M]."""
        R, ok = self._residual(fl)
        st, L, N_sub, reference = self.st, self.basis.L, self.st.N - fl.rows.numel(), self.mode == "reference"
        ok &= st.used_columns().to(ok.device) < N_sub - 1  # else the subset's fit is exact: re-scored

        def finish(t, obj, its):
            o = torch.where(degenerate_fits(replace(st, N=N_sub), obj, L), torch.zeros_like(obj), obj)
            return -o / N_sub * L if reference else -o / (N_sub * L)

        return fl.basis.A.to(R.device) - R, ok, finish

    def _residual(self, fl: FoldLabels) -> tuple[torch.Tensor, torch.Tensor]:
        """(``A' - B'`` [M, K, K]: the K x K residual matrix of the refit without fold ``fl``, ok [M] bool)."""
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
        E = (V.transpose(1, 2) @ self.W_rows).to(torch.float64).neg_()  # the full fit's residuals on the fold:
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


class _Refits:
    """One batch's refits on the leave-one-fold-out subsets at each model's ridge: none (a stream's in-sample
    modes), a fixed ridge, or the grid entry that ``ridge="gcv"`` / ``mode="gcv"`` / ``mode="loo"`` chose on
    the full data (jackknife of the score at that choice; docs/design.md §3). The subset's standardized
    statistics come from the full data's minus the fold's (a Gram of its ``n_f`` rows: all folds together
    cost one Gram), re-standardized on the subset as a re-scoring does; the factor at the ridge is one
    Cholesky factorization, no eigendecomposition. GCV models whose full fit needed the eigendecomposition (a
    numerically singular Gram), and subsets that lose a varying column or whose ridged Gram is not
    numerically positive definite, are left to the re-scoring path."""

    def __init__(self, b: Batch, basis: LabelBasis, opts: ScoreOptions):
        st, dev = b.st, b.st.G.device
        self.b, self.st, self.basis, self.opts = b, st, basis.to(dev), opts
        self.G = st.gram()  # read only: a GCV factor's st.G is the Gram itself
        self.dtype = torch.float32 if single_precision(st) else torch.float64
        self.gcv = opts.mode == "gcv" or opts.ridge == "gcv"
        M = len(b.names)
        # GCV's models whose full values came from the eigendecomposition (a numerically singular Gram) are
        # re-scored; LOO's all came from it, and its refit at the ridge agrees to rounding
        self.ok = b.factor.exact.clone() if self.gcv else torch.ones(M, dtype=torch.bool, device=dev)
        basis = self.basis
        self.usum = basis.counts if basis.is_vocabulary else basis.dense.sum(0)

    def _fold_parts(self, f: int, rows: torch.Tensor):
        """The fold's statistics in the full data's z-scores: (its mean zbar [M, D], its Gram about that mean
        [M, D, D] float64, ``Z_f'U_f`` [M, D, r], ``1'U_f`` [r]), from its rows (in-memory features, the Gram
        at the full Gram's precision) or from the stream's fold accumulator (``ingest.stream_stats``)."""
        st, basis, dev = self.st, self.basis, self.st.G.device
        if self.b.xs is None:  # a stream: the fold's raw statistics, accumulated in the single pass
            acc = self.b.fold_stats[f]
            zbar = (acc.mean - st.mean) * st.scale
            C = acc.comoment * st.scale[:, :, None] * st.scale[:, None, :]
            u_f = acc.usum
            return zbar, C, acc.centred_cross() * st.scale[:, :, None] + zbar[:, :, None] * u_f, u_f
        z = torch.stack([x.index_select(0, rows.to(x.device)).to(dev, torch.float64) for x in self.b.xs])
        z.sub_(st.mean[:, None]).mul_(st.scale[:, None])  # the fold's rows in the full data's z-scores
        zbar = z.sum(1) / max(z.shape[1], 1)  # [M, D] (0 for an empty fold)
        C = symmetric_gram((z - zbar[:, None]).to(self.dtype))
        if basis.is_vocabulary:  # U: one-hot classes
            cls = basis.classes[rows]
            cross = torch.zeros_like(st.F).index_add_(2, cls, z.transpose(1, 2))
            return zbar, C, cross, torch.bincount(cls, minlength=basis.r).to(torch.float64)
        # one thread per block: the same bits for any thread count
        return zbar, C, cross_product(z, basis.dense[rows]), basis.dense[rows].sum(0)

    def fold(self, fl: FoldLabels):
        """(B [M, K, K] of each model's refit without fold ``fl``, ok [M] bool, finish): ``finish(t, obj, its)``
        turns the fused solve's results into the subset's scores [M]."""
        st, basis, dev = self.st, self.basis, self.st.G.device
        N, rows = st.N, fl.rows.to(dev)
        n_f = rows.numel()
        N_s = N - n_f
        zbar, C, cross, u_f = self._fold_parts(fl.fold, rows)
        # Chan's merge backwards: the subset's co-moment is the full one minus the fold's (centred on its own
        # mean) minus the shift between the two means.
        G = self.G - C
        G.baddbmm_(zbar[:, :, None], zbar[:, None, :], alpha=-n_f * N / N_s)
        F = st.F - cross + (zbar * (n_f / N_s))[:, :, None] * (self.usum - u_f)
        # The subset's own z-scores (the statistics' rule, stats.column_scales), as factors on the full data's.
        keep, scale = st.keep, st.scale
        safe = torch.where(keep, scale, torch.ones_like(scale))
        std = torch.where(keep, G.diagonal(dim1=1, dim2=2).clamp_min(0).div(N_s).sqrt() / safe, 0.0)
        mean = st.mean - zbar * (n_f / N_s) / safe
        keep_sub, scale_sub = column_scales(std, mean, torch.finfo(self.dtype).eps)
        ok = self.ok & (keep_sub == keep).all(1)
        ratio = torch.where(keep_sub, scale_sub / safe, torch.ones_like(std))
        G.mul_(ratio[:, :, None]).mul_(ratio[:, None, :])
        fill_dropped(G, keep)
        F = F * ratio[:, :, None]
        F = F @ fl.classes.to(dev) if basis.is_vocabulary else F * fl.scale.to(dev)
        sub = fl.basis.to(dev)
        st_sub = StandardizedStats(N=N_s, D=st.D, keep=keep, G=G, F=F, eps=st.eps)
        if self.opts.mode == "loo":
            return self._loo(fl, st_sub, sub, mean, scale_sub, ok)
        if self.gcv:
            factor_cls = OutOfSampleFactor if self.opts.mode == "gcv" else GCVFactor
            grid = self.opts.ridge if self.opts.mode == "gcv" else None
            factor = factor_cls.at_grid_index(st_sub, sub, self.b.factor.best, grid)
            ok &= factor.pd
            B = factor.refine_at_choice(sub) if self.opts.mode == "gcv" else sub.B_from_half(factor.half(F))
        else:
            factor = GramFactor(st_sub, self.opts.ridge)
            B = sub.B_from_half(factor.half(F))
        factor.release()
        strategy, light = strategy_for(self.opts, sub), replace(st_sub, G=None, F=None)

        def finish(t, obj, its):
            return strategy.finish(factor, light, t, obj, its)[3]

        return B, ok, finish

    def _loo(self, fl: FoldLabels, st_sub: StandardizedStats, sub: LabelBasis, mean, scale, ok):
        """``mode="loo"``'s refit without fold ``fl`` at the full data's grid entry: the subset's leave-one-out
        residuals from the Cholesky factor of ``G' + lambda I`` (leverages ``1/N' + |L^-1 x_n|^2``, fits
        ``(L^-1 X')' L^-1 F'``), one pass over its rows — as ``LOOFactor`` does from the eigendecomposition."""
        dev, N_s = st_sub.G.device, st_sub.N
        factor = GCVFactor.at_grid_index(st_sub, sub, self.b.factor.best, self.opts.ridge)
        ok = ok & factor.pd
        kept = torch.ones(self.st.N, dtype=torch.bool, device=dev)
        kept[fl.rows.to(dev)] = False
        kept = torch.nonzero(kept).reshape(-1)
        x = torch.stack([t.index_select(0, kept.to(t.device)).to(dev, torch.float64) for t in self.b.xs])
        x.sub_(mean[:, None]).mul_(scale[:, None])  # the subset's rows in its own z-scores
        L = factor._factor()
        Wx = triangular_solve(L, x.transpose(1, 2), half=True)  # [M, D, N']
        lev = 1.0 / N_s + Wx.square().sum(1)  # [M, N']
        fit = Wx.transpose(1, 2) @ triangular_solve(L, st_sub.F, half=True)  # [M, N', r]
        gram, max_lev = loo_residual_gram(sub, fit, lev)
        factor.release()

        def finish(t, obj, its):
            return -loo_criterion(obj, max_lev.to(obj.device), N_s) / sub.L

        return sub.A - gram, ok, finish


def fold_scores(batches: list[Batch], basis: LabelBasis, folds: list[FoldLabels], opts: ScoreOptions) -> dict:
    """name -> ``[F]`` float64 leave-one-fold-out scores from the full data's statistics, for every model of
    ``batches`` they handle (in-memory, D x D statistics, see ``_Downdates`` and ``_Refits``): the in-sample
    modes without a ridge by downdates, ridges and ``mode="gcv"`` by refits at the model's ridge. One fused
    solve per fold for the whole zoo. The others are left out of the dict (re-scored by the caller)."""
    usable = [
        b
        for b in batches
        if (b.xs is not None or isinstance(b.fold_stats, list)) and b.st.back is None and b.st.mean is not None
    ]
    if not usable:
        return {}
    refit = opts.ridge is not None or opts.mode not in DOWNDATE_MODES
    # A stream's in-sample modes refit too (their downdates need the fold's rows): one Cholesky per fold.
    prepared = [(_Refits if refit or b.xs is None else _Downdates)(b, basis, opts) for b in usable]
    oks = [torch.ones(len(b.names), dtype=torch.bool, device=b.st.G.device) for b in usable]
    solve_dev = usable[0].st.G.device
    solver = "exact" if opts.mode not in DOWNDATE_MODES else opts.mode
    per_fold = []
    for fl in folds:
        Bs, finishers = [], []
        for i, d in enumerate(prepared):
            B, ok, finish = d.fold(fl)
            oks[i] &= ok
            Bs.append(B.to(solve_dev))
            finishers.append(finish)
        A = fl.basis.A.to(solve_dev)
        B = torch.where(torch.cat([o.to(solve_dev) for o in oks])[:, None, None], torch.cat(Bs), A)  # any finite B
        t, obj, its = wlsr_simplex(A, B, solver, opts.max_iter, opts.tol)
        scores, offset = [], 0
        for finish, b in zip(finishers, usable):
            sl = slice(offset, offset + len(b.names))
            offset = sl.stop
            dev = b.st.G.device
            scores.append(finish(t[sl].to(dev), obj[sl].to(dev), its[sl].to(dev)))
        per_fold.append(scores)
    out = {}
    for i, b in enumerate(usable):
        values = (torch.stack([s[i] for s in per_fold], 1) + 0.0).cpu()
        ok = oks[i].cpu().tolist()
        out.update({name: values[j] for j, name in enumerate(b.names) if ok[j]})
    return out
