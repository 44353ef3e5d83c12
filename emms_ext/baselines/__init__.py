"""The field's transferability baselines (design.md section 3), each a plain function of one model's
features (or source-head predictions) and the target, registered in ``emms_ext.metrics`` for ``rank``.

Every function documents what higher means and whether its values are only meaningful relative to the zoo.
"""
from __future__ import annotations

from ..metrics import Target, register_metric
from .emms_one import emms_one
from .gbc import gbc
from .hscore import hscore, hscore_regularized, ledoit_wolf
from .knn import knn
from .leep import leep, nce, nleep
from .logme import logme, logme_flabels
from .parc import parc
from .sfda import sfda
from .transrate import transrate

__all__ = ["emms_one", "gbc", "hscore", "hscore_regularized", "knn", "ledoit_wolf", "leep", "logme",
           "logme_flabels", "nce", "nleep", "parc", "sfda", "transrate"]


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
        return logme(features, target.targets, regression=True, **options)
    return logme(features, _need(target, "labels", "logme"), **options)


_logme_adapter.__doc__ = logme.__doc__


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
                raise ValueError(f"{name} needs the model's source-head probabilities [N, C_s]: pass source_probs=... "
                                 f"or model=<name> with target.source_probs[<name>] (got model={model!r}, "
                                 f"source_probs for {sorted(map(str, probs))})")
        return fn(source_probs, _need(target, "labels", name), **options)

    adapter.__doc__ = fn.__doc__
    return adapter


register_metric("logme", _logme_adapter)
register_metric("logme_flabels", _flabel_metric(logme_flabels, "logme_flabels"), needs=("label_embeddings",))
register_metric("emms_one", _flabel_metric(emms_one, "emms_one"), needs=("label_embeddings",))
register_metric("hscore", _labels_metric(hscore, "hscore"), needs=("labels",))
register_metric("hscore_regularized", _labels_metric(hscore_regularized, "hscore_regularized"), needs=("labels",))
register_metric("leep", _source_metric(leep, "leep"), needs=("labels", "source_probs"))
register_metric("nce", _source_metric(nce, "nce"), needs=("labels", "source_probs"))
register_metric("nleep", _labels_metric(nleep, "nleep"), needs=("labels",))
register_metric("transrate", _labels_metric(transrate, "transrate"), needs=("labels",))
register_metric("sfda", _labels_metric(sfda, "sfda"), needs=("labels",))
register_metric("gbc", _labels_metric(gbc, "gbc"), needs=("labels",))
register_metric("parc", _labels_metric(parc, "parc"), relative=True, needs=("labels",))
register_metric("knn", _labels_metric(knn, "knn"), needs=("labels",))
