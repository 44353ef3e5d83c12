"""Features from networks: ``extract_features(model, dataloader, layer=None)`` runs ``model`` once over the
target inputs under ``torch.inference_mode()`` with a forward hook on ``layer`` (default: the input of the
last ``nn.Linear``, i.e. the penultimate features), pools the activations to ``[N, D]`` and caches them on
disk (``emms_ext.feature_cache``). Also ``resolve_layer`` and ``check_dataloader``.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

import torch
from torch import nn

from .feature_cache import _cache_path, _is_dataloader, data_fingerprint, default_cache_dir


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
            raise ValueError(f"{type(model).__name__} has no nn.Linear classifier; pass layer=<module name> "
                             "(see model.named_modules()) to choose the features")
        name, module = linears[-1]
        return module, name, "input"
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer not in modules:
            some = [n for n in modules if n][:8]
            raise ValueError(f"layer {layer!r} is not a module of {type(model).__name__} "
                             f"(some names: {', '.join(some)})")
        return modules[layer], layer, where
    if isinstance(layer, nn.Module):
        if id(layer) not in names:
            raise ValueError(f"layer {type(layer).__name__} is not a submodule of {type(model).__name__}")
        return layer, names[id(layer)], where
    raise ValueError(f"layer must be None, a module name, a module or (layer, 'input'|'output') "
                     f"(got {type(layer).__name__})")


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
    if _is_dataloader(dataloader) and isinstance(dataloader.sampler, torch.utils.data.RandomSampler):
        raise ValueError("dataloader must not shuffle (shuffle=False): the features' rows must match the order "
                         "of the target labels")


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
        kw = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in x.items()
              if k not in ("label", "labels", "target", "targets")}
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


def extract_features(model: nn.Module, dataloader, layer=None, *, device=None, cache_dir=None,
                     progress: bool | None = None, name: str | None = None) -> torch.Tensor:
    """``[N, D]`` float32 CPU features of ``model`` on every sample of ``dataloader``.

    Args:
        model: any ``nn.Module``; run in eval mode (its training flag is restored afterwards).
        dataloader: a non-shuffling ``DataLoader`` or a list of batches; a batch is the input tensor, an
            ``(inputs, labels, ...)`` tuple/list (the first element is the input) or a dict of keyword inputs.
        layer: see ``resolve_layer`` (default: the input of the last ``nn.Linear``). 4-D activations are
            global-average-pooled, others flattened.
        device: where the model runs (moved there and back); default: where its parameters are.
        cache_dir: feature cache folder; None: ``$EMMS_EXT_FEATURE_CACHE`` or ``~/.cache/emms_ext/features``;
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
            path = _cache_path(default_cache_dir() if cache_dir is None else cache_dir, model, layer_name, where,
                               data_key)
            if path.is_file():
                try:
                    return torch.load(path, map_location="cpu", weights_only=True)["features"]
                except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
                    pass

    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        tqdm = None
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
        batches = dataloader
        if tqdm is not None and progress is not False:
            batches = tqdm(dataloader, total=total, desc=f"features {name or type(model).__name__}",
                           unit="batch", disable=None if progress is None else False, leave=False)
        with torch.inference_mode():
            for batch in batches:
                before = len(chunks)
                _call(model, _inputs(batch), target_dev)
                if len(chunks) != before + 1:
                    raise ValueError(f"layer {layer_name!r} ran {len(chunks) - before} times in one forward pass "
                                     "(expected once); choose a layer that runs once per batch")
    finally:
        handle.remove()
        model.train(was_training)
        if target_dev != home:
            model.to(home)
    if not chunks:
        raise ValueError("dataloader yielded no batches")
    feats = torch.cat(chunks)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            torch.save({"features": feats, "layer": layer_name, "where": where}, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return feats
