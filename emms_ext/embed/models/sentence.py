"""sentence-transformers folders (optional dependency): the folder's own pipeline (transformer, pooling,
normalization as its modules.json says). Without sentence-transformers, ``HFEncoder`` with mean pooling
(+ ``normalize=True`` where the pipeline has a Normalize module) computes the same vectors."""

from __future__ import annotations

import os

import torch

from .base import BaseEmbedder, fingerprint_files
from .hf import resolve_folder
from .locate import identity_files


class SentenceTransformerEmbedder(BaseEmbedder):
    """A local sentence-transformers model folder (or hub id in the local cache).

    Args:
        name_or_path: the folder (modules.json, weights, tokenizer).
        normalize: L2-normalize on top of the pipeline (None: leave the pipeline as it is).
        Others: see ``BaseEmbedder``; ``dtype`` other than float32 casts the model.
    """

    pooling = "pipeline"

    def __init__(
        self,
        name_or_path,
        *,
        name: str | None = None,
        normalize: bool | None = None,
        device="cpu",
        batch_size: int = 64,
        max_length: int = 128,
        dtype=torch.float32,
        progress: bool | None = None,
    ):
        folder = resolve_folder(name_or_path)
        super().__init__(
            name or os.path.basename(os.fspath(name_or_path).rstrip("/")),
            device=device,
            batch_size=batch_size,
            max_length=max_length,
            dtype=dtype,
            progress=progress,
        )
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ImportError(
                "SentenceTransformerEmbedder needs sentence-transformers "
                "(pip install sentence-transformers); HFEncoder(pooling='mean') reads the same "
                "folder without it"
            ) from exc
        self.model = SentenceTransformer(os.fspath(folder), device=str(self.device), local_files_only=True)
        self.model.max_seq_length = min(self.max_length, self.model.max_seq_length or self.max_length)
        self.max_length = self.model.max_seq_length
        if self.dtype != torch.float32:
            self.model.to(self.dtype)
        self.model.eval()
        self.normalize = normalize
        files = identity_files(folder) + [p for p in folder.glob("*.json") if p.is_file()]
        self.source_id = fingerprint_files(sorted(set(files)))
        self.dim = int(self._encode_batch(["probe"]).shape[-1])

    @property
    def identity(self) -> str:
        """The base identity, plus ``|l2`` when the vectors are L2-normalized."""
        return super().identity + ("|l2" if self.normalize else "")

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode(
            texts,
            batch_size=len(texts),
            convert_to_tensor=True,
            show_progress_bar=False,
            normalize_embeddings=bool(self.normalize),
        ).to(torch.float32)
