"""Vocabulary task adapters: classification, multi-label sets and VQA answers -> ``NamedClassLabels`` (a
class table of K blocks ``[C, L_k]`` plus ``indices [N]``), with the prompt templates and class-table
helpers they share."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from ...common.validate import check_texts
from .common import NamedClassLabels, clean_label, embed_texts, resolve_embedders

DEFAULT_TEMPLATES = ("a photo of a {}.",)


def _check_templates(templates) -> list[str]:
    if isinstance(templates, str):
        templates = [templates]
    templates = check_texts(templates, "templates")
    for i, t in enumerate(templates):
        if t.count("{}") != 1:
            raise ValueError(f"templates[{i}] must contain exactly one '{{}}' for the class name (got {t!r})")
    return templates


def _class_table(names: list[str], embs, templates, clean: bool, cache) -> list[torch.Tensor]:
    """K blocks [C, L_k]: each class's prompts embedded and averaged over the templates (CLIP-style prompt
    ensembling: one template's wording then matters less)."""
    words = [clean_label(n) if clean else n for n in names]
    texts = [tpl.format(w) for tpl in templates for w in words]  # [T * C], template-major
    blocks = embed_texts(texts, embs, cache=cache)
    return [b.reshape(len(templates), len(names), -1).mean(0) for b in blocks]


def _as_index_vector(labels, name: str) -> torch.Tensor | None:
    """int64 [N] if `labels` holds integers, None if it holds strings."""
    if isinstance(labels, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(labels)
        if t.dim() != 1 or t.dtype.is_floating_point or t.dtype == torch.bool:
            raise ValueError(
                f"{name} must be an integer vector [N] or a list of N strings (got {list(t.shape)} {t.dtype})"
            )
        return t.to(torch.int64)
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise ValueError(f"{name} must be a list of N class indices or names (got {type(labels).__name__})")
    if labels and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in labels):
        return torch.tensor([int(x) for x in labels], dtype=torch.int64)
    return None


# ------------------------------------------------------------------------------------------- tasks
def classification_labels(
    labels, class_names=None, embedders=None, *, templates=DEFAULT_TEMPLATES, clean: bool = True, cache="default"
) -> NamedClassLabels:
    """Classification: class names -> prompts -> class embeddings, gathered by the samples' classes.

    Args:
        labels: ``[N]`` class indices (then ``class_names`` is required), or N class-name strings.
        class_names: ``[C]`` names; default for string labels: their sorted distinct values.
        templates: prompt(s) with one ``{}``, e.g. ``"a photo of a {}."``; several are averaged. Use
            ``"{}"`` for the bare name (text classification).
        clean: turn ``_`` into spaces and ``/`` into " or " (``clean_label``).
    Returns: ``NamedClassLabels(table=K blocks [C, L_k], indices [N], names [C])``.
    """
    idx = _as_index_vector(labels, "labels")
    if idx is None:
        labels = check_texts(labels, "labels")
        names = check_texts(class_names, "class_names") if class_names is not None else sorted(set(labels))
        pos = {n: i for i, n in enumerate(names)}
        unknown = sorted({x for x in labels if x not in pos})
        if unknown:
            raise ValueError(f"labels must be names in class_names (got {len(unknown)} unknown, e.g. {unknown[:5]})")
        idx = torch.tensor([pos[x] for x in labels], dtype=torch.int64)
    else:
        if class_names is None:
            raise ValueError("class_names must be given (a list of C names) when labels are class indices")
        names = check_texts(class_names, "class_names")
        if idx.numel() == 0:
            raise ValueError("labels must hold N >= 1 class indices (got an empty list)")
        if int(idx.min()) < 0 or int(idx.max()) >= len(names):
            raise ValueError(
                f"labels must be class indices in [0, C={len(names)}) matching class_names "
                f"(got values in [{int(idx.min())}, {int(idx.max())}])"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct (got {len(names) - len(set(names))} duplicates)")
    table = _class_table(names, resolve_embedders(embedders), _check_templates(templates), clean, cache)
    return NamedClassLabels(table=table, indices=idx, names=list(names))


def multilabel_labels(
    multi_hot,
    class_names,
    embedders=None,
    *,
    templates=DEFAULT_TEMPLATES,
    clean: bool = True,
    empty_text: str | None = None,
    cache="default",
) -> NamedClassLabels:
    """Multi-label: each sample's label is the **mean of the embeddings of its positive classes** (for
    each model separately). Samples with the same label set share a row, so the result is vocabulary
    labels over the distinct label sets.

    Args:
        multi_hot: ``[N, C]`` 0/1 (or bool) matrix, ``multi_hot[i, c] = 1`` if sample i has class c.
        class_names: ``[C]`` names, embedded as in ``classification_labels``.
        empty_text: text used for samples with no positive class (e.g. "nothing"); None: such samples are
            an error.
    Returns: ``NamedClassLabels`` over the U distinct label sets (``names``: "a + b" per set).
    """
    names = check_texts(class_names, "class_names")
    n_classes = len(names)
    m = torch.as_tensor(np.asarray(multi_hot))
    if m.dim() != 2 or m.shape[1] != n_classes or m.shape[0] == 0:
        raise ValueError(
            f"multi_hot must be [N, C] with N >= 1 and C = len(class_names) = {len(names)} (got {list(m.shape)})"
        )
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("multi_hot must hold only 0/1 (or bool) entries")
    if len(set(names)) != n_classes:
        raise ValueError(f"class_names must be distinct (got {n_classes - len(set(names))} duplicates)")
    m = m.to(torch.float64)
    empty = m.sum(1) == 0
    if bool(empty.any()):
        if empty_text is None:
            rows = torch.nonzero(empty).flatten()[:5].tolist()
            raise ValueError(
                f"multi_hot has {int(empty.sum())} rows with no positive class (e.g. rows {rows}); "
                "pass empty_text='...' to give them a label"
            )
        m = torch.cat([m, empty[:, None].to(torch.float64)], 1)  # one pseudo-class for "no label"
        names = names + check_texts([empty_text], "empty_text")
    sets, inverse = torch.unique(m, dim=0, return_inverse=True)  # [U, C'], [N]
    embs = resolve_embedders(embedders)
    table = _class_table(names[:n_classes], embs, _check_templates(templates), clean, cache)
    if len(names) > n_classes:  # the "no label" text is embedded verbatim, without a template
        table = [torch.cat([t, b]) for t, b in zip(table, embed_texts([empty_text], embs, cache=cache))]
    weights = sets / sets.sum(1, keepdim=True)  # [U, C']: mean over the positive classes
    table = [(weights @ t.to(torch.float64)).to(torch.float32) for t in table]
    set_names = [" + ".join(n for n, on in zip(names, row) if on) for row in sets.tolist()]
    return NamedClassLabels(table=table, indices=inverse, names=set_names)


def normalize_answer(answer: str) -> str:
    """VQA-style answer normalization: lower case, no trailing period, single spaces."""
    return re.sub(r"\s+", " ", answer.strip().lower()).rstrip(".").strip()


def _majority(item, i: int, name: str) -> str:
    """A string, or the most frequent of several annotators' answers (ties: the first given)."""
    if isinstance(item, str):
        return normalize_answer(item)
    group = [normalize_answer(a) for a in check_texts(item, f"{name}[{i}]")]
    return Counter(group).most_common(1)[0][0]


def vqa_labels(answers, embedders=None, *, vocabulary=None, template: str = "{}", cache="default") -> NamedClassLabels:
    """VQA: answers are drawn from an answer vocabulary, so they are vocabulary labels.

    Args:
        answers: N items, each an answer string or a list of annotators' answers (the most frequent wins).
        vocabulary: the answer vocabulary (default: the distinct answers); answers are normalized
            (``normalize_answer``) before lookup.
        template: prompt with one ``{}`` around the answer.
    Returns: ``NamedClassLabels`` over the vocabulary.
    """
    if isinstance(answers, str) or not isinstance(answers, Sequence) or len(answers) == 0:
        raise ValueError("answers must be a non-empty list of N answers (strings or lists of strings)")
    chosen = [_majority(a, i, "answers") for i, a in enumerate(answers)]
    if vocabulary is None:
        vocab = sorted(set(chosen))
    else:
        vocab = list(dict.fromkeys(normalize_answer(v) for v in check_texts(vocabulary, "vocabulary")))
    pos = {v: i for i, v in enumerate(vocab)}
    unknown = sorted({a for a in chosen if a not in pos})
    if unknown:
        raise ValueError(f"answers must be in vocabulary (got {len(unknown)} answers outside it, e.g. {unknown[:5]})")
    table = _class_table(vocab, resolve_embedders(embedders), _check_templates(template), False, cache)
    return NamedClassLabels(table=table, indices=torch.tensor([pos[a] for a in chosen]), names=vocab)
