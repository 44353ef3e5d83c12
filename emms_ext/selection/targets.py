"""How ``rank`` reads a target: labels, texts or ready F-labels of a task (``TASKS``) -> a ``Target``,
with F-labels from ``emms_ext.embed`` (imported only then) when the metric needs them (``build_target``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..common.validate import describe
from ..core.labels import ClassLabels, FreeTextLabels

TASKS = ("classification", "multilabel", "regression", "captioning", "free_text", "text_qa", "vqa", "referring")


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


# ------------------------------------------------------------------------------------------ target
def is_f_labels(x) -> bool:
    """True for F-labels in any form the score takes (ready to use, no adapter needed)."""
    if isinstance(x, (ClassLabels, FreeTextLabels)):
        return True
    if (torch.is_tensor(x) or isinstance(x, np.ndarray)) and x.ndim == 3:
        return True
    return (
        isinstance(x, (list, tuple))
        and len(x) > 0
        and all((torch.is_tensor(z) or isinstance(z, np.ndarray)) and z.ndim == 2 for z in x)
    )


def _label_rows(fl) -> int:
    if isinstance(fl, ClassLabels):
        return len(fl.indices)
    if isinstance(fl, FreeTextLabels):
        return int(fl.n_samples)
    return int(fl[0].shape[0]) if isinstance(fl, (list, tuple)) else int(fl.shape[0])


def _texts(target, texts, what: str):
    x = texts if texts is not None else target
    if x is None or isinstance(x, str) or not isinstance(x, Sequence):
        raise ValueError(f"task {what!r} needs the texts: a list of N strings (target=... or texts=...)")
    return list(x)


def build_target(
    target,
    task: str = "classification",
    *,
    class_names=None,
    texts=None,
    embedders=None,
    need_embeddings: bool = True,
    templates=None,
    label_cache="default",
    reduce: str = "repeat",
) -> Target:
    """The target as metrics see it, with F-labels when ``need_embeddings`` (``FreeTextLabels`` when a
    sample has several texts: with ``reduce="repeat"`` the scores repeat its features per text, with
    ``"mean"`` its texts' embeddings are averaged)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)} (got {task!r})")
    if isinstance(target, Target):
        if need_embeddings and target.label_embeddings is None and target.labels is not None:
            fl = build_target(
                target.labels,
                "classification",
                class_names=class_names,
                embedders=embedders,
                templates=templates,
                label_cache=label_cache,
            )
            target = Target(
                labels=target.labels,
                targets=target.targets,
                label_embeddings=fl.label_embeddings,
                source_probs=target.source_probs,
                task=target.task,
            )
        return target
    if target is not None and is_f_labels(target):
        labels = torch.as_tensor(target.indices).to(torch.int64) if isinstance(target, ClassLabels) else None
        return Target(labels=labels, label_embeddings=target, task=task)

    from .. import embed as E  # lazy: transformers loads only with the first text model

    kw = {"cache": label_cache}
    tpl = {} if templates is None else {"templates": templates}
    if task == "classification":
        if target is None:
            raise ValueError("task 'classification' needs the labels: [N] class indices or N class names")
        idx, names = _class_indices(target, class_names)
        fl = None
        if need_embeddings:
            if names is None:
                raise ValueError(
                    "class_names must be given (a list of C names) when labels are class indices; "
                    "EMMS embeds the class names as F-labels"
                )
            fl = E.classification_labels(idx, names, embedders, **tpl, **kw)
        return Target(labels=idx, label_embeddings=fl, task=task)
    if task == "regression":
        fl = E.regression_labels(target)
        return Target(targets=fl[:, :, 0], label_embeddings=fl, task=task)
    if task == "multilabel":
        if class_names is None:
            raise ValueError("task 'multilabel' needs class_names (C names) and an [N, C] 0/1 target")
        m = torch.as_tensor(np.asarray(target))
        fl = E.multilabel_labels(m, class_names, embedders, **tpl, **kw) if need_embeddings else None
        return Target(targets=m.to(torch.float64), label_embeddings=fl, task=task)
    if task == "vqa":
        fl = E.vqa_labels(_texts(target, texts, task), embedders, **kw)
        return Target(labels=torch.as_tensor(fl.indices), label_embeddings=fl, task=task)
    if task == "text_qa":
        return Target(label_embeddings=E.text_qa_labels(_texts(target, texts, task), embedders, **kw), task=task)
    if task in ("captioning", "free_text"):
        fl = E.free_text_labels(_texts(target, texts, task), embedders, reduce=reduce, **kw)
        return Target(label_embeddings=fl, task=task)
    raise ValueError(
        "task 'referring' needs boxes and image sizes: build the F-labels with "
        "emms_ext.embed.referring_expression_labels(expressions, boxes, image_sizes) and pass them "
        "as the target"
    )


def _class_indices(labels, class_names):
    """([N] int64 indices, class names or None) from int or string labels."""
    if isinstance(labels, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(labels) if not (isinstance(labels, np.ndarray) and labels.dtype.kind in "USO") else None
        if t is not None:
            if t.dim() != 1 or t.dtype.is_floating_point or t.dtype == torch.bool:
                raise ValueError(f"labels must be [N] integer class indices or N class names (got {describe(labels)})")
            idx = t.to(torch.int64)
            names = None if class_names is None else [str(c) for c in class_names]
            if names is not None and idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(names)):
                raise ValueError(
                    f"labels must be class indices in [0, C={len(names)}) matching class_names "
                    f"(got values in [{int(idx.min())}, {int(idx.max())}])"
                )
            return idx, names
        labels = labels.tolist()
    if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty list of N class indices or names (got {describe(labels)})")
    if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in labels):
        return _class_indices(torch.tensor([int(x) for x in labels]), class_names)
    labels = [str(x) for x in labels]
    names = [str(c) for c in class_names] if class_names is not None else sorted(set(labels))
    pos = {n: i for i, n in enumerate(names)}
    unknown = sorted({x for x in labels if x not in pos})
    if unknown:
        raise ValueError(f"labels must be names in class_names (got {len(unknown)} unknown, e.g. {unknown[:5]})")
    return torch.tensor([pos[x] for x in labels], dtype=torch.int64), names


def target_rows(target: Target) -> int | None:
    """The number of samples N the target describes (None when it holds nothing to count)."""
    for t in (target.labels, target.targets):
        if t is not None:
            return int(len(t))
    return None if target.label_embeddings is None else _label_rows(target.label_embeddings)
