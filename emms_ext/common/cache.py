"""The package's one on-disk cache: one root folder, one environment variable, two stores under it.

Root: ``$EMMS_EXT_CACHE`` if set, else ``~/.cache/emms_ext``. Under it:

* ``features/``: features extracted from networks (``emms_ext.selection.features.extract_features``), one
  ``.pt`` file per (model class + hash of its state_dict, layer, pooling, fingerprint of the data);
* ``embeddings/``: F-label text embeddings (``emms_ext.embed``), one SQLite file ``embeddings.sqlite`` keyed by
  (model identity, pooling, text) holding the float32 vectors exactly as the model produced them, so a hit is
  bit-identical. SQLite gives atomic writes and safe concurrent readers without a server.

Every function that takes a ``cache_dir`` / ``directory`` uses it instead of the default folder.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .validate import check_texts

CACHE_ENV = "EMMS_EXT_CACHE"
_FEATURE_FORMAT = 1  # bump when the feature files' layout or the pooling of activations changes
_CHUNK = 500  # texts per SELECT: below SQLite's bound-parameter limit on every build


def cache_root() -> Path:
    """``$EMMS_EXT_CACHE`` if set, else ``~/.cache/emms_ext``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "emms_ext"


def default_cache_dir(kind: str) -> Path:
    """The folder of one store under the cache root: ``kind`` is ``"features"``, ``"embeddings"`` or
    ``"models"`` (model folders assembled from PyPI packages)."""
    if kind not in ("features", "embeddings", "models"):
        raise ValueError(f"kind must be 'features', 'embeddings' or 'models' (got {kind!r})")
    return cache_root() / kind


# ------------------------------------------------------------------------------------------ hashing
def update_hash(h, obj) -> None:
    """Feed tensors / arrays / numbers / strings / nested containers into a hash, type-tagged."""
    if torch.is_tensor(obj):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        h.update(f"A{obj.dtype}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for k in sorted(obj, key=str):
            update_hash(h, str(k))
            update_hash(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"[{len(obj)}".encode())
        for x in obj:
            update_hash(h, x)
        h.update(b"]")
    else:
        h.update(f"{type(obj).__name__}:{obj!r}".encode())


def model_fingerprint(model: nn.Module) -> str:
    """Class name + hash of every parameter and buffer: changes when any weight changes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    update_hash(h, dict(model.state_dict()))
    return h.hexdigest()


def _is_dataloader(dl) -> bool:
    return isinstance(dl, torch.utils.data.DataLoader)


def data_fingerprint(dataloader) -> str | None:
    """Hash of the number of batches and the first and last batch; None if it cannot be taken without
    consuming the data (then nothing is cached)."""
    h = hashlib.blake2b(digest_size=16)
    if _is_dataloader(dataloader) and not isinstance(dataloader.dataset, torch.utils.data.IterableDataset):
        ds = dataloader.dataset
        batches = (
            list(dataloader.batch_sampler)
            if dataloader.batch_sampler is not None
            else [[i] for i in dataloader.sampler]
        )
        if not batches:
            return None
        update_hash(h, ("map", len(ds), len(batches), sum(len(b) for b in batches)))
        collate = dataloader.collate_fn
        for idx in {0: batches[0], len(batches) - 1: batches[-1]}.values():
            update_hash(h, collate([ds[i] for i in idx]) if dataloader.batch_size is not None else [ds[i] for i in idx])
        return h.hexdigest()
    if isinstance(dataloader, (list, tuple)):
        if not dataloader:
            return None
        update_hash(h, ("list", len(dataloader)))
        update_hash(h, dataloader[0])
        update_hash(h, dataloader[-1])
        return h.hexdigest()
    return None


def feature_path(cache_dir, model: nn.Module, layer_name: str, where: str, data_key: str) -> Path:
    """The file of one (model, layer, data) in the feature store ``cache_dir``."""
    h = hashlib.blake2b(digest_size=20)
    update_hash(h, (_FEATURE_FORMAT, model_fingerprint(model), layer_name, where, data_key))
    return Path(cache_dir) / f"{type(model).__name__}-{h.hexdigest()}.pt"


def load_feature_file(path: Path) -> torch.Tensor | None:
    """Cached features at ``path``; None when absent or damaged (then they are recomputed)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["features"]
    except Exception:  # a damaged cache entry of any kind is recomputed
        return None


def save_feature_file(path: Path, features: torch.Tensor, **meta) -> None:
    """Write ``features`` (and ``meta``) to ``path`` atomically: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"features": features, **meta}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ------------------------------------------------------------------------------------------ embeddings
def model_key(embedder) -> tuple[str, str]:
    """(model identity, pooling) of an embedder; objects without ``identity`` are keyed by class and name
    (give such custom embedders an ``identity`` that changes with their weights)."""
    identity = getattr(embedder, "identity", None) or f"{type(embedder).__qualname__}|{embedder.name}"
    return str(identity), str(getattr(embedder, "pooling", ""))


class EmbeddingCache:
    """Vectors by (model identity, pooling, text) on disk, for any embedder with ``name``, ``dim`` and
    ``encode(texts) -> [len, dim]``.

    Attributes:
        hits, misses: texts served from disk / distinct texts computed, summed over this object's life.
        last_hits, last_misses: the same for the latest ``encode`` call.
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir("embeddings")
        self.path = self.directory / "embeddings.sqlite"
        self.hits = self.misses = self.last_hits = self.last_misses = 0
        self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, pooling TEXT NOT NULL, "
                "text TEXT NOT NULL, dim INTEGER NOT NULL, vec BLOB NOT NULL, "
                "PRIMARY KEY (model, pooling, text)) WITHOUT ROWID"
            )
            self._conn = conn
        return self._conn

    def close(self) -> None:
        """Close the SQLite connection (a later call reopens it)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __getstate__(self):  # connections do not cross process boundaries; reopen on use
        state = dict(self.__dict__)
        state["_conn"] = None
        return state

    def get(self, embedder, texts: list[str]) -> dict[str, torch.Tensor]:
        """Stored vectors ([dim] float32) of those ``texts`` that are cached for this embedder."""
        model, pooling = model_key(embedder)
        found, db = {}, self._db()
        uniq = list(dict.fromkeys(texts))
        for s in range(0, len(uniq), _CHUNK):
            part = uniq[s : s + _CHUNK]
            q = (
                "SELECT text, dim, vec FROM vectors WHERE model = ? AND pooling = ? AND text IN "
                f"({','.join('?' * len(part))})"
            )
            for text, dim, blob in db.execute(q, (model, pooling, *part)):
                found[text] = torch.from_numpy(np.frombuffer(blob, dtype=np.float32, count=dim).copy())
        return found

    def put(self, embedder, texts: list[str], vectors: torch.Tensor) -> None:
        """Store ``vectors [len(texts), dim]`` (as float32)."""
        model, pooling = model_key(embedder)
        v = vectors.detach().to("cpu", torch.float32).contiguous().numpy()
        rows = [(model, pooling, t, v.shape[1], v[i].tobytes()) for i, t in enumerate(texts)]
        with self._db() as db:  # one transaction
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)", rows)

    def encode(self, embedder, texts: list[str]) -> torch.Tensor:
        """``embedder.encode(texts)`` ([T, dim] float32) computing only the texts not on disk yet."""
        texts = check_texts(texts, allow_empty=True)
        found = self.get(embedder, texts)
        todo = [t for t in dict.fromkeys(texts) if t not in found]
        if todo:
            vecs = embedder.encode(todo)
            if vecs.dim() != 2 or vecs.shape[0] != len(todo):
                raise ValueError(
                    f"embedder {embedder.name!r}.encode must return [{len(todo)}, dim] (got {list(vecs.shape)})"
                )
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
