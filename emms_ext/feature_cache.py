"""The on-disk feature cache of ``extract_features``: type-tagged hashing, fingerprints of a model (class +
state_dict) and of a dataloader, and the cache folder and file names.

The cache folder is ``$EMMS_EXT_FEATURE_CACHE`` or ``~/.cache/emms_ext/features``.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

CACHE_ENV = "EMMS_EXT_FEATURE_CACHE"
_CACHE_FORMAT = 1  # bump when the cache layout or the pooling of activations changes


# ------------------------------------------------------------------------------------------ hashing
def _update_hash(h, obj) -> None:
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
            _update_hash(h, str(k))
            _update_hash(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"[{len(obj)}".encode())
        for x in obj:
            _update_hash(h, x)
        h.update(b"]")
    else:
        h.update(f"{type(obj).__name__}:{obj!r}".encode())


def model_fingerprint(model: nn.Module) -> str:
    """Class name + hash of every parameter and buffer: changes when any weight changes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    _update_hash(h, dict(model.state_dict()))
    return h.hexdigest()


def _is_dataloader(dl) -> bool:
    return isinstance(dl, torch.utils.data.DataLoader)


def data_fingerprint(dataloader) -> str | None:
    """Hash of the number of batches and the first and last batch; None if it cannot be taken without
    consuming the data (then nothing is cached)."""
    h = hashlib.blake2b(digest_size=16)
    if _is_dataloader(dataloader) and not isinstance(dataloader.dataset, torch.utils.data.IterableDataset):
        ds = dataloader.dataset
        batches = list(dataloader.batch_sampler) if dataloader.batch_sampler is not None else \
            [[i] for i in dataloader.sampler]
        if not batches:
            return None
        _update_hash(h, ("map", len(ds), len(batches), sum(len(b) for b in batches)))
        collate = dataloader.collate_fn
        for idx in {0: batches[0], len(batches) - 1: batches[-1]}.values():
            _update_hash(h, collate([ds[i] for i in idx]) if dataloader.batch_size is not None
                         else [ds[i] for i in idx])
        return h.hexdigest()
    if isinstance(dataloader, (list, tuple)):
        if not dataloader:
            return None
        _update_hash(h, ("list", len(dataloader)))
        _update_hash(h, dataloader[0])
        _update_hash(h, dataloader[-1])
        return h.hexdigest()
    return None


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "emms_ext" / "features"


def _cache_path(cache_dir, model, layer_name: str, where: str, data_key: str) -> Path:
    h = hashlib.blake2b(digest_size=20)
    _update_hash(h, (_CACHE_FORMAT, model_fingerprint(model), layer_name, where, data_key))
    return Path(cache_dir) / f"{type(model).__name__}-{h.hexdigest()}.pt"
