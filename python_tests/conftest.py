"""Shared problem generators. Every test draws fresh random inputs from a seed in its parametrization."""
from __future__ import annotations

import pytest
import torch


def make_features(seed: int, N: int, D: int, shift: float = 0.0, dtype=torch.float64) -> torch.Tensor:
    """Correlated features with per-column scales and an optional common offset (large means)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(N, D, generator=g, dtype=torch.float64)
    mix = torch.eye(D, dtype=torch.float64) + 0.3 * torch.randn(D, D, generator=g, dtype=torch.float64) / D**0.5
    scales = torch.exp(torch.randn(D, generator=g, dtype=torch.float64))
    return ((base @ mix) * scales + shift).to(dtype)


def make_dense_labels(seed: int, N: int, L: int, K: int, X: torch.Tensor | None = None) -> torch.Tensor:
    """[N, L, K] free-text-like label embeddings, partly predictable from X so that scores differ."""
    g = torch.Generator().manual_seed(seed + 1)
    Z = torch.randn(N, L, K, generator=g, dtype=torch.float64)
    if X is not None:
        proj = torch.randn(X.shape[1], L, K, generator=g, dtype=torch.float64) / X.shape[1] ** 0.5
        Z = Z + torch.einsum("nd,dlk->nlk", X.to(torch.float64) - X.to(torch.float64).mean(0), proj) / (
            X.to(torch.float64).std() + 1e-12)
    return Z


def make_class_labels(seed: int, N: int, C: int, L: int, K: int):
    """(table [C, L, K], indices [N]) with every class used."""
    g = torch.Generator().manual_seed(seed + 2)
    table = torch.randn(C, L, K, generator=g, dtype=torch.float64)
    idx = torch.cat([torch.arange(C), torch.randint(0, C, (N - C,), generator=g)])
    return table, idx[torch.randperm(N, generator=g)]


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.fixture
def rel():
    return rel_err
