"""On-disk embedding cache: a label set is embedded once per (model identity, pooling), ever.

One SQLite file (``embeddings.sqlite``) under the cache folder: ``EmbeddingCache(dir)``, else
``$EMMS_EXT_CACHE``, else ``~/.cache/emms_ext/embeddings``. Rows are keyed by (model identity, pooling,
text) and hold the float32 vector bytes exactly as the model produced them, so a hit returns bit-identical
vectors. SQLite gives atomic writes and safe concurrent readers (several processes scoring zoos at once)
without a server.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import torch

from .base import TextEmbedder, check_texts

ENV_VAR = "EMMS_EXT_CACHE"
_CHUNK = 500  # texts per SELECT: below SQLite's bound-parameter limit on every build


def default_cache_dir() -> Path:
    """``$EMMS_EXT_CACHE`` if set, else ``~/.cache/emms_ext/embeddings``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "emms_ext" / "embeddings"


def model_key(embedder: TextEmbedder) -> tuple[str, str]:
    """(model identity, pooling) of an embedder; objects without ``identity`` are keyed by class and name
    (give such custom embedders an ``identity`` that changes with their weights)."""
    identity = getattr(embedder, "identity", None) or f"{type(embedder).__qualname__}|{embedder.name}"
    return str(identity), str(getattr(embedder, "pooling", ""))


class EmbeddingCache:
    """Vectors by (model identity, pooling, text) on disk.

    Attributes:
        hits, misses: texts served from disk / distinct texts computed, summed over this object's life.
        last_hits, last_misses: the same for the latest ``encode`` call.
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.path = self.directory / "embeddings.sqlite"
        self.hits = self.misses = self.last_hits = self.last_misses = 0
        self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, pooling TEXT NOT NULL, "
                         "text TEXT NOT NULL, dim INTEGER NOT NULL, vec BLOB NOT NULL, "
                         "PRIMARY KEY (model, pooling, text)) WITHOUT ROWID")
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __getstate__(self):  # connections do not cross process boundaries; reopen on use
        state = dict(self.__dict__)
        state["_conn"] = None
        return state

    def get(self, embedder: TextEmbedder, texts: list[str]) -> dict[str, torch.Tensor]:
        """Stored vectors ([dim] float32) of those ``texts`` that are cached for this embedder."""
        model, pooling = model_key(embedder)
        found, db = {}, self._db()
        uniq = list(dict.fromkeys(texts))
        for s in range(0, len(uniq), _CHUNK):
            part = uniq[s:s + _CHUNK]
            q = ("SELECT text, dim, vec FROM vectors WHERE model = ? AND pooling = ? AND text IN "
                 f"({','.join('?' * len(part))})")
            for text, dim, blob in db.execute(q, (model, pooling, *part)):
                found[text] = torch.from_numpy(np.frombuffer(blob, dtype=np.float32, count=dim).copy())
        return found

    def put(self, embedder: TextEmbedder, texts: list[str], vectors: torch.Tensor) -> None:
        """Store ``vectors [len(texts), dim]`` (as float32)."""
        model, pooling = model_key(embedder)
        v = vectors.detach().to("cpu", torch.float32).contiguous().numpy()
        rows = [(model, pooling, t, v.shape[1], v[i].tobytes()) for i, t in enumerate(texts)]
        with self._db() as db:  # one transaction
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)", rows)

    def encode(self, embedder: TextEmbedder, texts: list[str]) -> torch.Tensor:
        """``embedder.encode(texts)`` ([T, dim] float32) computing only the texts not on disk yet."""
        texts = check_texts(texts, allow_empty=True)
        found = self.get(embedder, texts)
        todo = [t for t in dict.fromkeys(texts) if t not in found]
        if todo:
            vecs = embedder.encode(todo)
            if vecs.dim() != 2 or vecs.shape[0] != len(todo):
                raise ValueError(f"embedder {embedder.name!r}.encode must return [{len(todo)}, dim] "
                                 f"(got {list(vecs.shape)})")
            vecs = vecs.detach().to("cpu", torch.float32)
            self.put(embedder, todo, vecs)
            found.update(zip(todo, vecs))
        computed = set(todo)
        self.last_misses = len(todo)  # distinct texts sent to the model
        self.last_hits = sum(1 for t in texts if t not in computed)
        self.hits += self.last_hits
        self.misses += self.last_misses
        if not texts:
            return torch.empty(0, int(getattr(embedder, "dim", 0)))
        return torch.stack([found[t] for t in texts])

    def __len__(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.directory)!r}, hits={self.hits}, misses={self.misses})"


class CachedEmbedder:
    """An embedder whose ``encode`` goes through an ``EmbeddingCache`` (same name, dim, identity)."""

    def __init__(self, embedder: TextEmbedder, cache: EmbeddingCache | None = None):
        self.embedder = embedder
        self.cache = cache if cache is not None else EmbeddingCache()
        self.name, self.dim = embedder.name, embedder.dim
        self.identity, self.pooling = model_key(embedder)

    def encode(self, texts: list[str]) -> torch.Tensor:
        return self.cache.encode(self.embedder, texts)

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.embedder!r}, {self.cache!r})"
