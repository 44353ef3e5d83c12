"""Per-sample task adapters: free text / captions (``FreeTextLabels``), referring expressions (texts with
relative boxes, optionally ``box_geometry``), text-QA answers, and regression targets (no text model)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ...common.validate import check_texts
from ...core.labels import FreeTextLabels
from .common import embed_texts


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
        raise ValueError(f"image_sizes must be (W, H) or [N, 2] positive sizes with N = {n} (got {list(s.shape)})")
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
    waves = [
        f(2.0**k * math.pi * c) for k in range(n_frequencies) for c in (cx, cy, w, h) for f in (torch.sin, torch.cos)
    ]
    return torch.stack(base + waves, 1).to(torch.float32)


def referring_expression_labels(
    expressions,
    boxes,
    image_sizes,
    embedders=None,
    *,
    box_format: str = "xyxy",
    template: str = "{expression} at [{x0:.2f}, {y0:.2f}, {x1:.2f}, {y1:.2f}]",
    geometric: bool | int = False,
    cache="default",
) -> list[torch.Tensor]:
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
        texts = [
            template.format(expression=e, x0=r[0], y0=r[1], x1=r[2], y1=r[3]) for e, r in zip(expressions, rel.tolist())
        ]
    except (KeyError, IndexError) as exc:
        raise ValueError(
            f"template may use only {{expression}}, {{x0}}, {{y0}}, {{x1}}, {{y1}} (got {template!r})"
        ) from exc
    blocks = embed_texts(texts, embedders, cache=cache)
    if geometric:
        blocks.append(box_geometry(rel, 4 if geometric is True else int(geometric)))
    return blocks


def text_qa_labels(
    answers, embedders=None, *, questions=None, template: str = "{answer}", cache="default"
) -> list[torch.Tensor]:
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
