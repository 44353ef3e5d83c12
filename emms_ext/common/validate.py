"""Input checks for the public API: every error names the argument, the expected shape and what was seen.

``check_features`` is the one ``[N, D]`` feature check of the package (scores, streams, baselines, rank).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def describe(x) -> str:
    """'[5, 3] float32 tensor' style description of an array-like for error messages."""
    if torch.is_tensor(x):
        return f"{list(x.shape)} {str(x.dtype).replace('torch.', '')} tensor"
    if isinstance(x, np.ndarray):
        return f"{list(x.shape)} {x.dtype} array"
    return type(x).__name__


def as_float_tensor(x, name: str, expect: str) -> torch.Tensor:
    """Tensor view of a torch tensor or numpy array with a floating dtype (nothing copied when possible),
    detached: scores are not differentiable, and features straight from a forward pass (requires_grad) would
    otherwise fail in the out= and in-place arithmetic of the statistics."""
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{name} must be a floating-point array {expect} (got {describe(x)})")
        x = torch.from_numpy(x)
    elif not torch.is_tensor(x):
        try:
            x = torch.as_tensor(np.asarray(x))
        except Exception as exc:  # any conversion failure is reported with the argument's name
            raise ValueError(f"{name} must be a tensor or array {expect} (got {describe(x)})") from exc
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor {expect} (got {describe(x)})")
    return x.detach()


def check_finite(x: torch.Tensor, name: str, where: str = "") -> None:
    """ValueError naming ``name`` and counting the NaN/Inf values when ``x`` has any."""
    if not bool(torch.isfinite(x.sum())):  # one cheap reduction; the exact count only on failure
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"{name} must be finite (got {bad} NaN/Inf values{where} in a {describe(x)})")


def check_features(
    x,
    name: str = "features",
    *,
    N: int | None = None,
    min_rows: int = 1,
    width: int | None = None,
    seen: int | None = None,
    n_source: str = "the label embeddings' N",
    finite: bool = True,
) -> torch.Tensor:
    """``x`` as a finite float ``[N, D]`` tensor (D >= 1), or a ValueError naming ``name``.

    Args:
        N: the number of rows required (None: any number, at least ``min_rows``).
        width: the D required (a stream's later chunks must match its first).
        seen: for a chunk ``[n_i, D]`` of a stream, the rows already checked before it: the running total
            must stay at most ``N`` (None: ``x`` holds every sample).
        n_source: what N is, for the message ("the label embeddings' N", "the target's N").
        finite: check that every value is finite (False: the caller detects non-finite values from
            statistics it computes anyway, and calls ``check_finite`` for the message).
    """
    x = as_float_tensor(x, name, "[N, D]")
    if x.dim() != 2:
        raise ValueError(f"{name} must be [N, D] (got {describe(x)})")
    if x.shape[1] == 0:
        raise ValueError(f"{name} must be [N, D] with D >= 1 (got {describe(x)})")
    if width is not None and x.shape[1] != width:
        raise ValueError(f"{name} chunks must all be [n_i, D={width}] (got {describe(x)} after {seen} rows)")
    first = 0 if seen is None else seen
    if N is not None and seen is not None:
        if seen + x.shape[0] > N:
            raise ValueError(f"{name} must be [N, D] with N == {N} ({n_source}); got at least {seen + x.shape[0]} rows")
    elif N is not None and x.shape[0] != N:
        raise ValueError(f"{name} must be [N, D] with N == {N} ({n_source}); got {x.shape[0]} rows")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} must be [N, D] with N >= {min_rows} samples (got {describe(x)})")
    if finite:
        check_finite(x, name, f" in rows {first}..{first + x.shape[0] - 1}")
    return x


def check_texts(texts, name: str = "texts", allow_empty: bool = False) -> list[str]:
    """Validate a list of strings (an empty string is allowed, an empty list only if asked)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError(f"{name} must be a list of strings (got {type(texts).__name__})")
    texts = list(texts)
    if not texts and not allow_empty:
        raise ValueError(f"{name} must be a non-empty list of strings (got an empty list)")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"{name}[{i}] must be a string (got {type(t).__name__}: {t!r:.60})")
    return texts
