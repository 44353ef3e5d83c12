"""Candidates that are (part of) an F-label embedder (docs/design.md §7).

On free text, EMMS scores a candidate by how well its features regress the label texts' embeddings: a
candidate that is one of the embedders, or a layer of one, maps related texts into that embedder's own space
and starts ahead for that reason alone. ``find_overlaps`` names such pairs, by model name or folder, or by
shared weights (so that an ``nn.Module`` rebuilt from the same checkpoint, or cut after some layer, is
caught too); ``outside_embedders`` picks the installed offline embedders that overlap no candidate.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

# Tasks whose labels are free text per sample: there an embedder favours its own candidates. Class-like
# tasks (a few class names or a vocabulary of answers) are not affected and stay quiet.
FREE_TEXT_TASKS = ("captioning", "free_text", "text_qa", "referring")
SHARED_WEIGHTS = 0.5  # share of a candidate's weights (by element) found in an embedder to call it a part of it
_MIN_ELEMENTS = 1024  # matrices only: small vectors (norms, biases) could match by construction


def parameter_digests(module: nn.Module) -> dict[str, int]:
    """digest -> number of elements, for every floating parameter of `module` with >= 1024 elements
    (float32 bytes, so a copy in another device matches; the same tensor shared twice counts once)."""
    out = {}
    for p in module.parameters():
        if p.is_floating_point() and p.numel() >= _MIN_ELEMENTS:
            data = p.detach().to("cpu", torch.float32).contiguous().view(torch.uint8).numpy()
            out[hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()] = p.numel()
    return out


def shared_share(candidate: dict[str, int], embedder: dict[str, int]) -> float:
    """Share of the candidate's weights (by element) that the embedder holds too."""
    total = sum(candidate.values())
    return sum(n for d, n in candidate.items() if d in embedder) / total if total else 0.0


def _torch_module(embedder) -> nn.Module | None:
    inner = getattr(embedder, "embedder", embedder)  # a CachedEmbedder wraps the model's embedder
    model = getattr(inner, "model", None)
    return model if isinstance(model, nn.Module) else None


def _names(embedder) -> set[str]:
    """Lower-case names and resolved folders an embedder goes by."""
    from ..embed.models.registry import ALIASES

    inner = getattr(embedder, "embedder", embedder)
    name = str(getattr(inner, "name", "")).lower()
    names = {name} | {alias for alias, target in ALIASES.items() if target.lower() == name}
    folder = getattr(inner, "folder", None)
    if folder is not None:
        names.add(os.fspath(Path(folder).resolve()).lower())
    return {n for n in names if n}


def _entry_names(key, entry) -> set[str]:
    """A zoo entry's names: its key (without an ``@layer`` suffix) and, for a path, the resolved folder."""
    base = str(key).split("@")[0].lower()
    names = {base, base.rsplit("/", 1)[-1]}
    if isinstance(entry, (str, os.PathLike)) and os.path.isdir(os.path.expanduser(os.fspath(entry))):
        names.add(os.fspath(Path(os.path.expanduser(os.fspath(entry))).resolve()).lower())
    return names


def find_overlaps(zoo: Mapping, embedders: list) -> dict[str, list[str]]:
    """candidate -> names of the embedders it is (part of): the same model name or folder, or at least half
    of its weights found among the embedder's. Candidates that overlap nothing are left out."""
    if not embedders:
        return {}
    emb_names = [_names(e) for e in embedders]
    emb_digests: list[dict | None] = [None] * len(embedders)
    out = {}
    for key, entry in zoo.items():
        hits = []
        cand = parameter_digests(entry) if isinstance(entry, nn.Module) else None
        for i, e in enumerate(embedders):
            if _entry_names(key, entry) & emb_names[i]:
                hits.append(i)
                continue
            if cand:
                if emb_digests[i] is None:
                    module = _torch_module(e)
                    emb_digests[i] = parameter_digests(module) if module is not None else {}
                if shared_share(cand, emb_digests[i]) >= SHARED_WEIGHTS:
                    hits.append(i)
        if hits:
            out[str(key)] = [str(getattr(getattr(embedders[i], "embedder", embedders[i]), "name", i)) for i in hits]
    return out


def outside_embedders(zoo: Mapping, **load_options) -> list:
    """The installed offline embedders (``emms_ext.embed.available_models``) that overlap no candidate; a
    ValueError naming what to install when none is left."""
    from ..embed.models.locate import MPNET_INSTALL
    from ..embed.models.registry import OFFLINE_MODELS, available_models, load_embedder

    loaded = [load_embedder(n, **load_options) for n in available_models()]
    taken = {e for names in find_overlaps(zoo, loaded).values() for e in names}
    keep = [e for e in loaded if e.name not in taken]
    if not keep:
        missing = [n for n, m in OFFLINE_MODELS.items() if not m.available()]
        raise ValueError(
            f"embedders='outside' found no installed F-label embedder outside the zoo (every one of "
            f"{[e.name for e in loaded]} overlaps a candidate); install one, e.g. all-mpnet-base-v2: "
            f"{MPNET_INSTALL}{'; not installed: ' + ', '.join(missing) if missing else ''}"
        )
    return keep


def overlap_message(overlaps: dict[str, list[str]]) -> str:
    """The one warning for a free-text ranking whose candidates overlap its embedders."""
    from ..embed.models.locate import MPNET_INSTALL

    pairs = "; ".join(f"{c} (part of {', '.join(e)})" for c, e in overlaps.items())
    return (
        f"on free text an F-label embedder favours its own candidates, and these candidates are (part of) an "
        f"embedder: {pairs}. Their scores are inflated; pass embedders='outside' to use only embedders outside "
        f"the zoo (all-mpnet-base-v2, of another family, installs with: {MPNET_INSTALL})"
    )
