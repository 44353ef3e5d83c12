"""Inverting each model's standardized Gram: the only per-model linear algebra after the GEMMs.

Every factorization of a batch of M models implements ``Factor`` (below), the interface the pipeline
(pipeline.py) relies on. ``GramFactor``: (G + ridge I)^+ by batched Cholesky, with an eigendecomposition for
numerically singular Grams. ``GCVFactor``: a ridge chosen per model by generalized cross-validation, from one
eigendecomposition (docs/design.md §2: with G = V diag(e) V', every ridge of a grid costs only D K^2).
The out-of-sample modes extend ``GCVFactor`` to ``OutOfSampleFactor`` (out_of_sample.py).
"""

from __future__ import annotations

from typing import Protocol

import torch

from ..common import workspace
from ..ops.operators import tridiagonal_solve
from .labels import LabelBasis
from .linalg import (
    cholesky,
    eigh,
    inverse_trace,
    triangular_solve,
    tridiagonal_eigvalsh,
    tridiagonalize,
)
from .stats import StandardizedStats, gram_from_upper

# With precision=None, a model whose float32-formed Gram has eps32 * cond(G) above this is recomputed in
# float64 (in-memory features; streamed ones are warned about). 1e-3 keeps float32 for well-conditioned
# features (cond up to ~1e4), where its error in the score stays far below differences between models.
FLOAT32_TRUST = 1e-3
_GRID_CHUNK = 1 << 22  # float64 entries of ridge solves (ridges x D x r) held at once by the tridiagonal grid


def single_precision(st: StandardizedStats) -> bool:
    """Whether st's Gram was formed in float32: then its Cholesky factorizations and triangular solves, and
    gcv's tridiagonal reduction, run in float32 too — their backward error (~eps32 ||G||) is of the order of
    the Gram's own rounding, at half the float64 time (docs/design.md §6)."""
    return st.eps > torch.finfo(torch.float64).eps


class Factor(Protocol):
    """The factorization of M models' standardized Grams ``G [M, D, D]`` (plus a ridge), as the pipeline
    uses it. ``D`` is the width of the statistics (features, or principal components in the kernel form)."""

    methods: list[str]  # [M] how each Gram was inverted ("cholesky", "eigh", "gcv", "loo", "none")
    cond: torch.Tensor  # [M] condition estimate of each (ridged) Gram

    def ill_conditioned(self, eps: float) -> torch.Tensor:
        """[M] bool: models whose Gram, formed with rounding ``eps``, is too ill-conditioned to trust."""
        ...

    def half(self, F: torch.Tensor) -> torch.Tensor:
        """``F [M, D, r]`` -> ``W [M, D, r]`` with ``W'W = F'(G + ridge I)^-1 F``; ``LabelBasis.B_from_half``
        turns it into the K x K matrix B."""
        ...

    def solve(self, Y: torch.Tensor) -> torch.Tensor:
        """``(G + ridge I)^-1 Y`` for ``Y [M, D, c]`` (the regression weights)."""
        ...

    def ridges(self) -> list:
        """[M] the ridge each model used (None for the paper's least squares)."""
        ...

    def extras(self, i: int) -> dict:
        """Fields of model i's ``EMMSResult`` that only this factorization fills (e.g. ``gcv``, ``df``)."""
        ...

    def release(self) -> None:
        """Drop the D x D factors once B is formed (``half`` and ``solve`` are then unavailable)."""
        ...


def kernel_exact_fit(K: torch.Tensor, D: int) -> torch.Tensor:
    """[M] bool: kernels K [M, N, N] of centred features whose eigenvalues (but the centring's null one) all
    lie surely above ``kernel_stats``'s rank cutoff, so the features have numerical rank N - 1 and least
    squares fits any labels exactly — decided without the eigendecomposition (docs/design.md §3).

    K + c 11'/N (c = tr K / N) moves the null direction to c and leaves the other eigenvalues. Its Cholesky
    factor L gives ``lambda_min >= 1 / ||L^-1||_F^2`` (= 1 / tr(K + c 11'/N)^-1); with the cutoff bounded from
    above by ``eps * max(N, D) * tr K`` (>= its ``* lambda_max``), a bound 4x above that cutoff cannot fall under
    it by eigh's rounding. False is only "not sure": such models go through the eigendecomposition."""
    M, N = K.shape[0], K.shape[1]
    if N < 2:
        return torch.zeros(M, dtype=torch.bool, device=K.device)
    tr = K.diagonal(dim1=1, dim2=2).sum(1)  # [M]
    A = K + (tr / N / N)[:, None, None]
    L, info = cholesky(A)
    inv_trace = inverse_trace(L)
    cutoff = torch.finfo(torch.float64).eps * max(N, D) * tr
    ok = (info == 0) & (tr > 0)
    return ok & (torch.where(ok, 1.0 / inv_trace, torch.zeros_like(tr)) > 4 * cutoff)


class GramFactor:
    """(G + ridge I)^+ of M models' standardized Grams [M, D, D], as ``half(F)`` (W with F'G^+F = W'W) and
    ``solve(Y)``.

    Batched Cholesky where a Gram is numerically positive definite (the fast path: D^3/3); the others
    (rank-deficient features) get an eigendecomposition keeping eigenvalues above ``max_eig * eps * D``
    (eps of the precision the Gram was formed in): a relative cutoff, never an absolute one.
    """

    def __init__(self, st: StandardizedStats, ridge: float | None):
        self.ridge = ridge
        G = st.gram()
        D = G.shape[1]
        if ridge:
            G = G + ridge * torch.eye(D, dtype=G.dtype, device=G.device)
        diag = G.diagonal(dim1=1, dim2=2).clone()
        # In the Gram's precision (single_precision); the same pivot test decides which models go to the
        # eigendecomposition.
        L, info = cholesky(workspace.converted(G, torch.float32) if single_precision(st) else G)
        if L is st.G:  # st's Gram became the factor: st.gram() rebuilds it from the upper triangle
            st.G_diag = diag
        tol = st.eps * D * diag.amax(1)
        piv = L.diagonal(dim1=1, dim2=2).to(torch.float64) ** 2
        ok = (info == 0) & (piv.amin(1) > tol)
        self.L, self.ok = L, ok
        self.eig = None
        if not bool(ok.all()):
            # Factored in place, the Gram is its untouched upper triangle and diagonal.
            G = gram_from_upper(G[~ok], diag[~ok]) if L is G else G[~ok]
            e, V = eigh(G)
            cut = 0.0 if ridge else st.eps * D * e.amax(1, keepdim=True)
            self.eig = (V, torch.where(e > cut, 1.0 / e, torch.zeros_like(e)))
        # One list per batch, not a conversion per model (each is a host sync on CUDA).
        used, ok_list = st.keep.sum(1).tolist(), ok.tolist()
        self.methods = ["none" if u == 0 else ("cholesky" if k else "eigh") for u, k in zip(used, ok_list)]
        # Condition estimate per model (a lower bound: the squared pivots lie inside the spectrum), used to
        # decide whether a float32 Gram was accurate enough. A Gram that needed the eigendecomposition is
        # numerically singular at its precision: infinite here, so float32 ones are redone in float64.
        self.cond = torch.where(
            ok, piv.amax(1) / piv.amin(1).clamp_min(1e-300), torch.full_like(piv[:, 0], float("inf"))
        )

    def ill_conditioned(self, eps: float) -> torch.Tensor:
        """[M] bool: models whose Gram, formed with rounding eps, is too ill-conditioned to trust (the
        relative error of B grows like eps * cond(G))."""
        return eps * self.cond > FLOAT32_TRUST

    def rows(self, keep: torch.Tensor) -> GramFactor:
        """The factor of the models ``keep [M]`` (bool): their factors as computed, not factored again (the
        Grams were overwritten in place; a rebuilt Gram could round differently from the original)."""
        out = object.__new__(GramFactor)
        out.ridge, out.L, out.ok, out.cond = self.ridge, self.L[keep], self.ok[keep], self.cond[keep]
        out.methods = [m for m, k in zip(self.methods, keep.tolist()) if k]
        out.eig = None
        if self.eig is not None and not bool(out.ok.all()):
            V, inv = self.eig
            sub = keep[~self.ok]
            out.eig = (V[sub], inv[sub])
        return out

    def _apply(self, Y: torch.Tensor, power: float) -> torch.Tensor:  # [M, D, c]
        if self.eig is None:  # every Gram positive definite: one batched triangular / Cholesky solve
            return triangular_solve(self.L, Y, power == 0.5)
        out = torch.empty_like(Y)
        if bool(self.ok.any()):
            out[self.ok] = triangular_solve(self.L[self.ok], Y[self.ok], power == 0.5)
        if self.eig is not None:
            V, inv = self.eig
            out[~self.ok] = (
                inv.sqrt()[:, :, None] * (V.transpose(1, 2) @ Y[~self.ok])
                if power == 0.5
                else V @ (inv[:, :, None] * (V.transpose(1, 2) @ Y[~self.ok]))
            )
        return out

    def half(self, F: torch.Tensor) -> torch.Tensor:
        """W = L^-1 F [M, D, r] (Cholesky) or diag(1/sqrt(e)) V'F (eigendecomposition): W'W = F'G^+F."""
        return self._apply(F, 0.5)

    def ridges(self) -> list:
        """[M] the fixed ridge (or None) of every model."""
        return [self.ridge] * len(self.methods)

    def extras(self, i: int) -> dict:
        """No extra result fields."""
        return {}

    def release(self) -> None:
        """Drop the Cholesky factors and eigenvectors."""
        self.L = self.eig = None

    def solve(self, Y: torch.Tensor) -> torch.Tensor:
        """(G + ridge I)^+ Y for Y [M, D, c]."""
        return self._apply(Y, 1.0)


class ExactFitFactor:
    """The factor of M kernel-form models that ``kernel_exact_fit`` found of rank N - 1, scored without ridge
    by an in-sample mode: their fit is exact, so their score is 0 whatever B (the pipeline's degeneracy
    rule), and nothing is factored or kept. ``B`` of such a batch is zero."""

    def __init__(self, M: int):
        self.methods = ["kernel/cholesky"] * M  # the rank was decided by a Cholesky factorization
        self.cond = torch.ones(M, dtype=torch.float64)

    def ill_conditioned(self, eps: float) -> torch.Tensor:
        """Never: the kernel form is float64."""
        return torch.zeros_like(self.cond, dtype=torch.bool)

    def half(self, F: torch.Tensor) -> torch.Tensor:
        """Unavailable: nothing was factored (``return_W`` takes the eigendecomposition path)."""
        raise RuntimeError("an exact fit keeps no factor (return_W takes the eigendecomposition path)")

    solve = half

    def ridges(self) -> list:
        """[M] None: no ridge."""
        return [None] * len(self.methods)

    def extras(self, i: int) -> dict:
        """No extra result fields."""
        return {}

    def release(self) -> None:
        """Nothing to drop."""


class GCVFactor:
    """Ridge per model chosen by generalized cross-validation on a log grid, then used like a fixed ridge.

    For each lambda the ridge fit of the uniform label mixture ``Z t0`` (t0 = 1/K) leaves the residual
    ``t0'(A - 2 B1 + B2) t0`` with ``B1 = sum_i q_i / (e_i + lambda)``, ``B2 = sum_i q_i e_i / (e_i + lambda)^2``
    (q_i: K x K products of the label projections on eigen-direction i), and has ``df = 1 + sum_i
    e_i / (e_i + lambda)`` degrees of freedom (the 1: the intercept that centring fits);
    ``GCV = RSS / N / (1 - df / N)^2``. The chosen lambda is the grid's minimizer; the score is then the
    ridge-penalized EMMS objective at that lambda. Stays finite and discriminative when D >= N.

    The grid of the models whose eigenvalues all stay above the rounding cutoff comes from a threaded
    factorization whose last bits follow the thread count, since what they use at the chosen lambda does not
    come from it (``exact_at_choice``): the tridiagonal form on the CPU where it pays (``tridiagonal_pays``,
    ``_tridiagonal_grid``), else torch's eigendecomposition; the others' grid from ``linalg.eigh``. For the
    former, a Cholesky factor of ``G + lambda I`` (``emms::cholesky_``) gives the solves, the K x K matrices
    and df (docs/design.md §3). The minimizer itself is taken robustly: the smallest grid
    index within ``CHOICE_RTOL`` of the minimum, so that rounding cannot pick another entry.
    """

    GRID = torch.logspace(-6, 1, 29, dtype=torch.float64)  # times the mean eigenvalue per column (about N)
    CHOICE_RTOL = 1e-9  # grid entries this close to the minimum tie; the first (smallest ridge) wins
    refine_choice = True  # df and criterion at the choice from the Cholesky factor (the out-of-sample modes
    # choose again from their own grid solve, and refine there)
    cholesky_at_choice = True  # values at the choice from a Cholesky factor where the Gram allows (LOO: never)

    def __init__(self, st: StandardizedStats, basis: LabelBasis, grid: torch.Tensor | None = None):
        G = st.gram()
        M, N, K = G.shape[0], st.N, basis.K

        # Eigenvalues under the Gram's rounding level are null directions, not tiny real ones: left in, a
        # float32 Gram's noise would count as degrees of freedom.
        def spectrum(e):
            real = e > st.eps * G.shape[1] * e.amax(1, keepdim=True)
            return torch.where(real, e, torch.zeros_like(e)), real

        lam = self.ridge_grid(st, G, grid)  # [M, G]
        self._single = single_precision(st)
        on_cpu = G.device.type == "cpu"
        if self.cholesky_at_choice and on_cpu and self.tridiagonal_pays(G.shape[1], basis.r, lam.shape[1]):
            # No eigenvectors needed where the values at the choice come from a Cholesky factor: the grid
            # from the tridiagonal form (about 2x faster than the eigendecomposition at D = 2048) ...
            e, self.B1, self.B2, exact = self._tridiagonal_grid(st.F, G, lam, basis, spectrum, self._single)
            V = None
            if not bool(exact.all()):  # ... the others' grid from a thread-independent eigendecomposition
                e[~exact], V = eigh(G[~exact])
                e[~exact] = spectrum(e[~exact])[0]
                self.B1[~exact], self.B2[~exact] = self._eigen_grid(e[~exact], V, st.F[~exact], lam[~exact], basis)
        else:
            if self.cholesky_at_choice:
                # torch's threaded eigh (one big model: 1.6x faster than on one thread): its last bits only
                # move the robust choice for models whose values come from the Cholesky factor at the choice
                e, V = torch.linalg.eigh(G)
                e, real = spectrum(e)
                redo = ~real.all(1)
                if bool(redo.any()):  # ... the others' values come from the eigendecomposition: thread-independent
                    e[redo], V[redo] = eigh(G[redo])
                    e[redo], real[redo] = spectrum(e[redo])
            else:
                e, V = eigh(G)
                e, real = spectrum(e)
            exact = real.all(1) & self.cholesky_at_choice
            self.B1, self.B2 = self._eigen_grid(e, V, st.F, lam, basis)
            V = V[~exact] if bool(exact.any()) else V
        # Models with no null direction: their quantities at the chosen ridge come from a Cholesky factor.
        self.exact, self._G, self._F, self._chol = exact, G, st.F, None
        shrink = e[:, None, :] * (1.0 / (e[:, None, :] + lam[:, :, None]))  # [M, G, D]
        A = basis.A.to(G.device)
        rss = (A - 2 * self.B1 + self.B2).sum((-1, -2)) / K**2 / basis.L  # t0'(.)t0, t0 = 1/K, per label dim
        # Dropped (constant) columns are decoupled unit directions with eigenvalue `fill`: not real
        # degrees of freedom, so their shrinkage is taken back out of df.
        diag = G.diagonal(dim1=1, dim2=2)
        fill = torch.where(st.keep, torch.zeros_like(diag), diag)
        dropped = (fill[:, None, :] / (fill[:, None, :] + lam[:, :, None])).sum(-1)
        self.lam_grid, self.df_grid, self.N = lam, 1 + shrink.sum(-1) - dropped, N  # [M, G] each
        self._fill = fill  # [M, D]: the dropped columns' decoupled eigenvalues (0 for kept columns)
        self.eps, self.L = st.eps, basis.L
        gcv = self.gcv_criterion(rss, 1)
        best = self.argmin(gcv)
        self.e, self.V = e, V
        self.methods = ["gcv"] * M
        self.choose(best, gcv.gather(1, best[:, None])[:, 0])
        if self.refine_choice and bool(self.exact.any()):
            # The reported criterion at the chosen ridge from the Cholesky factor too (df: refine_at_choice).
            B = self.refine_at_choice(basis)
            rss = (A - B).sum((-1, -2)) / K**2 / basis.L
            self.gcv = self.gcv.clone()
            self.gcv[self.exact] = self.gcv_criterion(rss[:, None], 1, self.df[self.exact, None])[:, 0]

    @staticmethod
    def tridiagonal_pays(D: int, r: int, n_grid: int) -> bool:
        """Whether the tridiagonal grid (``_tridiagonal_grid``) is the cheaper route for a D x D Gram, a label
        basis of r columns and n_grid ridges: it saves most of the eigendecomposition's ~D^3 work and pays
        ~4 D r^2 per ridge (break-even near D = 1024 for 100 classes; under D = 256 the per-model Python calls
        cost more than torch's batched eigendecomposition; benchmarks/README.md)."""
        return D >= 256 and n_grid * r * r <= D * D / 8

    @staticmethod
    def _eigen_grid(e, V, F, lam, basis: LabelBasis) -> tuple[torch.Tensor, torch.Tensor]:
        """(B1, B2) [M, G, K, K] on the ridge grid lam [M, G] from eigenvalues e [M, D] (null ones zeroed),
        eigenvectors V [M, D, D] and F [M, D, r]: sums over eigen-directions of their label products q_i."""
        q = basis.B_per_row(V.transpose(1, 2) @ F)  # [M, D, K, K]
        inv = 1.0 / (e[:, None, :] + lam[:, :, None])  # [M, G, D]
        shrink = e[:, None, :] * inv
        return torch.einsum("mgd,mdkj->mgkj", inv, q), torch.einsum("mgd,mdkj->mgkj", shrink * inv, q)

    @staticmethod
    def _tridiagonal_grid(F, G, lam, basis: LabelBasis, spectrum, single: bool = False) -> tuple:
        """(e [M, D], B1, B2 [M, G, K, K], exact [M]) on the CPU without eigenvectors: per model ``G = Q T Q'``
        (T tridiagonal), e = T's eigenvalues, and for each ridge ``S = (T + lambda I)^-1 Q'F``, so that
        ``B1 = F'(G + lambda I)^-1 F = (Q'F)'S`` and ``B2 = B1 - lambda S'S`` (docs/design.md §3). Only models
        whose eigenvalues all stay above the cutoff (``spectrum``) are ``exact``; the others' B are left 0.
        ``single``: G was formed in float32, so is reduced in float32."""
        M, D, (_, n_grid) = G.shape[0], G.shape[1], lam.shape
        e = torch.empty(M, D, dtype=torch.float64)
        B1 = torch.zeros(M, n_grid, basis.K, basis.K, dtype=torch.float64)
        B2, exact = torch.zeros_like(B1), torch.zeros(M, dtype=torch.bool)
        for m in range(M):
            d, off, Ft = tridiagonalize(G[m], F[m], single)
            e[m], real = (x[0] for x in spectrum(tridiagonal_eigvalsh(d, off, single)[None]))
            if not bool(real.all()):
                continue
            step = max(1, _GRID_CHUNK // Ft.numel())
            for g0 in range(0, n_grid, step):
                ridges = lam[m, g0 : g0 + step]
                S, info = tridiagonal_solve(d, off, ridges.contiguous(), Ft)  # [g, D, r]
                if bool(info.any()):  # not numerically positive definite: the eigendecomposition takes it
                    break
                b1 = basis.B_from_pair(Ft.expand_as(S), S)
                B1[m, g0 : g0 + step] = b1
                B2[m, g0 : g0 + step] = b1 - ridges[:, None, None] * basis.B_from_half(S)
            else:
                exact[m] = True
        return e, B1, B2, exact

    @classmethod
    def ridge_grid(cls, st: StandardizedStats, G: torch.Tensor, grid: torch.Tensor | None) -> torch.Tensor:
        """[M, G] the ridges tried for each model: ``GRID`` times the mean eigenvalue over the varying feature
        columns (about N; the same whether the Gram G [M, D, D] is D x D or the kernel form's principal
        components), or the caller's absolute ridges ``grid [G]``, the same for every model."""
        if grid is None:
            diag = G.diagonal(dim1=1, dim2=2)
            scale = (diag * st.keep).sum(1, keepdim=True) / st.used_columns()[:, None].clamp_min(1)
            return scale * cls.GRID.to(G.device)[None, :]
        return grid.to(G.device, torch.float64)[None, :].expand(G.shape[0], -1)

    @classmethod
    def at_grid_index(
        cls, st: StandardizedStats, basis: LabelBasis, best: torch.Tensor, grid: torch.Tensor | None = None
    ) -> GCVFactor:
        """The factor at grid entry ``best [M]`` of each model, the choice made elsewhere (the jackknife refits
        a subset at the full data's choice, jackknife.py): no eigendecomposition, every model on the Cholesky
        route of ``exact_at_choice``. Factors st's Gram in place on the CPU (as ``GramFactor``). ``pd [M]``
        says whether each ``G + lambda I`` was numerically positive definite (the others' values are
        meaningless); ``df`` and ``gcv`` are NaN until ``refine_at_choice`` and ``score``."""
        self = object.__new__(cls)
        G = st.gram()
        M, D = G.shape[0], G.shape[1]
        self.lam_grid, self.N, self.eps, self.L = cls.ridge_grid(st, G, grid), st.N, st.eps, basis.L
        self.best, self.methods = best, ["gcv"] * M
        self.lam = self.lam_grid.gather(1, best[:, None])[:, 0]
        self.exact = torch.ones(M, dtype=torch.bool, device=G.device)
        diag = G.diagonal(dim1=1, dim2=2).clone()
        self._fill, self._F, self._G = torch.where(st.keep, torch.zeros_like(diag), diag), st.F, None
        G.diagonal(dim1=1, dim2=2).add_(self.lam[:, None])
        self._single = single_precision(st)
        if self._single:  # factored as a float32 copy (``_factor``'s rounding); G's own diagonal restored
            A = workspace.converted(G, torch.float32)
            G.diagonal(dim1=1, dim2=2).copy_(diag)
        else:
            A = G
        self._chol, info = cholesky(A)
        if self._chol is st.G:
            st.G_diag = diag
        tol = st.eps * D * (diag.amax(1) + self.lam)
        self.pd = (info == 0) & (self._chol.diagonal(dim1=1, dim2=2).to(torch.float64).amin(1) ** 2 > tol)
        self.df = self.gcv = self.cond = torch.full_like(self.lam, float("nan"))
        return self

    def argmin(self, crit: torch.Tensor) -> torch.Tensor:
        """[M] the first grid index of crit [M, G] within ``CHOICE_RTOL`` of each row's minimum (the row's
        argmin up to rounding: the same index whatever the thread count, unless a value sits on that edge)."""
        low = crit.amin(1, keepdim=True)
        return (crit <= low + self.CHOICE_RTOL * low.abs()).to(torch.uint8).argmax(1)

    def gcv_criterion(self, rss: torch.Tensor, L: int, df: torch.Tensor | None = None) -> torch.Tensor:
        """GCV = RSS / N / (1 - df / N)^2 for residual sums [M, G] over L label dimensions on the grid (or at
        the degrees of freedom ``df`` given, of rss's shape); inf
        where df >= N, and where the residual is at rounding level (RSS <= sqrt(eps) N L, the in-sample
        modes' rule for an exact fit, docs/design.md §3): RSS is then the cancellation error of A - 2 B1 + B2
        and (1 - df / N)^2 nearly 0, a ratio of two rounding errors whose value follows the thread count."""
        N, df = self.N, self.df_grid if df is None else df
        ok = (df < N) & (rss > self.eps**0.5 * N * L)
        return torch.where(ok, rss / N / (1 - df / N) ** 2, torch.full_like(rss, float("inf")))

    def choose(self, best: torch.Tensor, gcv: torch.Tensor) -> None:
        """Use grid entry best [M] of each model from now on; gcv [M] is its criterion (reported)."""
        self.__dict__.pop("_as_lists", None)  # a new choice: lists made for the last one are stale
        self._chol = None  # and so is the Cholesky factor at the last choice
        self.best = best
        self.lam = self.lam_grid.gather(1, best[:, None])[:, 0]  # [M]
        self.df = self.df_grid.gather(1, best[:, None])[:, 0]
        self.gcv = gcv
        self.cond = (self.e.amax(1) + self.lam) / (self.e.amin(1) + self.lam)

    def ill_conditioned(self, eps: float) -> torch.Tensor:
        """[M] bool: eps * cond(G + lambda I) above ``FLOAT32_TRUST``."""
        return eps * self.cond > FLOAT32_TRUST

    def _factor(self) -> torch.Tensor:
        """Cholesky factors of ``G + lambda I`` [M_exact, D, D] at the chosen ridges of the exact models."""
        if self._chol is None:
            A = self._G[self.exact]  # boolean indexing copies: factored in place
            A.diagonal(dim1=1, dim2=2).add_(self.lam[self.exact, None])
            # (GramFactor's precision rule)
            self._chol = cholesky(workspace.converted(A, torch.float32) if self._single else A)[0]
        return self._chol

    def _apply(self, Y: torch.Tensor, half: bool) -> torch.Tensor:
        """``(G + lambda I)^-1/2``-type (half: W with W'W = Y'(G + lambda I)^-1 Y) or full solves of Y [M, D, c]
        at the chosen ridges: Cholesky for the exact models, the eigendecomposition for the others."""
        out = torch.empty_like(Y) if not bool(self.exact.all()) else None
        if bool(self.exact.any()):
            X = triangular_solve(self._factor(), Y[self.exact], half)
            if out is None:
                return X
            out[self.exact] = X
        rest = ~self.exact
        V, e = self.V, self.e[rest] + self.lam[rest, None]  # V: the eigenvectors of the models ~exact
        proj = V.transpose(1, 2) @ Y[rest]
        out[rest] = proj / e.sqrt()[:, :, None] if half else V @ (proj / e[:, :, None])
        return out

    def half(self, F: torch.Tensor) -> torch.Tensor:
        """W [M, D, r] with W'W = F'(G + lambda I)^-1 F at each model's chosen lambda."""
        return self._apply(F, True)

    def solve(self, Y: torch.Tensor) -> torch.Tensor:
        """(G + lambda I)^-1 Y for Y [M, D, c] at each model's chosen lambda."""
        return self._apply(Y, False)

    def exact_at_choice(self, basis: LabelBasis) -> tuple[torch.Tensor, torch.Tensor]:
        """(B' [M_exact, K, K], df [M_exact]) at the chosen ridges of the exact models, from the Cholesky factor:
        ``B1 = W'W``, ``B2 = F'(G + lambda I)^-1 G (G + lambda I)^-1 F = B1 - lambda S'S`` with ``S = (G + lambda
        I)^-1 F``, so ``B' = 2 B1 - B2 = B1 + lambda S'S``; ``df = 1 + D - lambda tr (G + lambda I)^-1 -`` the
        dropped columns' shrinkage, the trace being ``||L^-1||_F^2``. The grid's values at the same ridge
        agree to rounding; these have the same bits whatever the thread count."""
        L, lam, F = self._factor(), self.lam[self.exact], self._F[self.exact]
        D = L.shape[1]
        W, S = triangular_solve(L, F, True), triangular_solve(L, F, False)
        B = basis.B_from_half(W) + lam[:, None, None] * basis.B_from_half(S)
        trace = inverse_trace(L)
        fill = self._fill[self.exact]
        dropped = (fill / (fill + lam[:, None])).sum(1)
        return B, 1 + D - lam * trace - dropped

    def refine_at_choice(self, basis: LabelBasis) -> torch.Tensor:
        """B' [M_exact, K, K] of the exact models at their chosen ridges (``exact_at_choice``), whose df
        replace the grid's in ``self.df``."""
        B, df = self.exact_at_choice(basis)
        self.df = self.df.clone()
        self.df[self.exact] = df
        return B

    def ridges(self) -> list:
        """[M] the chosen ridges."""
        return self.lam.tolist()

    def extras(self, i: int) -> dict:
        """The GCV estimate and the degrees of freedom at model i's chosen ridge."""
        gcv, df = self._lists("gcv", "df")
        return {"gcv": gcv[i], "df": df[i]}

    def _lists(self, *fields: str) -> list[list]:
        """The [M] (or [M, G]) tensors named, as Python lists converted once per batch (one host sync
        each on CUDA, not one per model) and kept for every model's ``extras``."""
        cache = self.__dict__.setdefault("_as_lists", {})
        for f in fields:
            if f not in cache:
                cache[f] = getattr(self, f).tolist()
        return [cache[f] for f in fields]

    def release(self) -> None:
        """Drop the eigenvectors, the Cholesky factors and the references to the statistics."""
        self.V = self._chol = self._G = self._F = None


def make_factor(st: StandardizedStats, ridge, basis: LabelBasis) -> Factor:
    """GCVFactor for ridge="gcv", else GramFactor (ridge None or a number)."""
    return GCVFactor(st, basis) if ridge == "gcv" else GramFactor(st, ridge)
