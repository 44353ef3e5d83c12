"""Input handling shared by the baselines: every error names the argument, the expected shape and what was
seen; inputs are never modified (all work happens on float64 copies / new tensors)."""

from __future__ import annotations

import numpy as np
import torch

from ..common.validate import as_float_tensor, check_finite, describe
from ..core.linalg import svd


def features64(features, name: str = "features", min_rows: int = 2) -> torch.Tensor:
    """[N, D] float tensor/array -> float64 tensor on its device (a new tensor unless already float64; callers
    must not write into it)."""
    x = as_float_tensor(features, name, "[N, D]")
    if x.dim() != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must be [N, D] with D >= 1 (got {describe(x)})")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} must be [N, D] with N >= {min_rows} samples (got {describe(x)})")
    check_finite(x, name)
    return x.detach().to(torch.float64)


def class_labels(labels, N: int, device, name: str = "labels", min_classes: int = 1) -> tuple[torch.Tensor, int]:
    """[N] integer labels (any values) -> (indices [N] int64 in [0, C) ordered like the sorted unique labels, C)."""
    y = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels)
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
        raise ValueError(f"{name} must be an integer vector [N] with N = {N} (got {describe(y)})")
    if y.shape[0] != N:
        raise ValueError(f"{name} must be [N] with N = {N} from the features (got {describe(y)})")
    _, idx = torch.unique(y.to(torch.int64), return_inverse=True)
    C = int(idx.max()) + 1 if idx.numel() else 0
    if C < min_classes:
        raise ValueError(f"{name} must hold at least {min_classes} distinct classes (got {C})")
    return idx.to(device), C


def targets64(targets, N: int, device, name: str = "targets") -> torch.Tensor:
    """[N] or [N, T] float targets -> [N, T] float64."""
    y = as_float_tensor(targets, name, "[N, T]")
    if y.dim() == 1:
        y = y[:, None]
    if y.dim() != 2 or y.shape[0] != N or y.shape[1] == 0:
        raise ValueError(f"{name} must be [N] or [N, T] with N = {N} from the features (got {describe(y)})")
    check_finite(y, name)
    return y.detach().to(device=device, dtype=torch.float64)


def probs64(probs, N: int | None = None, device=None, name: str = "source_probs") -> torch.Tensor:
    """[N, C_s] rows of probabilities (non-negative, summing to 1 within 1e-3) -> float64."""
    p = as_float_tensor(probs, name, "[N, C_s]")
    if p.dim() == 2 and N is None:
        N = p.shape[0]
    if p.dim() != 2 or p.shape[0] != N or p.shape[1] == 0 or N < 1:
        raise ValueError(f"{name} must be [N, C_s] with N = {N} (got {describe(p)})")
    check_finite(p, name)
    p = p.detach().to(device=device, dtype=torch.float64)
    if bool((p < 0).any()) or not bool(torch.allclose(p.sum(1), torch.ones_like(p[:, 0]), atol=1e-3)):
        raise ValueError(
            f"{name} must hold probabilities [N, C_s]: rows >= 0 summing to 1 (got row sums in "
            f"[{float(p.sum(1).min()):.4g}, {float(p.sum(1).max()):.4g}], min {float(p.min()):.4g})"
        )
    return p


def one_hot(idx: torch.Tensor, C: int) -> torch.Tensor:
    """Class indices ``idx [N]`` (int64 in [0, C)) as a float64 one-hot matrix ``[N, C]``."""
    return torch.nn.functional.one_hot(idx, C).to(torch.float64)


def class_means(x: torch.Tensor, idx: torch.Tensor, C: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(means [C, D], counts [C]) of the rows of x [N, D] per class, through the class_sums op."""
    from ..ops.operators import class_order, class_sums

    order, offsets = class_order(idx, C)
    counts = (offsets[1:] - offsets[:-1]).to(torch.float64)
    return class_sums(x, order, offsets) / counts[:, None], counts


def pca(x: torch.Tensor, dim: int | None) -> torch.Tensor:
    """Centred x [N, D] projected on its top `dim` principal directions (x itself, centred, when dim is None
    or >= D). Used by GBC / PARC as in their papers."""
    xc = x - x.mean(0)
    if dim is None or dim >= x.shape[1]:
        return xc
    _, _, vh = svd(xc)
    vh = vh[:dim]
    # sklearn's sign convention (largest |entry| of each direction positive): PARC's row correlations
    # depend on the signs, so the same convention gives the same numbers as sklearn-based code.
    sign = torch.sign(vh.gather(1, vh.abs().argmax(1, keepdim=True)))
    return xc @ (vh * sign).T


EPS64 = torch.finfo(torch.float64).eps


def rank_cutoff(N: int, D: int) -> float:
    """Relative eigenvalue cutoff for a float64 Gram / covariance of an ``[N, D]`` matrix: eigenvalues at or
    below ``max(N, D) * eps64`` times the largest are rounding, not data (numpy's ``matrix_rank`` rule).

    Forming and diagonalizing such a matrix leaves its zero eigenvalues at about ``eps64`` times the largest
    (measured 0.1-1e-4 of this cutoff from N = 4 to 1280, offsets up to 1e3 included), so a pseudo-inverse
    that keeps them returns rounding noise that changes with the BLAS thread count (docs/design.md §7)."""
    return max(N, D) * EPS64


def principal_directions(xc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(U [N, r], s [r]): the left singular vectors and singular values of centred xc [N, D] whose squared
    singular value (an eigenvalue of the covariance, times N - 1) exceeds ``rank_cutoff(N, D)`` times the
    largest. Working from the SVD of the data rather than the covariance keeps each direction accurate to
    ``eps * s_max / s`` instead of ``eps * (s_max / s)^2``."""
    N, D = xc.shape
    U, s, _ = svd(xc)
    keep = s * s > float(s[0]) ** 2 * rank_cutoff(N, D) if s.numel() else s > 0
    return U[:, keep], s[keep]
