"""What the score API returns: one model's ``EMMSResult``, a zoo's ``ZooScores``, and the warning for
the D >= N degeneracy."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


class EMMSDegeneracyWarning(UserWarning):
    """Features with at least N - 1 varying columns (or an exact fit) fit the target exactly: unregularized
    in-sample scores are set to exactly 0 and tie."""


@dataclass
class EMMSResult:
    """Score of one model. ``score`` is ``-f(W*, t*) / (N L)`` (higher is better); in ``mode="reference"``
    it is the released code's ``-f / N * L``; in ``mode="gcv"`` / ``"loo"`` minus the estimated
    out-of-sample mean squared error per label dimension."""

    score: float
    t: torch.Tensor  # [K] float64 weights of the foundation models, on the simplex
    mode: str
    iterations: int
    objective: float  # unnormalized f = ||XW - Zt||^2 (+ ridge ||W||^2; without it in gcv / loo modes)
    n_samples: int
    n_features: int  # D of the input
    n_used_features: int  # columns that vary (constant columns standardize to zero)
    label_dim: int  # L
    n_embedders: int  # K
    ridge: float | None  # the ridge used (the GCV-chosen one with ridge="gcv")
    # Gram inversion: "cholesky", "eigh" (rank-deficient), "gcv" (ridge="gcv") or "none" (no columns);
    # prefixed "kernel/" when D > N and the N x N kernel form was used.
    solver: str
    gram_precision: str = "float64"  # the Gram's precision: "float32" / "float64" (after any automatic fallback)
    W: torch.Tensor | None = None  # [D, L] regression weights on the standardized features, if requested
    # ridge="gcv": the GCV estimate of the out-of-sample mean squared error per label dimension of the
    # uniform label mixture at the chosen ridge, and the fit's effective degrees of freedom (1 + tr H).
    # mode="gcv" / "loo": the same estimates for the optimal mixture t (gcv or loo: minus the score), the
    # ridge grid searched and the estimated error per label dimension at each of its ridges (min over t).
    gcv: float | None = None
    df: float | None = None
    loo: float | None = None
    ridge_grid: list[float] | None = None
    error_path: list[float] | None = None
    warnings: list[str] = field(default_factory=list)
    # folds=F: the [F] float64 leave-one-fold-out scores and their delete-a-group jackknife standard error
    fold_scores: torch.Tensor | None = None
    stderr: float | None = None
    # exact / alternating / reference without a ridge: the fit is exact (pipeline.degenerate_fits), the
    # score is set to exactly 0 and ties with every other degenerate model
    degenerate: bool = False

    def __float__(self) -> float:
        return self.score


class ZooScores(dict):
    """name -> EMMSResult for the models that were scored, plus ``failures`` (name -> reason)."""

    def __init__(self, results, failures):
        super().__init__(results)
        self.failures: dict = dict(failures)

    @property
    def scores(self) -> dict:
        """name -> score (``EMMSResult.score``) of every scored model."""
        return {name: r.score for name, r in self.items()}

    @property
    def order(self) -> list:
        """Model names from best to worst score."""
        return sorted(self, key=lambda name: self[name].score, reverse=True)
