"""Features of a zoo for ``emms_ext.rank``: feature files, and features extracted from networks.

* ``load_features(path)``: ``.npy``, ``.pt`` / ``.pth`` (a tensor, or a dict with a "features" tensor) and
  ``.safetensors`` (one tensor, or one named "features") -> ``[N, D]`` tensor.
* ``extract_features(model, dataloader, layer=None)``: one pass of ``model`` over the target inputs under
  ``torch.inference_mode()``, a forward hook keeping ``layer``'s activations (default: the **input of the
  last** ``nn.Linear`` — the classifier head — i.e. the penultimate features), pooled to ``[N, D]``, with a
  progress bar, and cached on disk (``emms_ext.common.cache``: ``$EMMS_EXT_CACHE/features``, keyed by model
  class + state_dict hash, layer and a fingerprint of the data; ``cache_dir=False`` disables it).

Nothing here downloads anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..common.cache import data_fingerprint, default_cache_dir, feature_path, load_feature_file, save_feature_file
from ..common.progress import progress_iter

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
        raise ValueError(
            f"{path}: holds {len(tensors)} tensors ({', '.join(map(str, list(tensors)[:5]))}); "
            "store one tensor, or name the features tensor 'features'"
        )
    raise ValueError(
        f"{path}: must hold an [N, D] tensor or a dict with a 'features' tensor (got {type(obj).__name__})"
    )


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
        except Exception as exc:  # unpickling errors come in many types
            raise ValueError(f"{path}: could not be read as a torch tensor file ({exc})") from exc
        return _pick_tensor(obj, path)
    if suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ImportError("reading .safetensors feature files needs: pip install safetensors") from exc
        try:
            obj = load_file(str(path))
        except Exception as exc:  # safetensors' errors come in several types too
            raise ValueError(f"{path}: could not be read as a safetensors file ({exc})") from exc
        return _pick_tensor(obj, path)
    raise ValueError(f"{path}: unsupported feature file type {suffix!r}; use one of {', '.join(FEATURE_FILE_SUFFIXES)}")


def feature_files(directory) -> dict[str, Path]:
    """name (file name without suffix) -> path, for every feature file in ``directory`` (sorted)."""
    d = Path(os.fspath(directory)).expanduser()
    if not d.is_dir():
        raise FileNotFoundError(f"features directory {str(d)!r} does not exist (or is not a directory)")
    files = {}
    for p in sorted(d.iterdir()):
        if p.is_file() and p.suffix.lower() in FEATURE_FILE_SUFFIXES:
            if p.stem in files:
                raise ValueError(
                    f"two feature files for model {p.stem!r} in {d}: {files[p.stem].name} and {p.name}; keep one"
                )
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
            raise ValueError(
                f"features[{name!r}] chunks must all be [n_i, D] with one D "
                f"(got shapes {[list(p.shape) for p in parts[:4]]})"
            )
        return torch.cat(parts)
    raise ValueError(
        f"features[{name!r}] must be an [N, D] tensor/array, a feature file path, an iterable of "
        f"[n_i, D] chunks or an nn.Module (got {type(features).__name__})"
    )


# ------------------------------------------------------------------------------------------ layers
def resolve_layer(model: nn.Module, layer=None) -> tuple[nn.Module, str, str]:
    """(module, its name, "input" | "output"): what the hook keeps.

    ``layer``: None -> the input of the last ``nn.Linear`` (the classifier); a module name (as in
    ``model.named_modules()``) or a module -> its output; ``(name_or_module, "input" | "output")`` to choose.
    """
    where = "output"
    if isinstance(layer, tuple):
        if len(layer) != 2 or layer[1] not in ("input", "output"):
            raise ValueError(f"layer must be a name, a module, or (name_or_module, 'input'|'output') (got {layer!r})")
        layer, where = layer
    names = {id(m): n for n, m in model.named_modules()}
    if layer is None:
        linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(
                f"{type(model).__name__} has no nn.Linear classifier; pass layer=<module name> "
                "(see model.named_modules()) to choose the features"
            )
        name, module = linears[-1]
        return module, name, "input"
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer not in modules:
            some = [n for n in modules if n][:8]
            raise ValueError(
                f"layer {layer!r} is not a module of {type(model).__name__} (some names: {', '.join(some)})"
            )
        return modules[layer], layer, where
    if isinstance(layer, nn.Module):
        if id(layer) not in names:
            raise ValueError(f"layer {type(layer).__name__} is not a submodule of {type(model).__name__}")
        return layer, names[id(layer)], where
    raise ValueError(
        f"layer must be None, a module name, a module or (layer, 'input'|'output') (got {type(layer).__name__})"
    )


def _pool(act) -> torch.Tensor:
    """Activations of one batch -> [B, D]: 4-D conv maps [B, C, H, W] are averaged over space (global
    average pooling); other shapes are flattened after the batch dimension."""
    if isinstance(act, (tuple, list)):
        act = act[0]
    if not torch.is_tensor(act):
        raise ValueError(f"the hooked layer produced {type(act).__name__}, not a tensor; choose another layer")
    if act.dim() == 4:
        act = act.mean(dim=(2, 3))
    return act.reshape(act.shape[0], -1).float()


def check_dataloader(dataloader) -> None:
    """Features must come in the order of the target's labels: reject shuffling loaders."""
    if isinstance(dataloader, torch.utils.data.DataLoader) and isinstance(
        dataloader.sampler, torch.utils.data.RandomSampler
    ):
        raise ValueError(
            "dataloader must not shuffle (shuffle=False): the features' rows must match the order of the target labels"
        )


# ---------------------------------------------------------------------------------------- extraction
def _inputs(batch):
    """The model inputs of one batch: a tensor; the first element of (inputs, labels, ...); a dict
    without its label entries (passed as keyword arguments)."""
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("dataloader yielded an empty batch")
        return batch[0]
    return batch


def _call(model, x, device):
    if isinstance(x, Mapping):
        kw = {
            k: (v.to(device) if torch.is_tensor(v) else v)
            for k, v in x.items()
            if k not in ("label", "labels", "target", "targets")
        }
        return model(**kw)
    if torch.is_tensor(x):
        x = x.to(device)
    return model(x)


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def extract_features(
    model: nn.Module,
    dataloader,
    layer=None,
    *,
    device=None,
    cache_dir=None,
    progress: bool | None = None,
    name: str | None = None,
) -> torch.Tensor:
    """``[N, D]`` float32 CPU features of ``model`` on every sample of ``dataloader``.

    Args:
        model: any ``nn.Module``; run in eval mode (its training flag is restored afterwards).
        dataloader: a non-shuffling ``DataLoader`` or a list of batches; a batch is the input tensor, an
            ``(inputs, labels, ...)`` tuple/list (the first element is the input) or a dict of keyword inputs.
        layer: see ``resolve_layer`` (default: the input of the last ``nn.Linear``). 4-D activations are
            global-average-pooled, others flattened.
        device: where the model runs (moved there and back); default: where its parameters are.
        cache_dir: feature cache folder; None: ``features/`` under the cache root (``$EMMS_EXT_CACHE`` or
            ``~/.cache/emms_ext``);
            False: no cache. Keyed by model class + state_dict hash, layer and a fingerprint of the data
            (number of batches, first and last batch).
        progress: tqdm bar over batches (None: only on a terminal).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module (got {type(model).__name__})")
    check_dataloader(dataloader)
    module, layer_name, where = resolve_layer(model, layer)
    path = None
    if cache_dir is not False:
        data_key = data_fingerprint(dataloader)
        if data_key is not None:
            root = default_cache_dir("features") if cache_dir is None else cache_dir
            path = feature_path(root, model, layer_name, where, data_key)
            cached = load_feature_file(path)
            if cached is not None:
                return cached

    target_dev = torch.device(device) if device is not None else _model_device(model)
    home, was_training = _model_device(model), model.training
    chunks: list[torch.Tensor] = []

    def hook(mod, inputs, output):
        chunks.append(_pool(inputs if where == "input" else output).cpu())

    handle = module.register_forward_hook(hook)
    try:
        if target_dev != home:
            model.to(target_dev)
        model.eval()
        total = len(dataloader) if hasattr(dataloader, "__len__") else None
        batches = progress_iter(dataloader, total, f"features {name or type(model).__name__}", "batch", progress)
        with torch.inference_mode():
            for batch in batches:
                before = len(chunks)
                _call(model, _inputs(batch), target_dev)
                if len(chunks) != before + 1:
                    raise ValueError(
                        f"layer {layer_name!r} ran {len(chunks) - before} times in one forward pass "
                        "(expected once); choose a layer that runs once per batch"
                    )
    finally:
        handle.remove()
        model.train(was_training)
        if target_dev != home:
            model.to(home)
    if not chunks:
        raise ValueError("dataloader yielded no batches")
    feats = torch.cat(chunks)
    if path is not None:
        save_feature_file(path, feats, layer=layer_name, where=where)
    return feats
