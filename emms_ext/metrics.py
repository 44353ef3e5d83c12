"""The registry of transferability metrics that ``emms_ext.rank`` can compute.

A metric is a function ``fn(features, target) -> float`` (higher = better transfer) of one model's
features ``[N, D]`` (float tensor on the CPU or GPU) and a ``Target`` describing the task. Metrics
register themselves with ``register_metric``; ``rank(..., metric=name)`` looks them up here. A metric whose
values only mean something relative to the other models of the zoo (e.g. min-max normalised) is registered
with ``relative=True`` and says so in its docstring.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Target:
    """What a metric may see of the target task (fields a task does not have are None).

    labels: ``[N]`` int64 class indices (classification-like tasks).
    targets: ``[N, T]`` float regression targets.
    label_embeddings: F-labels in any form ``emms_score`` accepts (``[N, L, K]``, list of K ``[N, L_k]``,
        ``ClassLabels``).
    source_probs: model name -> ``[N, C_s]`` probabilities of that model's source head on the target
        samples (for LEEP / NCE / N-LEEP-style metrics).
    task: "classification" | "multilabel" | "regression" | "captioning" | "referring" | "vqa" | "text_qa".
    """

    labels: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    label_embeddings: object | None = None
    source_probs: dict = field(default_factory=dict)
    task: str = "classification"


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable  # (features [N, D], target: Target, **options) -> float
    relative: bool = False  # values only comparable within one zoo
    needs: tuple = ()  # Target fields the metric requires, e.g. ("labels",)
    doc: str = ""


_REGISTRY: dict[str, Metric] = {}


def register_metric(name: str, fn: Callable, *, relative: bool = False, needs: tuple = (), doc: str = "") -> Metric:
    """Add (or replace) a metric under ``name``."""
    metric = Metric(name=name, fn=fn, relative=relative, needs=tuple(needs), doc=doc or (fn.__doc__ or "").strip())
    _REGISTRY[name] = metric
    return metric


def _load_builtins() -> None:
    """The field's baselines register themselves when emms_ext.baselines is imported: on first lookup, so
    that ``import emms_ext`` stays light."""
    from . import baselines  # noqa: F401


def get_metric(name: str) -> Metric:
    """The metric registered under ``name``; a ValueError listing the known names otherwise."""
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def available_metrics() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def _emms(mode: str):
    def fn(features: torch.Tensor, target: Target, **options) -> float:
        from .emms import emms_score

        if target.label_embeddings is None:
            raise ValueError("EMMS needs F-labels: give label_embeddings (or class names to embed) in the target")
        return emms_score(features, target.label_embeddings, mode, **options).score

    fn.__doc__ = f"EMMS (mode={mode!r}) on the target's F-labels; higher is better."
    return fn


register_metric("emms", _emms("exact"), needs=("label_embeddings",))
register_metric("emms_alternating", _emms("alternating"), needs=("label_embeddings",))
register_metric("emms_reference", _emms("reference"), needs=("label_embeddings",))
register_metric("emms_gcv", _emms("gcv"), needs=("label_embeddings",))
register_metric("emms_loo", _emms("loo"), needs=("label_embeddings",))
