"""The benchmark's tasks as the transferability methods see them: every candidate's features of the
training split (extracted once, cached as .npy), the target (class indices, F-labels) and the ground truth.

    task = load("fashion", truth)   # truth: the JSON written by ground_truth / text_truth
    task.features["lite0-mid-r64"]  # [N, D] float32
    task.labels                     # F-labels in a form emms_score accepts (K embedders)
    task.target                     # emms_ext.selection.Target for the baselines

Vision tasks (digits, fashion) use ``vision``; text tasks (wordnet: gloss -> lexicographer class;
wordnet-words: gloss -> its head word, free text; wordnet-synonyms: gloss -> all its lemmas, several texts
per sample; wordnet-depth: gloss -> depth in the hypernym tree, regression) use ``text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emms_ext import ClassLabels, FreeTextLabels
from emms_ext.selection import Target

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "benchmarks" / "out" / "features"  # extracted features, one .npy per (task, split, candidate)
EXTRACTION = 2  # bump when feature extraction changes (2: vision candidates built in eval mode), so caches renew
VISION, TEXT = ("digits", "fashion"), ("wordnet", "wordnet-words", "wordnet-synonyms", "wordnet-depth")
# Prompts for the class names. Digits are written numerals, Fashion-MNIST items are photographed products,
# lexicographer classes are kinds of nouns.
TEMPLATES = {
    "digits": ("a photo of the handwritten digit {}.",),
    "fashion": ("a photo of a {}.",),
    "wordnet": ("a word for a kind of {}.",),
}


@dataclass
class Task:
    name: str
    features: dict  # candidate -> [N, D] float32 tensor (training split)
    labels: object  # F-labels: ClassLabels, K [N, L_k] blocks (free text), FreeTextLabels or [N, T, 1] (regression)
    target: Target
    truth: dict  # ground truth -> {candidate: value}, e.g. {"finetune": {...}, "probe": {...}}
    classes: list | None = None  # class names (None for free-text labels)


def truth_path(name: str, truth_dir: Path | None = None) -> Path:
    return Path(truth_dir or ROOT / "benchmarks" / "zoo") / f"truth_{name}.json"


def truth_command(name: str, path: Path) -> str:
    module = "ground_truth --target" if name in VISION else "text_truth --task"
    return f"python -m benchmarks.zoo.{module} {name} --out {path}"


def cached_features(name: str, truth: dict, n: int, compute) -> dict:
    """candidate -> features, computed by compute(candidate) once and kept under benchmarks/out/features/."""
    cache = CACHE / f"{name}-v{truth['version']}-x{EXTRACTION}-n{n}"
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for cand in truth["candidates"]:
        path = cache / f"{cand}.npy"
        if not path.exists():
            np.save(path, compute(cand))
        out[cand] = torch.from_numpy(np.load(path))
    return out


def ground_truths(truth: dict) -> dict:
    """ground truth -> {candidate: value} ("finetune", "probe": those the truth file has)."""
    gts = {gt: {c: row[gt] for c, row in truth["candidates"].items() if gt in row} for gt in ("finetune", "probe")}
    return {gt: values for gt, values in gts.items() if values}


def load(name: str, truth: dict, embedders=None) -> Task:
    """The task `name` with the split and candidates recorded in its ground-truth file."""
    from emms_ext.embed import classification_labels, free_text_labels, regression_labels

    gts = ground_truths(truth)
    if name in VISION:
        from . import ground_truth, vision

        xtr, ytr, _, _, classes = ground_truth.load_target(name, truth["n_train"], truth["n_test"])
        feats = cached_features(name, truth, len(ytr), lambda c: vision.extract(vision.build(c), xtr).numpy())
    elif name in TEXT:
        from . import text

        xtr, ytr, _, _, classes = text.load_task(name, truth["n_train"], truth["n_test"])
        feats = cached_features(name, truth, len(ytr), lambda c: text.extract(text.build(c), xtr).numpy())
    else:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(VISION + TEXT)}")
    if torch.is_tensor(ytr) and ytr.is_floating_point():  # regression: the targets are the F-labels (K = 1)
        fl = regression_labels(ytr)
        return Task(name, feats, fl, Target(targets=fl[:, :, 0], label_embeddings=fl, task="regression"), gts)
    if classes is None and isinstance(ytr[0], list):  # several texts per sample: one label row per text
        fl = free_text_labels(list(ytr), embedders, reduce="repeat")
        return Task(name, feats, fl, Target(label_embeddings=fl, task="captioning"), gts)
    if classes is None:  # free text: one label text per sample
        fl = free_text_labels(list(ytr), embedders, reduce="mean")
        return Task(name, feats, fl.labels, Target(label_embeddings=fl.labels, task="captioning"), gts)
    y = torch.as_tensor(np.asarray(ytr), dtype=torch.int64)
    fl = classification_labels(y, classes, embedders, templates=TEMPLATES[name])
    labels = ClassLabels(fl.table, fl.indices)
    return Task(
        name, feats, labels, Target(labels=y, label_embeddings=labels, task="classification"), gts, list(classes)
    )


def one_embedder(labels, k: int):
    """The same F-labels restricted to embedder k (K = 1)."""
    if isinstance(labels, ClassLabels):
        return ClassLabels([labels.table[k]], labels.indices)
    if isinstance(labels, FreeTextLabels):
        return FreeTextLabels([labels.labels[k]], labels.sample_index, labels.n_samples)
    if torch.is_tensor(labels):  # [N, L, K]
        return labels[:, :, k : k + 1]
    return [labels[k]]


def per_sample(labels) -> list[torch.Tensor]:
    """K blocks [M, L_k] of per-row label embeddings (class tables gathered by the samples' classes; one row
    per text for FreeTextLabels, whose features then repeat: ``rows(labels, x)``)."""
    if isinstance(labels, ClassLabels):
        return [torch.as_tensor(t)[labels.indices] for t in labels.table]
    if isinstance(labels, FreeTextLabels):
        return [torch.as_tensor(b) for b in labels.labels]
    if torch.is_tensor(labels):  # [N, L, K]
        return [labels[:, :, k] for k in range(labels.shape[-1])]
    return [torch.as_tensor(b) for b in labels]


def rows(labels, x: torch.Tensor) -> torch.Tensor:
    """Features x [N, D] with one row per label row of ``per_sample(labels)`` (repeated for FreeTextLabels)."""
    return labels.features(x) if isinstance(labels, FreeTextLabels) else x


def subset_labels(labels, idx: torch.Tensor):
    """The F-labels of the samples idx [n] (sorted), in the same form."""
    if isinstance(labels, ClassLabels):
        return ClassLabels(labels.table, torch.as_tensor(labels.indices)[idx])
    if isinstance(labels, FreeTextLabels):
        where = torch.full((labels.n_samples,), -1, dtype=torch.int64)
        where[idx] = torch.arange(len(idx))
        rows = where[labels.sample_index] >= 0
        return FreeTextLabels([b[rows] for b in labels.labels], where[labels.sample_index[rows]], len(idx))
    if torch.is_tensor(labels):
        return labels[idx]
    return [b[idx] for b in labels]


def subset(task: Task, idx: torch.Tensor) -> Task:
    """The task restricted to the training samples idx [n] (sorted): features, F-labels and target alike."""
    labels = subset_labels(task.labels, idx)
    t = task.target
    target = Target(
        labels=None if t.labels is None else t.labels[idx],
        targets=None if t.targets is None else t.targets[idx],
        label_embeddings=labels,
        task=t.task,
    )
    return Task(task.name, {c: x[idx] for c, x in task.features.items()}, labels, target, task.truth, task.classes)
