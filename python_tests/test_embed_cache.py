"""The on-disk embedding cache: hits are asserted, vectors come back identical, keys separate models and
poolings, the folder follows EMMS_EXT_CACHE."""

from __future__ import annotations

import pytest
import torch

# embed_models first: it sets HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE before transformers is imported
from embed_models import build_bert, defaults_installed

pytest.importorskip("transformers", reason="the embed extra (transformers) is not installed")

import emms_ext.embed as E  # noqa: E402
from emms_ext.common.cache import default_cache_dir  # noqa: E402

TEXTS = ["a photo of a cat.", "a photo of a dog.", "the man on the left", "a photo of a cat."]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return build_bert(tmp_path_factory.mktemp("cache_models") / "bert")


class CountingEmbedder:
    """Wraps an embedder and records every text it is asked to encode."""

    def __init__(self, inner):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.identity, self.pooling = inner.identity, inner.pooling
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen.extend(texts)
        return self.inner.encode(texts)


def test_second_pass_is_all_hits_and_identical(tmp_path, bert_dir):
    e = CountingEmbedder(E.HFEncoder(bert_dir))
    cache = E.EmbeddingCache(tmp_path)
    first = cache.encode(e, TEXTS)
    assert (cache.last_hits, cache.last_misses) == (0, 3)  # nothing on disk; the repeated text computed once
    assert sorted(e.seen) == sorted(set(TEXTS))
    second = cache.encode(e, TEXTS)
    assert (cache.last_hits, cache.last_misses) == (4, 0) and (cache.hits, cache.misses) == (4, 3)
    assert len(e.seen) == 3  # the model was not called again
    assert torch.equal(first, second)
    torch.testing.assert_close(second, e.inner.encode(TEXTS), atol=1e-6, rtol=0)
    # a new cache object on the same folder (a later process) hits as well
    again = E.EmbeddingCache(tmp_path)
    torch.testing.assert_close(again.encode(e, TEXTS[::-1]), first.flip(0), atol=1e-6, rtol=0)
    assert again.last_misses == 0 and len(again) == 3


def test_keys_separate_models_and_poolings(tmp_path, bert_dir):
    cache = E.EmbeddingCache(tmp_path)
    mean, cls = E.HFEncoder(bert_dir), E.HFEncoder(bert_dir, pooling="cls")
    a = cache.encode(mean, TEXTS[:2])
    b = cache.encode(cls, TEXTS[:2])
    assert cache.last_misses == 2  # same model, other pooling: not a hit
    assert not torch.allclose(a, b)
    other = build_bert(tmp_path / "other_bert", seed=5)  # other weights: other identity
    c = cache.encode(E.HFEncoder(other), TEXTS[:2])
    assert cache.last_misses == 2 and not torch.allclose(a, c)


def test_cached_embedder_and_env_folder(tmp_path, bert_dir, monkeypatch):
    monkeypatch.setenv("EMMS_EXT_CACHE", str(tmp_path / "envcache"))
    assert default_cache_dir("embeddings") == tmp_path / "envcache" / "embeddings"
    assert default_cache_dir("features") == tmp_path / "envcache" / "features"
    ce = E.CachedEmbedder(E.HFEncoder(bert_dir))
    assert ce.cache.directory == tmp_path / "envcache" / "embeddings"
    v1 = ce.encode(TEXTS)
    v2 = ce.encode(TEXTS)
    assert ce.cache.last_hits == len(TEXTS) and torch.equal(v1, v2)
    assert (tmp_path / "envcache" / "embeddings" / "embeddings.sqlite").is_file()
    # task adapters take the cache too, and a second labelling of the same classes hits it
    cache = E.EmbeddingCache(tmp_path / "tasks")
    lab1 = E.classification_labels([0, 1, 1], ["cat", "dog"], [ce.embedder], cache=cache)
    lab2 = E.classification_labels([1, 0, 0], ["cat", "dog"], [ce.embedder], cache=cache)
    assert cache.last_hits == 2 and cache.last_misses == 0
    assert torch.equal(lab1.table[0], lab2.table[0])


@pytest.mark.skipif(not defaults_installed(), reason="default offline models are not installed")
def test_defaults_hit_the_cache(tmp_path):
    embs = E.default_embedders(progress=False)
    cache = E.EmbeddingCache(tmp_path)
    texts = [f"a photo of a {w}." for w in ("cat", "dog", "car", "bird", "tree")]
    first = [cache.encode(e, texts) for e in embs]
    second = []
    for e in embs:
        second.append(cache.encode(e, texts))
        assert cache.last_hits == len(texts) and cache.last_misses == 0
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
