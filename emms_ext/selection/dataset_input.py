"""A ``datasets.Dataset`` (or a dict of columns) as ``rank``'s target: the input column feeds model folders
(``embed.hub``), the label column becomes the target.

Labels: a ``ClassLabel`` column gives class indices and names (classification); a list of ``ClassLabel``
gives a multi-hot matrix (multilabel); floats are regression targets; strings are class names; plain
integers are class indices named by their values. ``sample`` keeps a seeded subset: a count or a fraction,
stratified by class for class labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass
class DatasetTarget:
    """What ``from_dataset`` reads from a dataset."""

    inputs: list  # N texts or images, in the order of the target
    modality: str  # "text" | "image"
    target: object  # what rank() takes as target for `task`
    task: str
    class_names: list | None


def is_dataset(x) -> bool:
    """A ``datasets.Dataset`` (duck-typed: columns and features) or a dict of equally long columns."""
    return (hasattr(x, "column_names") and hasattr(x, "features")) or (
        isinstance(x, Mapping) and len(x) > 0 and all(isinstance(v, (list, tuple, np.ndarray)) for v in x.values())
    )


def _column(ds, name: str, what: str) -> list:
    columns = list(ds.column_names) if hasattr(ds, "column_names") else list(ds)
    if name not in columns:
        raise ValueError(f"{what} must name a column of the dataset (got {name!r}; columns: {columns})")
    return list(ds[name])


def _feature(ds, name: str):
    return ds.features[name] if hasattr(ds, "features") else None


def _sample(n: int, sample, classes: np.ndarray | None, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded subset: `sample` rows (int) or that fraction (float in (0, 1])."""
    if sample is None:
        return np.arange(n)
    if isinstance(sample, float) and 0 < sample <= 1:
        k = max(1, round(sample * n))
    elif isinstance(sample, int) and not isinstance(sample, bool) and 1 <= sample:
        k = min(sample, n)
    else:
        raise ValueError(f"sample must be a count >= 1 or a fraction in (0, 1] (got {sample!r})")
    rng = np.random.default_rng(seed)
    if classes is None:
        return np.sort(rng.choice(n, k, replace=False))
    picks = []
    for c in np.unique(classes):  # proportional per class, at least one each
        rows = np.flatnonzero(classes == c)
        picks.append(rng.choice(rows, max(1, round(k * len(rows) / n)), replace=False))
    return np.sort(np.concatenate(picks))


FREE_TEXT = ("captioning", "free_text", "text_qa")


def from_dataset(ds, *, text_column=None, image_column=None, label_column=None, sample=None, seed: int = 0, task=None):
    """The inputs and the target of a dataset (see the module docstring) -> ``DatasetTarget``. With ``task``
    one of FREE_TEXT the label column holds texts (a string or a list of strings per row)."""
    if (text_column is None) == (image_column is None):
        raise ValueError("a dataset target needs exactly one of text_column=... or image_column=...")
    if label_column is None:
        raise ValueError("a dataset target needs label_column=... (the column to predict)")
    modality = "text" if text_column is not None else "image"
    inputs = _column(ds, text_column or image_column, "text_column" if modality == "text" else "image_column")
    labels = _column(ds, label_column, "label_column")
    feat = _feature(ds, label_column)
    names = getattr(feat, "names", None)
    inner = getattr(feat, "feature", None)
    if task in FREE_TEXT:
        keep = _sample(len(inputs), sample, None, seed)
        return DatasetTarget([inputs[i] for i in keep], modality, [labels[i] for i in keep], task, None)
    if names is not None:  # ClassLabel
        y = np.asarray(labels, dtype=np.int64)
        task, classes = "classification", y
    elif getattr(inner, "names", None) is not None or (labels and isinstance(labels[0], (list, tuple))):
        names = list(getattr(inner, "names", None) or sorted({int(v) for row in labels for v in row}))
        y = np.zeros((len(labels), len(names)))
        for i, row in enumerate(labels):
            y[i, [names.index(v) if not getattr(inner, "names", None) else int(v) for v in row]] = 1
        names = [str(n) for n in names]
        task, classes = "multilabel", None
    elif all(isinstance(v, (float, np.floating)) for v in labels):
        y = np.asarray(labels, dtype=np.float64)
        task, classes = "regression", None
    elif all(isinstance(v, str) for v in labels):
        names = sorted(set(labels))
        y = np.array([names.index(v) for v in labels], dtype=np.int64)
        task, classes = "classification", y
    elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
        y = np.asarray(labels, dtype=np.int64)
        names = [str(v) for v in range(int(y.max()) + 1)]
        task, classes = "classification", y
    else:
        raise ValueError(
            f"label_column {label_column!r} must hold class labels (ClassLabel, strings or integers), lists of "
            "them (multi-label) or floats (regression)"
        )
    keep = _sample(len(inputs), sample, classes, seed)
    inputs = [inputs[i] for i in keep]
    y = y[keep]
    return DatasetTarget(inputs, modality, y, task, names)
