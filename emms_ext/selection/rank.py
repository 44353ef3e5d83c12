"""``rank(zoo, target)``: score every model of a zoo on one target task and sort them.

    from emms_ext import rank
    r = rank({"resnet": feats_a, "vit": "vit.npy", "effnet": model}, labels, class_names=names,
             dataloader=loader)
    print(r); r.to_json("ranking.json"); r.plot("ranking.png")

Features come from memory, files, chunk iterators or ``nn.Module``s (``features.py``); the target
becomes a ``Target`` and, when the metric needs them, F-labels through ``emms_ext.embed`` (imported
only then). EMMS metrics score the whole zoo in one ``emms_scores`` call; other registered metrics run per
model. A model that cannot be scored lands in ``Ranking.failures``; the others are ranked.

Here: the rank loop over the zoo; turning the target into a ``Target`` is ``targets.py``.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ..common.validate import check_features, describe
from ..common.warn import SaturationWarning, warn
from ..core.score import STREAMING_MODES, emms_scores
from .consensus import DEFAULT_MEMBERS, aggregate
from .dataset_input import from_dataset, is_dataset
from .features import check_dataloader, extract_features, load_features, materialize
from .metrics import DEFAULT_METRIC, EMMS_METRICS, get_metric
from .overlap import FREE_TEXT_TASKS, find_overlaps, outside_embedders, overlap_message
from .ranking import Ranking
from .saturation import saturated
from .targets import Target, build_target, is_f_labels, target_rows
from .uncertainty import fold_assignment, fold_scores

_LABEL_OPTIONS = ("templates", "label_cache", "reduce")  # metric_options keys that go to the F-label adapters


# ------------------------------------------------------------------------------------------- zoo
def _prepare(name, entry, *, dataloader, layer, cache_dir, device, progress, stream_ok: bool):
    """Features of one zoo entry: a tensor / array, or (when stream_ok) an iterable of chunks."""
    if isinstance(entry, nn.Module):
        dl = dataloader.get(name) if isinstance(dataloader, Mapping) else dataloader
        if dl is None:
            raise ValueError(
                f"model {name!r} is an nn.Module: pass dataloader=... (the target inputs, in the "
                "order of the labels) to extract its features"
            )
        lay = layer.get(name) if isinstance(layer, Mapping) else layer
        return extract_features(entry, dl, lay, device=device, cache_dir=cache_dir, progress=progress, name=str(name))
    if isinstance(entry, (str, os.PathLike)):
        return load_features(entry)
    if torch.is_tensor(entry) or isinstance(entry, np.ndarray) or stream_ok:
        return entry
    return materialize(entry, str(name))


def _one_shot(dl) -> bool:
    return dl is not None and not isinstance(dl, Mapping) and iter(dl) is dl


# ------------------------------------------------------------------------------------------ rank
def rank(
    zoo,
    target=None,
    metric=None,
    *,
    task: str = "classification",
    class_names=None,
    texts=None,
    embedders=None,
    dataloader=None,
    layer=None,
    cache_dir=None,
    device=None,
    progress=None,
    errors: str = "skip",
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    sample=None,
    layers="last",
    pooling: str = "mean",
    uncertainty: bool = False,
    folds: int = 10,
    seed: int = 0,
    **metric_options,
) -> Ranking:
    """Rank a zoo of models by predicted transferability to one target task (higher score = better).

    Args:
        zoo: dict name -> features: an ``[N, D]`` tensor / numpy array; a feature file path (``.npy``,
            ``.pt`` / ``.pth``, ``.safetensors``); an iterable of ``[n_i, D]`` chunks (streamed by EMMS); or
            an ``nn.Module`` whose features are extracted from ``dataloader`` (``emms_ext.selection.features``).
        target: the task's labels: ``[N]`` class indices or names (classification, with ``class_names``),
            ``[N]`` / ``[N, T]`` floats (regression), ``[N, C]`` 0/1 (multilabel), answers or texts (vqa,
            text_qa, captioning — or ``texts=``); or ready F-labels (``[N, L, K]``, a list of K ``[N, L_k]``,
            ``ClassLabels``, ``FreeTextLabels``); or a ``Target``.
        metric: a registered metric name (``metrics.available_metrics()``; default None:
            ``metrics.DEFAULT_METRIC``, chosen by the regimes benchmark; "emms" is the paper's EMMS, exact),
            or a function ``fn(features [N, D], target: Target, **options) -> float``, or ``"consensus"``:
            the mean normalized rank over ``metrics=[...]`` (default ``consensus.DEFAULT_MEMBERS``, those
            that apply to the task; features extracted once; ``details["members"]`` keeps each ranking).
        task: how to read ``target`` (see ``TASKS``).
        class_names: the C class names (classification / multilabel).
        texts: per-sample texts for free-text tasks.
        embedders: text models for the F-labels (names or embedders; default ``embed.default_embedders()``),
            or ``"outside"``: the installed offline models that overlap no candidate (same name / folder or
            shared weights; ``overlap.py``). On free text a candidate that is (part of) an embedder gets one
            warning, and ``Ranking.overlaps`` records it.
        dataloader: the target inputs for ``nn.Module`` entries (not shuffled; batches are tensors,
            ``(inputs, labels)`` tuples or dicts); a dict name -> dataloader for per-model inputs.
        layer: which activations are the features (default: the input of the last ``nn.Linear``); a
            module name / module (its output), ``(layer, "input"|"output")``, or a dict name -> layer.
        cache_dir: feature cache folder (default ``features/`` under ``$EMMS_EXT_CACHE`` or
            ``~/.cache/emms_ext``; False: no cache).
        device: where models run and scores are computed (default: where the model / features are).
        progress: progress bars (None: automatic).
        errors: "skip" (a model that fails lands in ``Ranking.failures``) or "raise".
        metric_options: passed to the metric (for EMMS: ``ridge``, ``mode``, ``precision``, ...);
            ``templates``, ``label_cache`` and ``reduce`` (several texts per sample: "repeat", the
            default, or "mean") go to the F-label adapters instead.

        text_column, image_column, label_column: with a ``datasets.Dataset`` (or a dict of columns) as the
            target: the input column (texts or PIL images) that model folders / hub ids in the zoo run over,
            and the column to predict (``ClassLabel`` -> classification with its names, lists of
            ``ClassLabel`` -> multilabel, floats -> regression); see ``dataset_input.py``.
        sample: with a dataset target, keep a seeded subset: a count or a fraction (stratified by class).
        layers: for model folders / hub ids: "last" (default), "all" (every hidden layer a candidate
            "name@layer", from one forward pass), "mean" (the mean of the layers), or layer indices
            (0 = the embedding layer's output).
        pooling: token pooling of text models: "mean" (masked, default) or "cls".
        uncertainty: also re-score every model on the ``folds`` leave-one-fold-out subsets (stratified by
            class, fixed by ``seed``, the same for every model): ``Ranking.stderr``, ``.prob_better(a, b)``,
            ``.top_set()``, error bars in the table, plot and exports. Costs ``folds`` extra scorings
            (EMMS: batched over the zoo per fold); features are then held in memory.

    Returns a ``Ranking``.
    """
    start = time.perf_counter()
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip' (got {errors!r})")
    if isinstance(zoo, (list, tuple)) and all(isinstance(z, (str, os.PathLike)) for z in zoo):
        from ..embed.hub import model_name

        zoo = {model_name(z): z for z in zoo}  # model folders / hub ids, named by their folder or id
    if not isinstance(zoo, Mapping):
        raise ValueError(
            f"zoo must be a dict name -> features / file / nn.Module / model folder, or a list of model folders "
            f"or hub ids (got {describe(zoo)})"
        )
    if not zoo:
        raise ValueError("zoo must hold at least one model (got an empty dict)")
    extraction_failures, model_refs = {}, {}
    if is_dataset(target):
        zoo, target, task, class_names, extraction_failures, model_refs = _dataset_zoo(
            zoo, target, task, text_column, image_column, label_column, sample, layers, pooling, cache_dir, progress
        )
    elif text_column or image_column or label_column:
        raise ValueError(
            "text_column / image_column / label_column need a datasets.Dataset (or dict of columns) target"
        )
    label_opts = {k: metric_options.pop(k) for k in _LABEL_OPTIONS if k in metric_options}
    metric = DEFAULT_METRIC if metric is None else metric
    if isinstance(metric, str) and metric == "consensus":
        members = metric_options.pop("metrics", None)
        return _consensus(
            zoo,
            target,
            members,
            dict(task=task, class_names=class_names, texts=texts, embedders=embedders, **label_opts),
            dict(dataloader=dataloader, layer=layer, cache_dir=cache_dir, device=device, progress=progress),
            errors,
            metric_options,
            dict(uncertainty=uncertainty, folds=folds, seed=seed),
        )
    if callable(metric) and not isinstance(metric, str):
        fn, name, relative, needs = metric, getattr(metric, "__name__", "custom"), False, ()
    else:
        spec = get_metric(metric)
        fn, name, relative, needs = spec.fn, spec.name, spec.relative, spec.needs
    emms_mode = EMMS_METRICS.get(name) if isinstance(metric, str) else None
    if emms_mode is not None:
        emms_mode = metric_options.pop("mode", emms_mode)

    t0 = time.perf_counter()
    need_emb = emms_mode is not None or "label_embeddings" in needs
    used, overlaps = _resolve_embedders({**zoo, **model_refs}, target, task, embedders, need_emb)
    if used is not None:
        embedders = used
    # On free text an overlap inflates scores: one warning. Class-like tasks stay quiet (a few class names
    # span the class space whatever model embeds them).
    overlap_note = overlap_message(overlaps) if overlaps and task in FREE_TEXT_TASKS else None
    if overlap_note:
        warn(overlap_note)
    tgt = build_target(
        target,
        task,
        class_names=class_names,
        texts=texts,
        embedders=embedders,
        need_embeddings=need_emb,
        templates=label_opts.get("templates"),
        label_cache=label_opts.get("label_cache", "default"),
        reduce=label_opts.get("reduce", "repeat"),
    )
    for field_name in needs:
        if getattr(tgt, field_name, None) in (None, {}):
            raise ValueError(
                f"metric {name!r} needs target.{field_name}, which this target does not have "
                f"(task {task!r}); pass it in an emms_ext.selection.Target"
            )
    N = target_rows(tgt)
    fold_of = fold_assignment(tgt, N, folds, seed) if uncertainty else None
    label_s = time.perf_counter() - t0
    if any(isinstance(m, nn.Module) for m in zoo.values()):
        if _one_shot(dataloader):
            dataloader = list(dataloader)  # every model needs its own pass over the same batches
        for dl in dataloader.values() if isinstance(dataloader, Mapping) else [dataloader]:
            if dl is not None:
                check_dataloader(dl)

    failures, per_model, feats, recorded = {}, {}, {}, []

    def fail(model, exc):
        if errors == "raise":
            raise exc
        failures[model] = str(exc) or type(exc).__name__

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for mname, entry in zoo.items():
            t = time.perf_counter()
            try:
                x = _prepare(
                    mname,
                    entry,
                    dataloader=dataloader,
                    layer=layer,
                    cache_dir=cache_dir,
                    device=device,
                    progress=progress,
                    stream_ok=emms_mode in STREAMING_MODES and not uncertainty,
                )
                feats[mname] = x
            except (ValueError, FileNotFoundError, RuntimeError, TypeError) as exc:
                fail(mname, exc)
            per_model[mname] = time.perf_counter() - t

        t = time.perf_counter()
        scores, details = {}, {}
        if emms_mode is not None:
            res = emms_scores(
                feats,
                tgt.label_embeddings,
                mode=emms_mode,
                errors=errors,
                progress=progress,
                device=device,
                folds=fold_of,
                **metric_options,
            )
            failures.update(res.failures)
            scores = res.scores
            details = dict(res)
            per_fold = {n: r.fold_scores for n, r in res.items() if r.fold_scores is not None}
            no_se = {n: w for n, r in res.items() for w in r.warnings if w.startswith("no standard error")}
        else:
            ready = {}
            for mname, x in feats.items():
                tm = time.perf_counter()
                try:
                    xv = check_features(
                        materialize(x, str(mname)), f"features[{mname!r}]", N=int(N), n_source="the target's N"
                    )
                    if device is not None:
                        xv = xv.to(device)
                    s = float(fn(xv, tgt, **metric_options))
                    if not np.isfinite(s):
                        raise ValueError(f"metric {name!r} returned a non-finite score ({s})")
                    scores[mname], ready[mname] = s, xv
                except (ValueError, RuntimeError, TypeError, np.linalg.LinAlgError) as exc:
                    fail(mname, exc)
                per_model[mname] += time.perf_counter() - tm
            per_fold, no_se = fold_scores(fn, ready, tgt, fold_of, metric_options) if uncertainty else ({}, {})
        scoring_s = time.perf_counter() - t
        recorded = list(caught)

    if emms_mode is not None and feats:
        share = scoring_s / len(feats)  # one batched call: each model gets an equal share
        for mname in feats:
            per_model[mname] += share
    messages = [overlap_note] if overlap_note else []
    messages += [f"model {n!r}: {why}" for n, why in no_se.items()]
    saturation = saturated(scores, name, None if N is None else int(N), _widths(feats))
    if saturation:
        warn(saturation, SaturationWarning)
        messages.append(saturation)
    # A metric's own SaturationWarning comes once per model (and again per fold subset): one per metric is
    # enough, and none when the zoo-level message above already says it.
    sat_said = saturation is not None
    for w in recorded:
        if issubclass(w.category, SaturationWarning):
            if sat_said:
                continue
            sat_said = True
        msg = str(w.message)
        if not (msg.startswith("model ") and " skipped: " in msg):
            messages.append(msg)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    timings = {"per_model": per_model, "labels": label_s, "scoring": scoring_s, "total": time.perf_counter() - start}
    return Ranking(
        scores=scores,
        metric=name,
        relative=relative,
        timings=timings,
        warnings=messages,
        failures={**extraction_failures, **{k: failures[k] for k in zoo if k in failures}},
        details=details,
        embedders=None if used is None else [str(e.name) for e in used],
        overlaps=overlaps,
        fold_scores=per_fold,
        saturation=saturation,
    )


def _widths(feats: Mapping) -> dict:
    """name -> feature width D of the in-memory features (streams have none before they are read)."""
    return {n: int(x.shape[1]) for n, x in feats.items() if getattr(x, "ndim", 0) == 2}


def _dataset_zoo(zoo, ds, task, text_column, image_column, label_column, sample, layers, pooling, cache_dir, progress):
    """A dataset target: (zoo with each model folder / hub id replaced by its layer candidates' features,
    the target, task, class names, extraction failures, candidate -> its model folder)."""
    from ..embed.hub import is_model_ref, zoo_features

    dt = from_dataset(
        ds, text_column=text_column, image_column=image_column, label_column=label_column, sample=sample, task=task
    )
    refs = {name: entry for name, entry in zoo.items() if is_model_ref(entry)}
    feats, failed = zoo_features(
        refs, dt.inputs, modality=dt.modality, layers=layers, pooling=pooling, cache_dir=cache_dir, progress=progress
    )
    out = {}
    for name, entry in zoo.items():  # keep the zoo's order; a model's layers in place of the model
        if name in refs:
            out.update({k: v for k, v in feats.items() if k.rsplit("@", 1)[0] == str(name)})
        else:
            out[name] = entry
    if not out:
        raise ValueError(f"no candidate left to rank: every model failed ({failed})")
    behind = {k: refs[k.rsplit("@", 1)[0]] for k in out if "@" in k and k.rsplit("@", 1)[0] in refs}
    return out, dt.target, dt.task, dt.class_names, failed, behind


def _resolve_embedders(zoo: Mapping, target, task: str, embedders, need_emb: bool):
    """(the loaded F-label embedders or None, candidate -> embedders it is part of) when rank builds the
    F-labels itself; ``embedders="outside"`` keeps only those that overlap no candidate."""
    if not need_emb or target is None or isinstance(target, Target) or is_f_labels(target):
        return None, {}  # ready F-labels, or none needed: no embedder to choose
    if isinstance(embedders, str) and embedders == "outside":
        return outside_embedders(zoo), {}
    from ..embed.tasks import resolve_embedders

    used = resolve_embedders(embedders)
    return used, find_overlaps(zoo, used)


def _consensus(
    zoo: Mapping, target, members, target_opts: dict, feature_opts: dict, errors: str, options: dict, se_opts: dict
):
    """``metric="consensus"``: the target and the features once, every member metric on them, then the rank
    aggregation of ``consensus.py``."""
    start = time.perf_counter()
    if options:
        raise ValueError(f"metric='consensus' takes metrics=[...] only (got options {sorted(options)})")
    task = target_opts.pop("task")
    label_opts = {k: target_opts.pop(k) for k in _LABEL_OPTIONS if k in target_opts}
    used, overlaps = _resolve_embedders(zoo, target, task, target_opts.pop("embedders"), True)
    tgt = build_target(target, task, embedders=used, **target_opts, **label_opts)
    applicable = [m for m in (members or DEFAULT_MEMBERS) if _applies(m, tgt)]
    if members is not None and len(applicable) < len(members):
        bad = [m for m in members if m not in applicable]
        raise ValueError(f"metrics {bad} do not apply to this target (task {task!r}); members must apply to it")
    if not applicable:
        raise ValueError(f"none of the consensus members {list(members or DEFAULT_MEMBERS)} applies to task {task!r}")
    if _one_shot(feature_opts["dataloader"]):
        feature_opts["dataloader"] = list(feature_opts["dataloader"])
    failures, feats = {}, {}
    for name, entry in zoo.items():
        try:
            feats[name] = materialize(_prepare(name, entry, stream_ok=False, **feature_opts), str(name))
        except (ValueError, FileNotFoundError, RuntimeError, TypeError) as exc:
            if errors == "raise":
                raise
            failures[name] = str(exc) or type(exc).__name__
    runs = {
        m: rank(feats, tgt, m, task=task, errors=errors, device=feature_opts["device"], progress=False, **se_opts)
        for m in applicable
    }
    scores = aggregate({m: r.scores for m, r in runs.items()})
    per_fold = {}
    if se_opts["uncertainty"]:  # the members' fold scores are paired (one assignment): aggregate fold by fold
        have = [n for n in scores if all(n in r.fold_scores for r in runs.values())]
        by_fold = [
            aggregate({m: {n: r.fold_scores[n][f] for n in have} for m, r in runs.items()})
            for f in range(se_opts["folds"] if have else 0)
        ]
        per_fold = {n: [fold[n] for fold in by_fold] for n in have}
    for m, r in runs.items():
        for name, why in r.failures.items():
            failures.setdefault(name, f"{m}: {why}")
    messages = list(dict.fromkeys(w for r in runs.values() for w in r.warnings))
    return Ranking(
        scores=scores,
        metric="consensus",
        relative=True,
        timings={"total": time.perf_counter() - start},
        warnings=messages,
        failures={k: failures[k] for k in zoo if k in failures},
        details={"members": {m: r.scores for m, r in runs.items()}},
        embedders=None if used is None else [str(e.name) for e in used],
        overlaps=overlaps,
        fold_scores=per_fold,
    )


def _applies(metric: str, tgt: Target) -> bool:
    spec = get_metric(metric)
    if metric == "logme":
        return tgt.labels is not None or tgt.targets is not None
    return all(getattr(tgt, f, None) not in (None, {}) for f in spec.needs)
