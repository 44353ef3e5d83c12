"""Input checks for the public API: every error names the argument, the expected shape and what was seen."""
from __future__ import annotations

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
    """Tensor view of a torch tensor or numpy array with a floating dtype (nothing copied when possible)."""
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{name} must be a floating-point array {expect} (got {describe(x)})")
        x = torch.from_numpy(x)
    elif not torch.is_tensor(x):
        try:
            x = torch.as_tensor(np.asarray(x))
        except Exception as exc:  # noqa: BLE001 - reported with the argument's name
            raise ValueError(f"{name} must be a tensor or array {expect} (got {describe(x)})") from exc
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor {expect} (got {describe(x)})")
    return x


def check_finite(x: torch.Tensor, name: str, where: str = "") -> None:
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} must be finite (got {bad} NaN/Inf values{where} in a {describe(x)})")
