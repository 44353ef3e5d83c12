"""The embedder protocol and the batching every implementation shares.

An embedder turns a list of strings into one vector per string: ``encode(texts) -> [len(texts), dim]``
float32 on the CPU. F-labels are then built from such vectors by the task adapters (tasks.py). Concrete
embedders only implement ``_encode_batch``; sorting by length, batching, progress bars and the output
contract live here so that every family behaves the same.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import torch

from ...common.cache import EmbeddingCache, model_key
from ...common.progress import progress_iter
from ...common.validate import check_texts

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


@runtime_checkable
class TextEmbedder(Protocol):
    """What the task adapters need: a ``name``, the width ``dim`` and ``encode(texts) -> [len, dim]``."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> torch.Tensor:
        """``[len(texts), dim]`` float32 vectors on the CPU, one row per text."""


def resolve_dtype(dtype) -> torch.dtype:
    """torch dtype from a dtype or its name ('float32', 'bfloat16', ...)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype.replace("torch.", "") in _DTYPES:
        return _DTYPES[dtype.replace("torch.", "")]
    raise ValueError(f"dtype must be a torch floating dtype or one of {sorted(_DTYPES)} (got {dtype!r})")


def fingerprint_files(paths: Iterable[str | os.PathLike]) -> str:
    """Short digest of (path, size, mtime) of model files: a changed or moved checkpoint is a new model
    for the cache, without hashing hundreds of megabytes of weights on every load."""
    h = hashlib.sha1()
    for p in sorted(os.fspath(p) for p in paths):
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class BaseEmbedder(ABC):
    """Shared constructor arguments and the batched ``encode`` loop.

    Args:
        name: display name (also part of the cache identity).
        device: torch device the model runs on; outputs always come back to the CPU.
        batch_size: texts per forward pass.
        max_length: tokens kept per text (longer texts are truncated).
        dtype: compute dtype of the model (float32 default; bfloat16/float16 on accelerators). Outputs are
            always float32.
        progress: tqdm bar over batches: True, False, or None (shown only on a terminal).
    """

    #: how the vector of one text is formed from the model's outputs (part of the cache key)
    pooling: str = "none"

    def __init__(
        self,
        name: str,
        *,
        device="cpu",
        batch_size: int = 64,
        max_length: int = 128,
        dtype=torch.float32,
        progress: bool | None = None,
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        if int(max_length) < 1:
            raise ValueError(f"max_length must be >= 1 (got {max_length})")
        self.name = name
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self.dtype = resolve_dtype(dtype)
        self.progress = progress
        self.dim = 0  # set by the subclass once the model is loaded

    # identity of the weights (files or package version); subclasses fill it in
    source_id: str = ""

    @property
    def identity(self) -> str:
        """Model identity for the cache: family, weights fingerprint, truncation and compute dtype.
        Pooling is keyed separately (``pooling``)."""
        return (
            f"{type(self).__name__}|{self.name}|{self.source_id}|len={self.max_length}|"
            f"{str(self.dtype).replace('torch.', '')}"
        )

    @abstractmethod
    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        """[b] strings -> [b, dim] tensor (any device / float dtype)."""

    def _length_key(self, text: str) -> int:
        return len(text)

    @torch.no_grad()  # not inference_mode: its tensors refuse later in-place use by callers
    def encode(self, texts: list[str]) -> torch.Tensor:
        """[T] strings -> [T, dim] float32 CPU tensor, in the order given."""
        texts = check_texts(texts, allow_empty=True)
        out = torch.empty(len(texts), self.dim, dtype=torch.float32)
        if not texts:
            return out
        # Batches of similar length waste little compute on padding; the sort is stable, so the batch
        # composition (and hence every float) depends only on the list of texts: runs are reproducible.
        order = sorted(range(len(texts)), key=lambda i: self._length_key(texts[i]))
        starts = range(0, len(order), self.batch_size)
        for s in progress_iter(starts, len(starts), f"embed {self.name}", "batch", self.progress):
            idx = order[s : s + self.batch_size]
            vecs = self._encode_batch([texts[i] for i in idx])
            out[torch.tensor(idx)] = vecs.detach().to("cpu", torch.float32)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, pooling={self.pooling!r})"


class CachedEmbedder:
    """An embedder whose ``encode`` goes through an ``EmbeddingCache`` (same name, dim, identity)."""

    def __init__(self, embedder: TextEmbedder, cache: EmbeddingCache | None = None):
        self.embedder = embedder
        self.cache = cache if cache is not None else EmbeddingCache()
        self.name, self.dim = embedder.name, embedder.dim
        self.identity, self.pooling = model_key(embedder)

    def encode(self, texts: list[str]) -> torch.Tensor:
        """``[len(texts), dim]`` float32, computing only the texts not cached yet."""
        return self.cache.encode(self.embedder, texts)

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.embedder!r}, {self.cache!r})"
