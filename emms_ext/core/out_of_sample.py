"""Out-of-sample EMMS: ``mode="gcv"`` and ``mode="loo"`` (docs/design.md §3).

EMMS's own score is an in-sample residual: it favours wide features and ties every model at a perfect fit
once D >= N - 1. Here the label mixture ``Z t`` is fitted by ridge regression and judged on how well the
fit would predict samples it did not see, for every ridge of a grid:

* ``gcv``: generalized cross-validation, ``t'(A - 2 B1 + B2)t / N / (1 - df/N)^2`` with ``B1 = Z'H Z`` and
  ``B2 = Z'H^2 Z`` (H: the ridge hat matrix, df = 1 + tr H counting the intercept). The denominator does not
  depend on t, so per ridge the minimization over t is EMMS's simplex QP with ``B' = 2 B1 - B2``;
* ``loo``: exact leave-one-out residuals ``r_n / (1 - h_nn)`` (h_nn: leverage), whose K x K Gram needs one
  pass over the samples per ridge (in-memory features only).

Every (model, ridge) pair is one K x K problem; all of them go to one call of ``emms::wlsr_simplex``. The
ridge (and t) with the smallest estimated out-of-sample error wins, and the score is minus that error per
label dimension (the same units as ``mode="exact"``'s ``-f / (N L)``).
"""

from __future__ import annotations

import torch

from .factor import GCVFactor
from .labels import LabelBasis
from .stats import StandardizedStats, standardize

OUT_OF_SAMPLE_MODES = ("gcv", "loo")
_LOO_CHUNK = 1 << 24  # float64 entries of residual rows held at once (ridges x N x r)


class OutOfSampleFactor(GCVFactor):
    """The factor of ``mode="gcv"``: besides the ``Factor`` interface, the grid of (model, ridge) problems
    (``grid_B``) and the choice among their solutions (``pick``). ``LOOFactor`` changes the criterion."""

    criterion_name = "gcv"
    refine_choice = False  # the choice that counts is pick's

    def grid_B(self, basis: LabelBasis) -> torch.Tensor:
        """[M, G, K, K] matrices B' with the ridge residual t'(A - B')t for every model and ridge."""
        return 2 * self.B1 - self.B2

    def criterion(self, obj: torch.Tensor, at_choice: bool = False) -> torch.Tensor:
        """Estimated out-of-sample error (total over label dims) from the residuals obj: [M, G] on the grid,
        or [M] at each model's chosen ridge (its df there)."""
        if at_choice:
            return self.gcv_criterion(obj[:, None], self.L, self.df[:, None])[:, 0]
        return self.gcv_criterion(obj, self.L)

    def pick(self, obj: torch.Tensor, L: int) -> None:
        """Choose each model's ridge from the solved grid's residuals obj [M, G] (``argmin``: the first entry
        within rounding of the smallest error), and keep the error along the grid (``path``)."""
        crit = self.criterion(obj)
        best = self.argmin(crit)
        self.path = crit / L
        rows = torch.arange(len(best), device=best.device)
        self.choose(best, self.path[rows, best])

    def B_at_choice(self, basis: LabelBasis, grid_B: torch.Tensor) -> torch.Tensor:
        """[M, K, K] B' at each model's chosen ridge: the exact models' from the Cholesky factor at that ridge
        (their df too; ``GCVFactor.exact_at_choice``), the others' the grid's row (grid_B [M, G, K, K])."""
        rows = torch.arange(grid_B.shape[0], device=grid_B.device)
        B = grid_B[rows, self.best].clone()
        if bool(self.exact.any()):
            B[self.exact] = self.refine_at_choice(basis)
        return B

    def score(self, obj: torch.Tensor, L: int) -> torch.Tensor:
        """[M] minus the error per label dimension at the chosen ridges, from the residuals obj [M] there (the
        reported criterion ``gcv`` / ``loo`` is set to it)."""
        self.gcv = self.criterion(obj, at_choice=True) / L
        self.__dict__.pop("_as_lists", None)
        return -self.gcv

    def extras(self, i: int) -> dict:
        """The criterion and degrees of freedom at model i's ridge, the grid and the error along it."""
        crit, df, grid, path = self._lists("gcv", "df", "lam_grid", "path")
        return {self.criterion_name: crit[i], "df": df[i], "ridge_grid": grid[i], "error_path": path[i]}


def loo_residual_gram(basis: LabelBasis, fit: torch.Tensor, lev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K x K Grams [g, K, K] of the leave-one-out residuals ``(U - fit) / (1 - h)``, largest leverage [g]) of g
    ridge fits ``fit [g, N, r]`` of the label basis U with leverages ``lev [g, N]`` (intercept included)."""
    if basis.is_vocabulary:  # U is the one-hot class matrix
        res = -fit
        res[:, torch.arange(fit.shape[1], device=fit.device), basis.classes] += 1.0
    else:
        res = basis.dense - fit
    half = res / (1.0 - lev)[:, :, None].clamp_min(torch.finfo(torch.float64).tiny)
    return basis.B_from_half(half), lev.amax(1)


def loo_criterion(obj: torch.Tensor, max_leverage: torch.Tensor, N: int) -> torch.Tensor:
    """Mean leave-one-out squared residual ``obj / N``; inf where a sample's leverage reaches 1 (a tiny ridge
    with D >= N fits it exactly, leaving its own prediction undefined)."""
    return torch.where(max_leverage < 1 - 1e-9, obj / N, torch.full_like(obj, float("inf")))


class LOOFactor(OutOfSampleFactor):
    """``mode="loo"``: exact leave-one-out residuals of the ridge fit with intercept, per ridge of the grid.

    In the eigenbasis of the standardized Gram (G = V diag(e) V', P = X_s V) the centred hat matrix is
    ``P diag(1/(e + lambda)) P'``; with the intercept the leverage is ``h_n = 1/N + sum_i P_ni^2 / (e_i +
    lambda)``. The residuals are formed in the label basis U (Z = U R), so the K x K Gram of the
    leave-one-out residuals comes out of ``LabelBasis.B_from_half`` like any B.
    """

    criterion_name = "loo"
    cholesky_at_choice = False  # leave-one-out residuals need the whole eigendecomposition

    def __init__(self, st: StandardizedStats, basis: LabelBasis, grid, xs: list[torch.Tensor]):
        super().__init__(st, basis, grid)
        self.methods = ["loo"] * len(self.methods)
        # The pass over the samples waits for grid_B: a batch that the float32 check sends back to float64
        # is factored again, and its first factor must not have paid for it.
        self._st, self._xs = st, xs

    def grid_B(self, basis: LabelBasis) -> torch.Tensor:
        """[M, G, K, K] B' = A - (K x K Gram of the leave-one-out residuals) per model and ridge."""
        st = self._st
        x, _ = standardize(
            torch.stack([t.to(st.G.device, torch.float64) for t in self._xs]),
            st.eps,
            None if st.back is not None else st.keep[:, None, :],
        )
        if st.back is not None:  # kernel form: the statistics' columns are principal components
            x = x @ st.back
        P = x @ self.V  # [M, N, D']
        q = self.V.transpose(1, 2) @ st.F  # [M, D', r]
        M, N = P.shape[0], P.shape[1]
        G = self.lam_grid.shape[1]
        loo_gram = torch.empty(M, G, basis.K, basis.K, dtype=torch.float64, device=P.device)
        self.max_leverage = torch.empty(M, G, dtype=torch.float64, device=P.device)
        step = max(1, _LOO_CHUNK // (N * basis.r))
        # The labels on the statistics' device once, not once per model and grid chunk.
        basis = basis.to(P.device)
        for m in range(M):
            for g0 in range(0, G, step):
                inv = 1.0 / (self.e[m] + self.lam_grid[m, g0 : g0 + step, None])  # [g, D']
                lev = 1.0 / N + (P[m] ** 2) @ inv.T  # [N, g]
                fit = P[m] @ (inv[:, :, None] * q[m])  # [g, N, r]: the ridge fits in the label basis U
                loo_gram[m, g0 : g0 + step], self.max_leverage[m, g0 : g0 + step] = loo_residual_gram(basis, fit, lev.T)
        return basis.A - loo_gram

    def release(self) -> None:
        """Drop the eigenvectors and the references to the statistics and features."""
        super().release()
        self._st = self._xs = None

    def criterion(self, obj: torch.Tensor, at_choice: bool = False) -> torch.Tensor:
        """Mean leave-one-out squared residual ([M, G] on the grid, [M] at the chosen ridges); inf where a
        sample's leverage reaches 1."""
        lev = self.max_leverage.to(obj.device)
        if at_choice:
            lev = lev.gather(1, self.best[:, None].to(obj.device))[:, 0]
        return loo_criterion(obj, lev, self.N)


def make_out_of_sample(mode: str, st: StandardizedStats, basis: LabelBasis, grid, xs=None) -> OutOfSampleFactor:
    """The factor for an out-of-sample mode; ``xs`` (the models' in-memory features) is needed by "loo"."""
    if mode == "gcv":
        return OutOfSampleFactor(st, basis, grid)
    if xs is None:
        raise ValueError(
            "mode='loo' needs in-memory features [N, D] (leave-one-out residuals need every "
            "sample's leverage); got an iterable of chunks. mode='gcv' works on streams."
        )
    return LOOFactor(st, basis, grid, xs)
