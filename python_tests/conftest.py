"""Shared problem generators (every test draws its random inputs from a seed in its parametrization) and
the hypothesis profiles. Devices, dtypes and tolerances of the op suites live in ``testing.py``.

Hypothesis profiles: ``ci`` (the default) derandomizes, so every run of the property tests draws the same
examples and a failure reproduces; ``fuzz`` (``HYPOTHESIS_PROFILE=fuzz``, ``make fuzz``) draws new random
examples, many more of them.
"""

from __future__ import annotations

import os

import pytest
import torch

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a dev dependency; test_fuzz.py skips itself without it
    settings = None
else:
    _COMMON = {"deadline": None, "print_blob": True, "suppress_health_check": [HealthCheck.too_slow]}
    settings.register_profile("ci", derandomize=True, database=None, max_examples=60, **_COMMON)
    settings.register_profile("fuzz", derandomize=False, max_examples=2000, **_COMMON)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
            X.to(torch.float64).std() + 1e-12
        )
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
