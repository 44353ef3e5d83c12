"""Task adapters: labels of any task -> F-labels for ``emms_score`` / ``emms_scores`` (docs/design.md §1).

Every adapter takes ``embedders`` (a list of embedders or model names; None = ``default_embedders()``) and
``cache`` ("default" = the on-disk cache, ``embeddings/`` under ``$EMMS_EXT_CACHE`` or ``~/.cache/emms_ext``; a
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

from ...core.labels import FreeTextLabels
from .common import NamedClassLabels, clean_label, embed_texts, resolve_cache, resolve_embedders
from .text import box_geometry, free_text_labels, referring_expression_labels, regression_labels, text_qa_labels
from .vocabulary import DEFAULT_TEMPLATES, classification_labels, multilabel_labels, normalize_answer, vqa_labels

__all__ = [
    "DEFAULT_TEMPLATES",
    "FreeTextLabels",
    "NamedClassLabels",
    "box_geometry",
    "classification_labels",
    "clean_label",
    "embed_texts",
    "free_text_labels",
    "multilabel_labels",
    "normalize_answer",
    "referring_expression_labels",
    "regression_labels",
    "resolve_cache",
    "resolve_embedders",
    "text_qa_labels",
    "vqa_labels",
]
