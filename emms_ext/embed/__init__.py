"""F-labels: label texts -> embeddings of K pre-trained text models, offline (design.md sections 1 and 4).

    from emms_ext import emms_score
    from emms_ext.embed import classification_labels
    labels = classification_labels(y, class_names)          # default_embedders(), on-disk cache
    emms_score(features, labels)

Modules: ``base`` (the embedder protocol, batching), ``hf`` (transformers encoders, CLIP text towers,
decoder LMs), ``sentence`` (sentence-transformers folders), ``onnx_minilm`` (paraphrase-MiniLM-L3-v2 from
its ONNX package), ``static`` (word vectors), ``registry`` (names -> offline loaders), ``cache`` (on-disk
vectors), ``tasks`` (task adapters). Importing this package imports neither transformers nor
sentence-transformers; they load with the first model.
"""
from .base import BaseEmbedder, TextEmbedder
from .cache import CachedEmbedder, EmbeddingCache, default_cache_dir
from .hf import CLIPTextEmbedder, DecoderLMEmbedder, HFEncoder, hf_embedder
from .onnx_minilm import MiniLMOnnxEmbedder, bert_from_onnx
from .registry import (OFFLINE_MODELS, PAPER_MODELS, available_models, default_embedders, load_embedder)
from .sentence import SentenceTransformerEmbedder
from .static import StaticWordVectors
from .tasks import (FreeTextLabels, NamedClassLabels, box_geometry, classification_labels, clean_label,
                    embed_texts, free_text_labels, multilabel_labels, referring_expression_labels,
                    regression_labels, text_qa_labels, vqa_labels)

__all__ = [
    "BaseEmbedder", "CLIPTextEmbedder", "CachedEmbedder", "DecoderLMEmbedder", "EmbeddingCache",
    "FreeTextLabels", "HFEncoder", "MiniLMOnnxEmbedder", "NamedClassLabels", "OFFLINE_MODELS", "PAPER_MODELS",
    "SentenceTransformerEmbedder", "StaticWordVectors", "TextEmbedder", "available_models", "bert_from_onnx",
    "box_geometry", "classification_labels", "clean_label", "default_cache_dir", "default_embedders",
    "embed_texts", "free_text_labels", "hf_embedder", "load_embedder", "multilabel_labels",
    "referring_expression_labels", "regression_labels", "text_qa_labels", "vqa_labels",
]
