"""Shared by the task adapters: the F-label container ``NamedClassLabels`` (``FreeTextLabels`` lives in
``core.labels``), resolving ``embedders`` and ``cache`` arguments, ``embed_texts`` (each distinct text encoded
once per model) and ``clean_label``."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import torch

from ...common.cache import EmbeddingCache
from ...common.validate import check_texts
from ...core.labels import ClassLabels
from ..models.base import TextEmbedder


@dataclass
class NamedClassLabels(ClassLabels):
    """``ClassLabels`` that also keep the class names (``names [C]``) whose texts were embedded."""

    names: list = field(default_factory=list)


# --------------------------------------------------------------------------------------- plumbing
@functools.lru_cache(maxsize=1)
def _shared_defaults() -> tuple:
    from ..models.registry import default_embedders

    return tuple(default_embedders())


def resolve_embedders(embedders) -> list[TextEmbedder]:
    """None -> the defaults (loaded once per process); a name/embedder -> [it]; a list -> each resolved."""
    from ..models.registry import load_embedder

    if embedders is None:
        return list(_shared_defaults())
    if isinstance(embedders, (str, bytes)) or isinstance(embedders, TextEmbedder):
        embedders = [embedders]
    embedders = list(embedders)
    if not embedders:
        raise ValueError("embedders must hold K >= 1 embedders or model names (got an empty list)")
    return [load_embedder(e) for e in embedders]


def resolve_cache(cache) -> EmbeddingCache | None:
    """The ``cache`` argument as an ``EmbeddingCache``: None / False -> None (no cache), "default" -> the
    default cache directory, a cache -> itself, a path -> a cache in that directory."""
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
