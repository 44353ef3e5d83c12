"""The F-label wing (docs/design.md §1, §4, §7): label texts -> embeddings of K pre-trained text models,
offline. Imported only by ``selection`` and ``cli``; imports ``core`` (the label containers) and ``common``.

    from emms_ext import emms_score
    from emms_ext.embed import classification_labels
    labels = classification_labels(y, class_names)          # default_embedders(), on-disk cache
    emms_score(features, labels)

``models/``: ``base`` (the embedder protocol, batching, ``CachedEmbedder``), ``hf`` (transformers encoders,
CLIP text towers, decoder LMs), ``sentence`` (sentence-transformers folders), ``onnx_minilm``
(paraphrase-MiniLM-L3-v2 from its ONNX package), ``static`` (word vectors), ``registry`` (names -> offline
loaders), ``pooling``, ``locate``. ``tasks/``: the task adapters. Vectors are cached on disk by
``emms_ext.common.cache.EmbeddingCache``. Importing this package imports neither transformers nor
sentence-transformers; they load with the first model.
"""

from ..common.cache import EmbeddingCache
from ..core.labels import FreeTextLabels
from .models.base import BaseEmbedder, CachedEmbedder, TextEmbedder
from .models.hf import CLIPTextEmbedder, DecoderLMEmbedder, HFEncoder, hf_embedder
from .models.onnx_minilm import MiniLMOnnxEmbedder, bert_from_onnx
from .models.registry import OFFLINE_MODELS, PAPER_MODELS, available_models, default_embedders, load_embedder
from .models.sentence import SentenceTransformerEmbedder
from .models.static import StaticWordVectors
from .tasks import (
    NamedClassLabels,
    box_geometry,
    classification_labels,
    clean_label,
    embed_texts,
    free_text_labels,
    multilabel_labels,
    referring_expression_labels,
    regression_labels,
    text_qa_labels,
    vqa_labels,
)

__all__ = [
    "BaseEmbedder",
    "CLIPTextEmbedder",
    "CachedEmbedder",
    "DecoderLMEmbedder",
    "EmbeddingCache",
    "FreeTextLabels",
    "HFEncoder",
    "MiniLMOnnxEmbedder",
    "NamedClassLabels",
    "OFFLINE_MODELS",
    "PAPER_MODELS",
    "SentenceTransformerEmbedder",
    "StaticWordVectors",
    "TextEmbedder",
    "available_models",
    "bert_from_onnx",
    "box_geometry",
    "classification_labels",
    "clean_label",
    "default_embedders",
    "embed_texts",
    "free_text_labels",
    "hf_embedder",
    "load_embedder",
    "multilabel_labels",
    "referring_expression_labels",
    "regression_labels",
    "text_qa_labels",
    "vqa_labels",
]
