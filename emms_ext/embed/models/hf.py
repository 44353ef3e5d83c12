"""Hugging Face ``transformers`` embedders: encoders (BERT & co.), CLIP-style text towers, decoder LMs.

transformers is imported only when one of these is constructed, so ``import emms_ext.embed`` stays light.
Every model is opened with ``local_files_only=True``: a name must be a local folder or already be in the
local hub cache (locate.py); nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os

import torch

from .base import BaseEmbedder, fingerprint_files
from .locate import identity_files, local_model_dir
from .pooling import l2_normalize, pool


def import_transformers():
    """transformers, or an ImportError saying which extra installs it."""
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "emms_ext.embed needs transformers for this embedder: "
            "pip install 'emms_ext[embed]' (or pip install transformers)"
        ) from exc
    return transformers


@contextlib.contextmanager
def quiet_transformers():
    """transformers' logging below errors and its weight-loading bars off for the duration (restored after):
    our entry points show one progress bar of their own. Loading a checkpoint for its hidden states, the
    load report's "missing pooler / head" warnings are expected and say nothing about the features."""
    t = import_transformers()
    level, bars = t.logging.get_verbosity(), t.utils.logging.is_progress_bar_enabled()
    t.logging.set_verbosity_error()
    t.utils.logging.disable_progress_bar()
    try:
        yield t
    finally:
        t.logging.set_verbosity(level)
        if bars:
            t.utils.logging.enable_progress_bar()


def resolve_folder(name_or_path) -> os.PathLike:
    """Local folder of a model name/path, or a ValueError saying where the model was looked for."""
    folder = local_model_dir(name_or_path)
    if folder is None:
        raise ValueError(
            f"model {os.fspath(name_or_path)!r} is neither an existing local folder nor a hub id in "
            "the local Hugging Face cache (nothing is downloaded); for the models known to work offline "
            "(e.g. 'all-MiniLM-L6-v2', 'paraphrase-MiniLM-L3-v2') use emms_ext.embed.load_embedder "
            "with a name from emms_ext.embed.available_models()"
        )
    return folder


# Decoder-only families: their last hidden state is causal, so mean pooling over the mask is the
# sensible default (the paper's GPT-2 F-labels) and the tokenizer usually lacks a pad token.
_DECODER_TYPES = {
    "gpt2",
    "gpt_neo",
    "gpt_neox",
    "gptj",
    "llama",
    "mistral",
    "mixtral",
    "opt",
    "bloom",
    "qwen2",
    "qwen3",
    "phi",
    "phi3",
    "gemma",
    "gemma2",
    "falcon",
    "codegen",
    "ctrl",
    "openai-gpt",
    "olmo",
    "smollm3",
    "starcoder2",
}


def is_decoder_config(config) -> bool:
    """True for causal-LM checkpoints (GPT-2, Llama, ...) as opposed to bidirectional encoders."""
    archs = getattr(config, "architectures", None) or []
    return getattr(config, "model_type", "") in _DECODER_TYPES or any(
        a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs
    )


def is_text_tower_config(config) -> bool:
    """True for dual-encoder checkpoints (CLIP, SigLIP, ALIGN...) whose text embedding is
    ``get_text_features``."""
    return hasattr(config, "text_config") and hasattr(config, "vision_config")


class HFEmbedder(BaseEmbedder):
    """Tokenizer + model from a local folder, run in batches; subclasses turn outputs into vectors.

    Args:
        name_or_path: local folder, or a hub id already in the local Hugging Face cache.
        name: display name (default: the folder's name).
        normalize: L2-normalize every vector.
        model, tokenizer: already-built objects to use instead of loading (name_or_path then only names
            the weights for the cache identity).
        Others: see ``BaseEmbedder``.
    """

    def __init__(
        self,
        name_or_path,
        *,
        name: str | None = None,
        normalize: bool = False,
        device="cpu",
        batch_size: int = 64,
        max_length: int = 128,
        dtype=torch.float32,
        progress: bool | None = None,
        model=None,
        tokenizer=None,
        source_id: str | None = None,
    ):
        super().__init__(
            name or os.path.basename(os.fspath(name_or_path).rstrip("/")),
            device=device,
            batch_size=batch_size,
            max_length=max_length,
            dtype=dtype,
            progress=progress,
        )
        self.normalize = bool(normalize)
        self.folder = None  # the checkpoint folder, when loaded from one (rank() matches candidates to it)
        if model is None or tokenizer is None:
            folder = self.folder = resolve_folder(name_or_path)
            with quiet_transformers() as transformers:
                tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
                model = model or transformers.AutoModel.from_pretrained(folder, local_files_only=True)
            source_id = source_id or fingerprint_files(identity_files(folder))
        self.source_id = source_id or "unidentified"
        self.tokenizer = self._prepare_tokenizer(tokenizer)
        self.model = model.to(self.device, self.dtype).eval()
        limit = self._max_positions()
        if limit:  # a longer request would index past the position table
            self.max_length = min(self.max_length, limit)
        self.dim = int(self._encode_batch(["probe"]).shape[-1])

    def _prepare_tokenizer(self, tokenizer):
        return tokenizer

    def _max_positions(self) -> int | None:
        cfg = getattr(self.model, "config", None)
        cfg = getattr(cfg, "text_config", None) or cfg
        n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        return int(n) if n else None

    def _tokenize(self, texts: list[str]) -> dict:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        keep = ("input_ids", "attention_mask", "token_type_ids")
        return {k: v.to(self.device) for k, v in enc.items() if k in keep}

    def _finish(self, vecs: torch.Tensor) -> torch.Tensor:
        vecs = vecs.to(torch.float32)
        return l2_normalize(vecs) if self.normalize else vecs

    @property
    def identity(self) -> str:
        """The base identity, plus ``|l2`` when the vectors are L2-normalized."""
        return super().identity + ("|l2" if self.normalize else "")


class HFEncoder(HFEmbedder):
    """Any ``transformers.AutoModel`` encoder (BERT, MiniLM, RoBERTa, ...): the last hidden state pooled by
    masked mean (``pooling="mean"``, sentence-transformers' default) or the first token (``"cls"``)."""

    def __init__(self, name_or_path, *, pooling: str = "mean", **kwargs):
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls' for an encoder (got {pooling!r})")
        self.pooling = pooling
        super().__init__(name_or_path, **kwargs)

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        enc = self._tokenize(texts)
        hidden = self.model(**enc).last_hidden_state  # [B, T, H]
        return self._finish(pool(hidden, enc["attention_mask"], self.pooling))


class CLIPTextEmbedder(HFEmbedder):
    """Text tower of a dual encoder (CLIP and kin): ``model.get_text_features`` — the projected state of
    the end-of-text token, i.e. the vector CLIP matches against images."""

    pooling = "text_features"

    def _tokenize(self, texts: list[str]) -> dict:
        enc = super()._tokenize(texts)
        enc.pop("token_type_ids", None)  # get_text_features takes none
        return enc

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        out = self.model.get_text_features(**self._tokenize(texts))
        if not torch.is_tensor(out):  # transformers >= 5: a ModelOutput whose pooler_output is projected
            embeds = getattr(out, "text_embeds", None)
            out = embeds if embeds is not None else out.pooler_output
        return self._finish(out)


class DecoderLMEmbedder(HFEmbedder):
    """Decoder-only LM (GPT-2, Llama, ...): masked mean of the last hidden state (``pooling="mean"``, the
    paper's GPT-2 F-labels) or the last real token (``"last"``). Rows are right-padded so that positions
    match unpadded runs."""

    def __init__(self, name_or_path, *, pooling: str = "mean", **kwargs):
        if pooling not in ("mean", "last"):
            raise ValueError(f"pooling must be 'mean' or 'last' for a decoder LM (got {pooling!r})")
        self.pooling = pooling
        super().__init__(name_or_path, **kwargs)

    def _prepare_tokenizer(self, tokenizer):
        if tokenizer.pad_token is None:  # GPT-2 has none; the mask hides whatever fills the padding
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        tokenizer.padding_side = "right"
        return tokenizer

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        enc = self._tokenize(texts)
        enc.pop("token_type_ids", None)
        hidden = self.model(**enc).last_hidden_state
        return self._finish(pool(hidden, enc["attention_mask"], self.pooling))


def hf_embedder(name_or_path, **kwargs) -> HFEmbedder:
    """The right HF embedder for a checkpoint, chosen from its config: text tower for CLIP-like dual
    encoders, decoder LM for causal LMs, encoder otherwise."""
    folder = resolve_folder(name_or_path)
    config = import_transformers().AutoConfig.from_pretrained(folder, local_files_only=True)
    kwargs.setdefault("name", os.fspath(name_or_path).rstrip("/").split("/")[-1])
    if is_text_tower_config(config):
        kwargs.pop("pooling", None)
        return CLIPTextEmbedder(folder, **kwargs)
    if is_decoder_config(config):
        return DecoderLMEmbedder(folder, **kwargs)
    return HFEncoder(folder, **kwargs)
