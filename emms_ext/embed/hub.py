"""Hugging Face checkpoints as zoo candidates: a model folder (or a hub id already in the local cache) run
over a dataset column, every hidden layer a candidate, from one forward pass per batch.

    feats = layer_features("path/to/minilm", texts, layers="all")   # {"minilm@1": [N, H], ...}

Text models: AutoTokenizer + AutoModel, masked mean pooling of each layer's token states ("cls": the first
token). Image models: AutoImageProcessor + AutoModel, the mean over each layer's tokens (or spatial
positions). CLIP-style checkpoints use the tower that matches the inputs. Nothing is downloaded; features
are cached per (model files, inputs, layer, pooling) in the feature store (docs/design.md §7).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..common.cache import default_cache_dir, load_feature_file, save_feature_file, update_hash
from ..common.progress import progress_bar
from .models.base import fingerprint_files
from .models.hf import import_transformers, quiet_transformers
from .models.locate import identity_files, local_model_dir
from .models.pooling import pool

LAYER_CHOICES = ("last", "all", "mean")
_FORMAT = 1  # bump when the features computed here change, so cached files renew


def is_model_ref(entry) -> bool:
    """True for a string / path naming a model folder (with config.json) or a hub id in the local cache;
    False for anything else (feature files included)."""
    if not isinstance(entry, (str, os.PathLike)):
        return False
    path = Path(os.path.expanduser(os.fspath(entry)))
    if path.is_file():
        return False
    folder = local_model_dir(entry)
    return folder is not None and (folder / "config.json").is_file()


def model_name(ref) -> str:
    """Display name of a model reference: a folder's name, or the hub id as given."""
    s = os.fspath(ref).rstrip("/")
    path = Path(os.path.expanduser(s))
    if not path.is_dir():
        return s
    # A generic leaf ("model" inside a package, a hub snapshot's commit hash) says less than its parent.
    generic = path.name in ("model", "models") or (
        len(path.name) == 40 and all(c in "0123456789abcdef" for c in path.name)
    )
    return path.parent.name if generic else path.name


def load_model(ref, modality: str):
    """(model, preprocessor) for ``modality`` "text" or "image" from a local folder / cached hub id."""
    folder = local_model_dir(ref)
    if folder is None:
        raise ValueError(f"model {os.fspath(ref)!r} is neither a local folder nor a hub id in the local cache")
    with quiet_transformers() as t:
        return _load(t, folder, modality)


def _load(t, folder, modality: str):
    config = t.AutoConfig.from_pretrained(folder, local_files_only=True)
    if modality == "text":
        prep = t.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = t.AutoModel.from_pretrained(folder, local_files_only=True, **_no_pooler(t, config, folder))
        if hasattr(model, "text_model") and hasattr(config, "text_config"):  # CLIP-style: the text tower
            model = model.text_model
    elif modality == "image":
        prep = t.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        model = t.AutoModel.from_pretrained(folder, local_files_only=True)
        if hasattr(model, "vision_model") and hasattr(config, "vision_config"):
            model = model.vision_model
    else:
        raise ValueError(f"modality must be 'text' or 'image' (got {modality!r})")
    return model.eval(), prep


def _no_pooler(t, config, folder) -> dict:
    """{"add_pooling_layer": False} for a checkpoint saved without a pooler (sentence-transformers exports)
    whose architecture has that option: only hidden states are read, and it then loads without a MISSING
    report. Checkpoints with a pooler keep it (no UNEXPECTED report either)."""
    import inspect

    weights = Path(folder) / "model.safetensors"
    cls = getattr(t.AutoModel, "_model_mapping", {}).get(type(config), None) if weights.is_file() else None
    if cls is None or "add_pooling_layer" not in inspect.signature(cls.__init__).parameters:
        return {}
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        has_pooler = any("pooler." in k for k in f.keys())
    return {} if has_pooler else {"add_pooling_layer": False}


def resolve_layers(layers, n_layers: int) -> list:
    """Hidden-state indices to keep (0 = the embedding layer's output, only when asked for by index), or
    ["mean"]. layers: "last" | "all" | "mean" | an int | a list of ints."""
    if isinstance(layers, str):
        if layers not in LAYER_CHOICES:
            raise ValueError(f"layers must be one of {list(LAYER_CHOICES)} or layer indices (got {layers!r})")
        return {"last": [n_layers], "all": list(range(1, n_layers + 1)), "mean": ["mean"]}[layers]
    picked = [layers] if isinstance(layers, int) else list(layers)
    bad = [i for i in picked if not isinstance(i, int) or not -n_layers <= i <= n_layers]
    if bad or not picked:
        raise ValueError(f"layers must be indices in [0, {n_layers}] (or negative from the end); got {layers!r}")
    return [i % (n_layers + 1) if i < 0 else i for i in picked]


def _pooled_states(model, prep, batch, modality: str, pooling: str) -> list[torch.Tensor]:
    """Per hidden state [B, H] of one batch (index 0 = embeddings)."""
    if modality == "text":
        enc = prep(list(batch), padding=True, truncation=True, return_tensors="pt")
        out = model(**enc, output_hidden_states=True)
        mask = enc["attention_mask"]
        return [pool(h, mask, pooling) for h in out.hidden_states]
    enc = prep(images=list(batch), return_tensors="pt")
    out = model(pixel_values=enc["pixel_values"], output_hidden_states=True)
    states = []
    for h in out.hidden_states:
        h = h.to(torch.float32)
        states.append(h.mean(dim=(2, 3)) if h.dim() == 4 else h.mean(1))  # conv maps [B, C, H, W] or tokens [B, T, H]
    return states


def _data_key(inputs, modality: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    if modality == "text":
        update_hash(h, ("text", list(inputs)))
    else:
        import numpy as np

        update_hash(h, ("image", len(inputs)))
        for im in inputs:
            update_hash(h, np.asarray(im))
    return h.hexdigest()


@torch.inference_mode()
def layer_features(
    ref,
    inputs,
    *,
    modality: str = "text",
    layers="last",
    pooling: str = "mean",
    batch_size: int = 32,
    cache_dir=None,
    bar=None,
    name: str | None = None,
) -> dict[str, torch.Tensor]:
    """{"name@layer": [N, H] float32} for a model folder over N inputs (texts or PIL images), from one
    forward pass per batch. ``layers="mean"`` gives one candidate "name@mean", the mean of layers 1..L.
    cache_dir: the feature store (default ``features/`` under the cache root; False: no cache).
    bar: a progress bar to advance by the inputs processed (one bar for a whole job)."""
    name = name or model_name(ref)
    folder = local_model_dir(ref)
    if folder is None:
        raise ValueError(f"model {os.fspath(ref)!r} is neither a local folder nor a hub id in the local cache")
    config = import_transformers().AutoConfig.from_pretrained(folder, local_files_only=True)
    sub = getattr(config, "text_config" if modality == "text" else "vision_config", None) or config
    n_layers = getattr(sub, "num_hidden_layers", None) or len(getattr(sub, "depths", []) or []) or None
    if n_layers is None:
        raise ValueError(f"model {name!r}: its config names no number of hidden layers")
    keep = resolve_layers(layers, n_layers)
    store = None if cache_dir is False else Path(cache_dir or default_cache_dir("features"))
    h = hashlib.blake2b(digest_size=20)
    update_hash(h, (_FORMAT, fingerprint_files(identity_files(folder)), modality, pooling, _data_key(inputs, modality)))
    key = h.hexdigest()
    paths = {k: None if store is None else store / f"hf-{key}-{k}.pt" for k in keep}
    cached = {k: load_feature_file(p) for k, p in paths.items() if p is not None}
    if all(cached.get(k) is not None for k in keep):
        if bar is not None:
            bar.update(len(inputs))
        return {f"{name}@{k}": cached[k] for k in keep}
    model, prep = load_model(ref, modality)
    chunks: list[list[torch.Tensor]] = []
    for i in range(0, len(inputs), batch_size):
        chunks.append(_pooled_states(model, prep, inputs[i : i + batch_size], modality, pooling))
        if bar is not None:
            bar.update(min(batch_size, len(inputs) - i))
    per_state = [torch.cat([c[j] for c in chunks]) for j in range(len(chunks[0]))]
    out = {}
    for k in keep:
        x = torch.stack(per_state[1:]).mean(0) if k == "mean" else per_state[k]
        out[f"{name}@{k}"] = x
        if paths[k] is not None:
            save_feature_file(paths[k], x, model=name, layer=str(k), pooling=pooling)
    return out


def zoo_features(refs: dict, inputs, *, modality: str, layers="last", pooling="mean", cache_dir=None, progress=None):
    """{"name@layer": [N, H]} for every model of ``refs`` (name -> folder / hub id), one progress bar over all
    the forward passes; a model that fails is returned in the second dict (name -> reason)."""
    feats, failures = {}, {}
    bar = progress_bar(len(refs) * len(inputs), "features", modality if modality == "text" else "image", progress)
    for name, ref in refs.items():
        try:
            feats.update(
                layer_features(
                    ref,
                    inputs,
                    modality=modality,
                    layers=layers,
                    pooling=pooling,
                    cache_dir=cache_dir,
                    bar=bar,
                    name=name,
                )
            )
        except Exception as exc:  # noqa: BLE001 - one bad checkpoint must not stop the others
            failures[name] = f"{type(exc).__name__}: {exc}"
    bar.close()
    return feats, failures
