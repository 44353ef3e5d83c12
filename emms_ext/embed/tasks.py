"""Task adapters: labels of any task -> F-labels for ``emms_score`` / ``emms_scores`` (design.md section 1).

Every adapter takes ``embedders`` (a list of embedders or model names; None = ``default_embedders()``) and
``cache`` ("default" = the on-disk cache at ``$EMMS_EXT_CACHE`` or ``~/.cache/emms_ext/embeddings``; a
folder; an ``EmbeddingCache``; or None for no cache) and returns what the score API takes:

* vocabulary labels (classification, multi-label sets, VQA answers) -> ``ClassLabels`` (a class table of
  K blocks ``[C, L_k]`` plus ``indices [N]``), so the solver works in the C-dimensional class basis;
* per-sample text (text-QA answers, referring expressions) -> a list of K blocks ``[N, L_k]``;
* several texts per sample (captions) -> ``FreeTextLabels`` (blocks ``[M, L_k]`` plus the sample of each
  row, to repeat the features) or their average per sample;
* regression targets -> ``[N, T, 1]`` (the targets themselves, no text model).

Each distinct text is embedded once per model (and, with the cache, once ever).
"""
from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..labels import ClassLabels
from .base import TextEmbedder, check_texts
from .cache import EmbeddingCache

DEFAULT_TEMPLATES = ("a photo of a {}.",)


@dataclass
class NamedClassLabels(ClassLabels):
    """``ClassLabels`` that also keep the class names (``names [C]``) whose texts were embedded."""

    names: list = field(default_factory=list)


@dataclass
class FreeTextLabels:
    """Several texts per sample. ``labels``: K blocks ``[M, L_k]``, one row per text (M >= N) or per sample
    (averaged, M = N); ``sample_index [M]`` (int64): the sample each row belongs to.

    Score with ``emms_score(labels.features(X), labels.labels)``: the features are repeated to match."""

    labels: list
    sample_index: torch.Tensor
    n_samples: int

    def features(self, X):
        """Rows of ``X [N, D]`` (tensor or array) repeated to ``[M, D]``, one per label row."""
        if len(X) != self.n_samples:
            raise ValueError(f"X must be [N, D] with N == {self.n_samples} samples (got {len(X)} rows)")
        idx = self.sample_index
        return X[idx] if torch.is_tensor(X) else np.asarray(X)[idx.numpy()]


# --------------------------------------------------------------------------------------- plumbing
@functools.lru_cache(maxsize=1)
def _shared_defaults() -> tuple:
    from .registry import default_embedders

    return tuple(default_embedders())


def resolve_embedders(embedders) -> list[TextEmbedder]:
    """None -> the defaults (loaded once per process); a name/embedder -> [it]; a list -> each resolved."""
    from .registry import load_embedder

    if embedders is None:
        return list(_shared_defaults())
    if isinstance(embedders, (str, bytes)) or isinstance(embedders, TextEmbedder):
        embedders = [embedders]
    embedders = list(embedders)
    if not embedders:
        raise ValueError("embedders must hold K >= 1 embedders or model names (got an empty list)")
    return [load_embedder(e) for e in embedders]


def resolve_cache(cache) -> EmbeddingCache | None:
    if cache is None or cache is False:
        return None
    if isinstance(cache, EmbeddingCache):
        return cache
    if cache == "default":
        return EmbeddingCache()
    return EmbeddingCache(cache)


def embed_texts(texts, embedders=None, *, cache="default") -> list[torch.Tensor]:
    """[T] strings -> K float32 blocks ``[T, L_k]``; each distinct text is encoded once per model."""
    texts = check_texts(texts)
    embs, store = resolve_embedders(embedders), resolve_cache(cache)
    uniq = list(dict.fromkeys(texts))
    pos = {t: i for i, t in enumerate(uniq)}
    inverse = torch.tensor([pos[t] for t in texts])
    out = []
    for e in embs:
        vecs = store.encode(e, uniq) if store is not None else e.encode(uniq)
        out.append(vecs[inverse])
    return out


def clean_label(name: str, slash: str = " or ") -> str:
    """Class name as words: ``'aquarium_fish' -> 'aquarium fish'``, ``'T-shirt/top' -> 'T-shirt or top'``.
    A slash joins alternative names in the usual datasets (Fashion-MNIST, ImageNet synonyms), so it reads
    as "or" to a text model; leading/trailing slashes (path-like names) are dropped."""
    s = name.replace("_", " ").strip().strip("/")
    s = re.sub(r"\s*/\s*", slash, s)
    return re.sub(r"\s+", " ", s).strip()


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
            raise ValueError(f"{name} must be an integer vector [N] or a list of N strings "
                             f"(got {list(t.shape)} {t.dtype})")
        return t.to(torch.int64)
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise ValueError(f"{name} must be a list of N class indices or names (got {type(labels).__name__})")
    if labels and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in labels):
        return torch.tensor([int(x) for x in labels], dtype=torch.int64)
    return None


# ------------------------------------------------------------------------------------------- tasks
def classification_labels(labels, class_names=None, embedders=None, *, templates=DEFAULT_TEMPLATES,
                          clean: bool = True, cache="default") -> NamedClassLabels:
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
            raise ValueError(f"labels must be names in class_names (got {len(unknown)} unknown, e.g. "
                             f"{unknown[:5]})")
        idx = torch.tensor([pos[x] for x in labels], dtype=torch.int64)
    else:
        if class_names is None:
            raise ValueError("class_names must be given (a list of C names) when labels are class indices")
        names = check_texts(class_names, "class_names")
        if idx.numel() == 0:
            raise ValueError("labels must hold N >= 1 class indices (got an empty list)")
        if int(idx.min()) < 0 or int(idx.max()) >= len(names):
            raise ValueError(f"labels must be class indices in [0, C={len(names)}) matching class_names "
                             f"(got values in [{int(idx.min())}, {int(idx.max())}])")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct (got {len(names) - len(set(names))} duplicates)")
    table = _class_table(names, resolve_embedders(embedders), _check_templates(templates), clean, cache)
    return NamedClassLabels(table=table, indices=idx, names=list(names))


def multilabel_labels(multi_hot, class_names, embedders=None, *, templates=DEFAULT_TEMPLATES,
                      clean: bool = True, empty_text: str | None = None, cache="default") -> NamedClassLabels:
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
        raise ValueError(f"multi_hot must be [N, C] with N >= 1 and C = len(class_names) = {len(names)} "
                         f"(got {list(m.shape)})")
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("multi_hot must hold only 0/1 (or bool) entries")
    if len(set(names)) != n_classes:
        raise ValueError(f"class_names must be distinct (got {n_classes - len(set(names))} duplicates)")
    m = m.to(torch.float64)
    empty = m.sum(1) == 0
    if bool(empty.any()):
        if empty_text is None:
            rows = torch.nonzero(empty).flatten()[:5].tolist()
            raise ValueError(f"multi_hot has {int(empty.sum())} rows with no positive class (e.g. rows {rows}); "
                             "pass empty_text='...' to give them a label")
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


def regression_labels(targets) -> torch.Tensor:
    """Regression: the targets are the F-labels (no text model): ``[N]`` or ``[N, T]`` -> ``[N, T, 1]``
    float64 (K = 1). The score standardizes every target column."""
    try:
        y = torch.from_numpy(np.array(targets, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"targets must be a real [N] or [N, T] array (got {type(targets).__name__})") from exc
    if y.dim() == 1:
        y = y[:, None]
    if y.dim() != 2 or y.shape[0] == 0 or y.shape[1] == 0:
        raise ValueError(f"targets must be [N] or [N, T] with N, T >= 1 (got {list(y.shape)})")
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"targets must be finite (got {int((~torch.isfinite(y)).sum())} NaN/Inf values)")
    return y[:, :, None]


def free_text_labels(texts, embedders=None, *, reduce: str = "repeat", cache="default") -> FreeTextLabels:
    """Captioning and other free text: ``texts[i]`` is a string or a non-empty list of strings for sample i.

    Args:
        reduce: ``"repeat"``: one label row per text, the sample's features repeated for each (the paper's
            "several captions = several rows"; ``FreeTextLabels.features(X)`` does the repeat);
            ``"mean"``: one row per sample, the average of its texts' embeddings (features unchanged).
    Returns: ``FreeTextLabels(labels=K blocks [M, L_k], sample_index [M], n_samples=N)``.
    """
    if reduce not in ("repeat", "mean"):
        raise ValueError(f"reduce must be 'repeat' or 'mean' (got {reduce!r})")
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError(f"texts must be a list of N strings or lists of strings (got {type(texts).__name__})")
    if len(texts) == 0:
        raise ValueError("texts must hold N >= 1 samples (got an empty list)")
    flat, owner = [], []
    for i, item in enumerate(texts):
        group = [item] if isinstance(item, str) else check_texts(item, f"texts[{i}]")
        flat.extend(group)
        owner.extend([i] * len(group))
    owner = torch.tensor(owner, dtype=torch.int64)
    blocks = embed_texts(flat, embedders, cache=cache)
    N = len(texts)
    if reduce == "repeat":
        return FreeTextLabels(labels=blocks, sample_index=owner, n_samples=N)
    counts = torch.bincount(owner, minlength=N).to(torch.float32)[:, None]
    means = [torch.zeros(N, b.shape[1]).index_add_(0, owner, b) / counts for b in blocks]
    return FreeTextLabels(labels=means, sample_index=torch.arange(N), n_samples=N)


def _relative_boxes(boxes, image_sizes, box_format: str, n: int) -> torch.Tensor:
    """[N, 4] boxes in pixels -> [N, 4] relative (x0, y0, x1, y1) in [0, 1]."""
    b = torch.as_tensor(np.asarray(boxes), dtype=torch.float64)
    if b.dim() != 2 or b.shape != (n, 4):
        raise ValueError(f"boxes must be [N, 4] with N = len(expressions) = {n} (got {list(b.shape)})")
    if box_format == "xywh":
        b = torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], 1)
    elif box_format != "xyxy":
        raise ValueError(f"box_format must be 'xyxy' or 'xywh' (got {box_format!r})")
    s = torch.as_tensor(np.asarray(image_sizes), dtype=torch.float64)
    if s.shape == (2,):
        s = s.expand(n, 2)
    if s.shape != (n, 2) or not bool((s > 0).all()):
        raise ValueError(f"image_sizes must be (W, H) or [N, 2] positive sizes with N = {n} "
                         f"(got {list(s.shape)})")
    if not bool(torch.isfinite(b).all()) or not bool((b[:, 2:] >= b[:, :2]).all()):
        raise ValueError("boxes must be finite with x1 >= x0 and y1 >= y0")
    return (b / s.repeat(1, 2)).clamp(0, 1)


def box_geometry(rel: torch.Tensor, n_frequencies: int = 4) -> torch.Tensor:
    """Geometric encoding of relative boxes ``[N, 4]`` (x0, y0, x1, y1) -> ``[N, 10 + 8 F]``: the corners,
    centre, size, area, log aspect ratio, and sin/cos of centre and size at F octaves (so that a linear
    read-out of the features can match position at several scales)."""
    x0, y0, x1, y1 = rel.unbind(1)
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    base = [x0, y0, x1, y1, cx, cy, w, h, w * h, torch.log((w + 1e-3) / (h + 1e-3))]
    waves = [f(2.0 ** k * math.pi * c) for k in range(n_frequencies) for c in (cx, cy, w, h)
             for f in (torch.sin, torch.cos)]
    return torch.stack(base + waves, 1).to(torch.float32)


def referring_expression_labels(expressions, boxes, image_sizes, embedders=None, *, box_format: str = "xyxy",
                                template: str = "{expression} at [{x0:.2f}, {y0:.2f}, {x1:.2f}, {y1:.2f}]",
                                geometric: bool | int = False, cache="default") -> list[torch.Tensor]:
    """Referring expressions: box + expression -> text with the box in relative coordinates.

    Args:
        expressions: N strings ("the man on the left").
        boxes: ``[N, 4]`` in pixels, ``box_format`` "xyxy" (corners) or "xywh" (corner + size).
        image_sizes: ``(W, H)`` for all samples or ``[N, 2]``.
        template: how expression and relative box become one text; fields expression, x0, y0, x1, y1.
        geometric: also append ``box_geometry`` as one more F-label block (an extra "embedder" whose weight
            the simplex decides); an int sets the number of frequencies (True = 4).
    Returns: K (+1) blocks ``[N, L_k]``.
    """
    expressions = check_texts(expressions, "expressions")
    rel = _relative_boxes(boxes, image_sizes, box_format, len(expressions))
    try:
        texts = [template.format(expression=e, x0=r[0], y0=r[1], x1=r[2], y1=r[3])
                 for e, r in zip(expressions, rel.tolist())]
    except (KeyError, IndexError) as exc:
        raise ValueError(f"template may use only {{expression}}, {{x0}}, {{y0}}, {{x1}}, {{y1}} "
                         f"(got {template!r})") from exc
    blocks = embed_texts(texts, embedders, cache=cache)
    if geometric:
        blocks.append(box_geometry(rel, 4 if geometric is True else int(geometric)))
    return blocks


def normalize_answer(answer: str) -> str:
    """VQA-style answer normalization: lower case, no trailing period, single spaces."""
    return re.sub(r"\s+", " ", answer.strip().lower()).rstrip(".").strip()


def _majority(item, i: int, name: str) -> str:
    """A string, or the most frequent of several annotators' answers (ties: the first given)."""
    if isinstance(item, str):
        return normalize_answer(item)
    group = [normalize_answer(a) for a in check_texts(item, f"{name}[{i}]")]
    return Counter(group).most_common(1)[0][0]


def vqa_labels(answers, embedders=None, *, vocabulary=None, template: str = "{}",
               cache="default") -> NamedClassLabels:
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
        raise ValueError(f"answers must be in vocabulary (got {len(unknown)} answers outside it, e.g. "
                         f"{unknown[:5]})")
    table = _class_table(vocab, resolve_embedders(embedders), _check_templates(template), False, cache)
    return NamedClassLabels(table=table, indices=torch.tensor([pos[a] for a in chosen]), names=vocab)


def text_qa_labels(answers, embedders=None, *, questions=None, template: str = "{answer}",
                   cache="default") -> list[torch.Tensor]:
    """Text QA: the answer strings (free text, one per sample) -> K blocks ``[N, L_k]``.

    Args:
        answers: N answer strings (a list of gold answers per sample: the first is used).
        questions: N questions, available to ``template`` as ``{question}``.
        template: text embedded per sample; fields ``{answer}`` and (with questions) ``{question}``.
    Repeated answers are embedded once; if few distinct answers occur, the score finds the class basis
    itself.
    """
    if isinstance(answers, str) or not isinstance(answers, Sequence) or len(answers) == 0:
        raise ValueError("answers must be a non-empty list of N answer strings")
    ans = [a if isinstance(a, str) else check_texts(a, f"answers[{i}]")[0] for i, a in enumerate(answers)]
    if questions is not None:
        questions = check_texts(questions, "questions")
        if len(questions) != len(ans):
            raise ValueError(f"questions must have N = len(answers) = {len(ans)} entries (got {len(questions)})")
    elif "{question}" in template:
        raise ValueError(f"template uses {{question}} but no questions were given (got template {template!r})")
    try:
        texts = [template.format(answer=a, question=questions[i] if questions else "") for i, a in enumerate(ans)]
    except (KeyError, IndexError) as exc:
        raise ValueError(f"template may use only {{answer}} and {{question}} (got {template!r})") from exc
    return embed_texts(texts, embedders, cache=cache)
