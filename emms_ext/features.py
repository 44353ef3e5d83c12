"""Features of a zoo for ``emms_ext.rank``: loading feature files and extracting features from networks.

* ``load_features(path)``: ``.npy``, ``.pt`` / ``.pth`` (a tensor, or a dict with a "features" tensor) and
  ``.safetensors`` (one tensor, or one named "features") -> ``[N, D]`` tensor.
* ``extract_features(model, dataloader, layer=None)``: one pass of ``model`` over the target inputs under
  ``torch.inference_mode()``, a forward hook keeping ``layer``'s activations (default: the **input of the
  last** ``nn.Linear`` — the classifier head — i.e. the penultimate features), batched, with a tqdm bar, and
  cached on disk keyed by (model class + hash of its state_dict, layer, fingerprint of the data).

The cache folder is ``$EMMS_EXT_FEATURE_CACHE`` or ``~/.cache/emms_ext/features`` (``cache_dir=False``
disables it). Nothing here downloads anything.

This module holds the feature files (``load_features``, ``feature_files``, ``materialize``); extraction is
in ``emms_ext.feature_extraction`` and its cache in ``emms_ext.feature_cache`` (both re-exported here).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

# extraction from nn.Modules and its cache live in their own modules; re-exported so emms_ext.features keeps them
from .feature_cache import CACHE_ENV, data_fingerprint, default_cache_dir, model_fingerprint  # noqa: F401
from .feature_extraction import check_dataloader, extract_features, resolve_layer  # noqa: F401

FEATURE_FILE_SUFFIXES = (".npy", ".pt", ".pth", ".safetensors")


# ----------------------------------------------------------------------------------------- files
def _pick_tensor(obj, path) -> torch.Tensor | np.ndarray:
    """The features inside what a .pt / .safetensors file held: the object itself if it is a tensor, the
    entry "features", or the only entry of a dict."""
    if torch.is_tensor(obj) or isinstance(obj, np.ndarray):
        return obj
    if isinstance(obj, Mapping):
        if "features" in obj:
            return _pick_tensor(obj["features"], path)
        tensors = {k: v for k, v in obj.items() if torch.is_tensor(v) or isinstance(v, np.ndarray)}
        if len(tensors) == 1:
            return next(iter(tensors.values()))
        raise ValueError(f"{path}: holds {len(tensors)} tensors ({', '.join(map(str, list(tensors)[:5]))}); "
                         "store one tensor, or name the features tensor 'features'")
    raise ValueError(f"{path}: must hold an [N, D] tensor or a dict with a 'features' tensor "
                     f"(got {type(obj).__name__})")


def load_features(path) -> torch.Tensor | np.ndarray:
    """``[N, D]`` features stored in a ``.npy``, ``.pt`` / ``.pth`` or ``.safetensors`` file (not validated
    here: the score checks shape, dtype and finiteness per model)."""
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"feature file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{path}: not a plain numeric .npy array ({exc})") from exc
    if suffix in (".pt", ".pth"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
            raise ValueError(f"{path}: could not be read as a torch tensor file ({exc})") from exc
        return _pick_tensor(obj, path)
    if suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ImportError("reading .safetensors feature files needs: pip install safetensors") from exc
        try:
            obj = load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{path}: could not be read as a safetensors file ({exc})") from exc
        return _pick_tensor(obj, path)
    raise ValueError(f"{path}: unsupported feature file type {suffix!r}; use one of "
                     f"{', '.join(FEATURE_FILE_SUFFIXES)}")


def feature_files(directory) -> dict[str, Path]:
    """name (file name without suffix) -> path, for every feature file in ``directory`` (sorted)."""
    d = Path(os.fspath(directory)).expanduser()
    if not d.is_dir():
        raise FileNotFoundError(f"features directory {str(d)!r} does not exist (or is not a directory)")
    files = {}
    for p in sorted(d.iterdir()):
        if p.is_file() and p.suffix.lower() in FEATURE_FILE_SUFFIXES:
            if p.stem in files:
                raise ValueError(f"two feature files for model {p.stem!r} in {d}: {files[p.stem].name} and "
                                 f"{p.name}; keep one")
            files[p.stem] = p
    if not files:
        raise ValueError(f"no feature files ({', '.join(FEATURE_FILE_SUFFIXES)}) in {d}")
    return files


def materialize(features, name: str) -> torch.Tensor | np.ndarray:
    """In-memory ``[N, D]`` features from a tensor / array / file path / iterable of ``[n_i, D]`` chunks
    (chunks are concatenated: metrics other than EMMS need the whole matrix)."""
    if isinstance(features, (str, os.PathLike)):
        return load_features(features)
    if torch.is_tensor(features) or isinstance(features, np.ndarray):
        return features
    if isinstance(features, Iterable):
        parts = [torch.as_tensor(np.asarray(c)) if not torch.is_tensor(c) else c for c in features]
        if not parts:
            raise ValueError(f"features[{name!r}] is an empty iterable of chunks")
        if any(p.dim() != 2 for p in parts) or len({p.shape[1] for p in parts}) != 1:
            raise ValueError(f"features[{name!r}] chunks must all be [n_i, D] with one D "
                             f"(got shapes {[list(p.shape) for p in parts[:4]]})")
        return torch.cat(parts)
    raise ValueError(f"features[{name!r}] must be an [N, D] tensor/array, a feature file path, an iterable of "
                     f"[n_i, D] chunks or an nn.Module (got {type(features).__name__})")
