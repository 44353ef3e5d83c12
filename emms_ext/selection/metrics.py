"""The registry of transferability metrics that ``emms_ext.rank`` can compute.

A metric is a function ``fn(features, target) -> float`` (higher = better transfer) of one model's
features ``[N, D]`` (float tensor on the CPU or GPU) and a ``Target`` describing the task. Metrics
register themselves with ``register_metric``; ``rank(..., metric=name)`` looks them up here. A metric whose
values only mean something relative to the other models of the zoo (e.g. min-max normalised) is registered
with ``relative=True`` and says so in its docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import baselines as bl
from ..core.score import emms_score
from .targets import Target


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``fn(features [N, D], target, **options) -> float``, higher is better."""

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


def get_metric(name: str) -> Metric:
    """The metric registered under ``name``; a ValueError listing the known names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def available_metrics() -> list[str]:
    """Names of every registered metric, sorted."""
    return sorted(_REGISTRY)


def _emms(mode: str):
    def fn(features: torch.Tensor, target: Target, **options) -> float:
        if target.label_embeddings is None:
            raise ValueError("EMMS needs F-labels: give label_embeddings (or class names to embed) in the target")
        return emms_score(features, target.label_embeddings, mode, **options).score

    fn.__doc__ = f"EMMS (mode={mode!r}) on the target's F-labels; higher is better."
    return fn


# rank()'s default when no metric is named: chosen by the regimes benchmark (benchmarks/README.md, "Regimes";
# docs/design.md §8). metric="emms" (and emms_score(mode="exact")) stays the paper's score.
DEFAULT_METRIC = "emms_evidence"

# Registry name -> EMMS mode. rank() scores these with one batched emms_scores call for the whole zoo.
EMMS_METRICS = {
    "emms": "exact",
    "emms_alternating": "alternating",
    "emms_reference": "reference",
    "emms_gcv": "gcv",
    "emms_loo": "loo",
    "emms_evidence": "evidence",
}
for _name, _mode in EMMS_METRICS.items():
    register_metric(_name, _emms(_mode), needs=("label_embeddings",))


# ------------------------------------------------------------------------------------------ baselines
def _need(target: Target, field: str, metric: str):
    value = getattr(target, field)
    if value is None:
        raise ValueError(f"{metric} needs target.{field} (got None)")
    return value


def _labels_metric(fn, name: str):
    def adapter(features, target: Target, **options) -> float:
        return fn(features, _need(target, "labels", name), **options)

    adapter.__doc__ = fn.__doc__
    return adapter


def _logme_adapter(features, target: Target, **options) -> float:
    if target.targets is not None and target.labels is None:
        return bl.logme(features, target.targets, regression=True, **options)
    return bl.logme(features, _need(target, "labels", "logme"), **options)


_logme_adapter.__doc__ = bl.logme.__doc__


def _flabel_metric(fn, name: str):
    def adapter(features, target: Target, **options) -> float:
        return fn(features, _need(target, "label_embeddings", name), **options)

    adapter.__doc__ = fn.__doc__
    return adapter


def _source_metric(fn, name: str):
    def adapter(features, target: Target, *, source_probs=None, model=None, **options) -> float:
        """Source-head metric: ``source_probs=[N, C_s]`` directly, or ``model=name`` to pick
        ``target.source_probs[name]`` (a single entry is used without a name)."""
        if source_probs is None:
            probs = target.source_probs or {}
            if model is not None and model in probs:
                source_probs = probs[model]
            elif model is None and len(probs) == 1:
                source_probs = next(iter(probs.values()))
            else:
                raise ValueError(
                    f"{name} needs the model's source-head probabilities [N, C_s]: pass source_probs=... "
                    f"or model=<name> with target.source_probs[<name>] (got model={model!r}, "
                    f"source_probs for {sorted(map(str, probs))})"
                )
        return fn(source_probs, _need(target, "labels", name), **options)

    adapter.__doc__ = fn.__doc__
    return adapter


register_metric("logme", _logme_adapter)
register_metric("logme_flabels", _flabel_metric(bl.logme_flabels, "logme_flabels"), needs=("label_embeddings",))
register_metric("emms_one", _flabel_metric(bl.emms_one, "emms_one"), needs=("label_embeddings",))
register_metric("hscore", _labels_metric(bl.hscore, "hscore"), needs=("labels",))
register_metric("hscore_regularized", _labels_metric(bl.hscore_regularized, "hscore_regularized"), needs=("labels",))
register_metric("leep", _source_metric(bl.leep, "leep"), needs=("labels", "source_probs"))
register_metric("nce", _source_metric(bl.nce, "nce"), needs=("labels", "source_probs"))
register_metric("nleep", _labels_metric(bl.nleep, "nleep"), needs=("labels",))
register_metric("transrate", _labels_metric(bl.transrate, "transrate"), needs=("labels",))
register_metric("sfda", _labels_metric(bl.sfda, "sfda"), needs=("labels",))
register_metric("gbc", _labels_metric(bl.gbc, "gbc"), needs=("labels",))
register_metric("parc", _labels_metric(bl.parc, "parc"), relative=True, needs=("labels",))
register_metric("knn", _labels_metric(bl.knn, "knn"), needs=("labels",))
