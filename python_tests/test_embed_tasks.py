"""Every task adapter end to end: labels -> F-labels -> emms_score / emms_scores, with features that do
or do not carry the label information (the informative ones must score higher)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

# embed_models first: it sets HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE before transformers is imported
from embed_models import build_bert, build_gpt2, defaults_installed

pytest.importorskip("transformers", reason="the embed extra (transformers) is not installed")

import emms_ext  # noqa: E402
import emms_ext.embed as E  # noqa: E402
from emms_ext.core.labels import ClassLabels  # noqa: E402

ANIMALS = ["cat", "dog", "bird", "horse"]
COLORS = ["red", "blue", "green"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMMS_EXT_CACHE", str(tmp_path / "default_cache"))  # never the user's home


@pytest.fixture(scope="module")
def embedders(tmp_path_factory):
    """The real offline defaults when installed, else two tiny random models (so nothing here skips)."""
    if defaults_installed():
        return E.default_embedders(progress=False)
    root = tmp_path_factory.mktemp("task_models")
    return [E.load_embedder(build_bert(root / "bert")), E.load_embedder(build_gpt2(root / "gpt2"))]


@pytest.fixture
def cache(tmp_path):
    return E.EmbeddingCache(tmp_path / "cache")


def informative(codes: np.ndarray, D: int = 12, noise: float = 0.3, seed: int = 0) -> np.ndarray:
    """[N, D] features that are a noisy linear function of the label codes [N, P]."""
    rng = np.random.default_rng(seed)
    codes = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    return codes @ rng.standard_normal((codes.shape[1], D)) + noise * rng.standard_normal((len(codes), D))


def noise_features(N: int, D: int = 12, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, D))


def assert_ranks(labels, good, bad, **kw):
    res = emms_ext.emms_scores({"good": good, "bad": bad}, labels, **kw)
    assert res.order == ["good", "bad"], res.scores
    for r in res.values():
        assert np.isfinite(r.score) and abs(float(r.t.sum()) - 1) < 1e-9
    return res


def test_classification(embedders, cache):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 120)
    names = ["aquarium_fish", "T-shirt/top", "maple tree", "pickup_truck"]
    lab = E.classification_labels(
        y, names, embedders, templates=["a photo of a {}.", "a picture of a {}."], cache=cache
    )
    assert isinstance(lab, ClassLabels) and lab.names == names
    assert len(lab.table) == len(embedders) and all(t.shape == (4, e.dim) for t, e in zip(lab.table, embedders))
    assert torch.equal(lab.indices, torch.as_tensor(y))
    assert cache.misses == 8 * len(embedders)  # 4 classes x 2 templates, each model
    r = emms_ext.emms_score(informative(np.eye(4)[y]), lab)
    assert r.n_embedders == len(embedders) and r.n_samples == 120
    assert_ranks(lab, informative(np.eye(4)[y]), noise_features(120))
    # string labels give the same F-labels, with the class list inferred
    lab2 = E.classification_labels(
        [names[i] for i in y], None, embedders, templates=["a photo of a {}.", "a picture of a {}."], cache=cache
    )
    assert lab2.names == sorted(names)
    perm = [sorted(names).index(n) for n in names]
    torch.testing.assert_close(lab2.table[0][perm], lab.table[0], atol=1e-6, rtol=0)


def test_clean_label():
    assert E.clean_label("aquarium_fish") == "aquarium fish"
    assert E.clean_label("T-shirt/top") == "T-shirt or top"
    assert E.clean_label("/a/abbey/") == "a or abbey"
    assert E.clean_label("  sea__lion ") == "sea lion"


def test_multilabel(embedders, cache):
    rng = np.random.default_rng(1)
    hot = (rng.random((100, 4)) < 0.4).astype(np.int64)
    hot[hot.sum(1) == 0, 0] = 1
    lab = E.multilabel_labels(hot, ANIMALS, embedders, cache=cache)
    U = len({tuple(r) for r in hot.tolist()})
    assert all(t.shape[0] == U for t in lab.table) and lab.indices.shape == (100,)
    # the row of {cat, dog} is the mean of the cat and dog class rows
    single = E.classification_labels([0, 1], ANIMALS, embedders, cache=cache)
    i = next(j for j, n in enumerate(lab.names) if n == "cat + dog")
    torch.testing.assert_close(lab.table[0][i], single.table[0][:2].mean(0), atol=1e-6, rtol=0)
    assert_ranks(lab, informative(hot), noise_features(100))
    hot[3] = 0  # a sample without labels: explicit text or an error
    with pytest.raises(ValueError, match="no positive class"):
        E.multilabel_labels(hot, ANIMALS, embedders, cache=cache)
    lab = E.multilabel_labels(hot, ANIMALS, embedders, empty_text="nothing", cache=cache)
    assert "nothing" in lab.names
    emms_ext.emms_score(informative(hot), lab)


def test_regression():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((80, 6))
    y = X @ rng.standard_normal((6, 2)) + 0.1 * rng.standard_normal((80, 2))
    Z = E.regression_labels(y)
    assert Z.shape == (80, 2, 1) and Z.dtype == torch.float64
    assert torch.equal(Z[:, :, 0], torch.as_tensor(y))
    assert E.regression_labels(y[:, 0]).shape == (80, 1, 1)
    assert_ranks(Z, X, noise_features(80, 6))
    with pytest.raises(ValueError, match="targets must be finite"):
        E.regression_labels([1.0, np.nan])
    with pytest.raises(ValueError, match=r"targets must be \[N\] or \[N, T\]"):
        E.regression_labels(np.zeros((3, 2, 2)))


def _captions(rng, n):
    animal, color = rng.integers(0, 4, n), rng.integers(0, 3, n)
    texts = [
        [f"a {COLORS[c]} {ANIMALS[a]}", f"a photo of a {ANIMALS[a]} that is {COLORS[c]}"][: 1 + (i % 2)]
        for i, (a, c) in enumerate(zip(animal, color))
    ]
    return texts, np.concatenate([np.eye(4)[animal], np.eye(3)[color]], 1)


@pytest.mark.parametrize("reduce", ["repeat", "mean"])
def test_free_text(embedders, cache, reduce):
    texts, codes = _captions(np.random.default_rng(3), 60)
    lab = E.free_text_labels(texts, embedders, reduce=reduce, cache=cache)
    M = sum(len(t) for t in texts) if reduce == "repeat" else 60
    assert lab.n_samples == 60 and lab.sample_index.shape == (M,)
    assert all(b.shape == (M, e.dim) for b, e in zip(lab.labels, embedders))
    good, bad = lab.features(informative(codes)), lab.features(noise_features(60))
    assert good.shape == (M, 12)
    assert_ranks(lab.labels, good, bad, ridge=1.0)
    with pytest.raises(ValueError, match="X must be"):
        lab.features(np.zeros((59, 3)))


def test_referring_expressions(embedders, cache):
    rng = np.random.default_rng(4)
    n = 60
    animal = rng.integers(0, 4, n)
    x0, y0 = rng.uniform(0, 300, n), rng.uniform(0, 200, n)
    boxes = np.stack([x0, y0, x0 + rng.uniform(10, 300, n), y0 + rng.uniform(10, 200, n)], 1)
    exprs = [f"the {ANIMALS[a]} on the {'left' if b[0] < 300 else 'right'}" for a, b in zip(animal, boxes)]
    blocks = E.referring_expression_labels(exprs, boxes, (640, 480), embedders, cache=cache)
    assert len(blocks) == len(embedders) and blocks[0].shape == (n, embedders[0].dim)
    geo = E.referring_expression_labels(
        exprs, boxes, np.tile([640, 480], (n, 1)), embedders, geometric=True, cache=cache
    )
    assert len(geo) == len(embedders) + 1 and geo[-1].shape == (n, 10 + 8 * 4)
    rel = boxes / np.array([640, 480, 640, 480])
    codes = np.concatenate([np.eye(4)[animal], rel, geo[-1].numpy()], 1)
    assert_ranks(geo, informative(codes, D=20, noise=0.05), noise_features(n, 20), ridge=1.0)
    emms_ext.emms_score(informative(codes), blocks)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
    same = E.referring_expression_labels(exprs, xywh, (640, 480), embedders[:1], box_format="xywh", cache=cache)
    torch.testing.assert_close(same[0], blocks[0], atol=1e-6, rtol=0)


def test_vqa(embedders, cache):
    rng = np.random.default_rng(5)
    vocab = ["yes", "no", "two", "red", "blue"]
    a = rng.integers(0, 5, 100)
    answers = [[vocab[i], vocab[i], vocab[(i + 1) % 5]] if k % 2 else vocab[i].upper() + "." for k, i in enumerate(a)]
    lab = E.vqa_labels(answers, embedders, vocabulary=vocab + ["three"], cache=cache)
    assert lab.names == vocab + ["three"] and torch.equal(lab.indices, torch.as_tensor(a))
    assert all(t.shape == (6, e.dim) for t, e in zip(lab.table, embedders))
    assert_ranks(lab, informative(np.eye(5)[a]), noise_features(100))  # the unused answer is ignored
    with pytest.raises(ValueError, match="answers must be in vocabulary"):
        E.vqa_labels(["yes", "maybe"], embedders, vocabulary=vocab, cache=cache)


def test_text_qa(embedders, cache):
    rng = np.random.default_rng(6)
    animal, color = rng.integers(0, 4, 70), rng.integers(0, 3, 70)
    answers = [
        f"the {COLORS[c]} {ANIMALS[a]} in the garden" if i % 3 else [f"a {ANIMALS[a]}", "other"]
        for i, (a, c) in enumerate(zip(animal, color))
    ]
    questions = [f"what is in picture {i}?" for i in range(70)]
    blocks = E.text_qa_labels(answers, embedders, cache=cache)
    assert len(blocks) == len(embedders) and blocks[0].shape == (70, embedders[0].dim)
    codes = np.concatenate([np.eye(4)[animal], np.eye(3)[color]], 1)
    assert_ranks(blocks, informative(codes), noise_features(70), ridge=1.0)
    with_q = E.text_qa_labels(answers, embedders, questions=questions, template="{question} {answer}", cache=cache)
    emms_ext.emms_score(informative(codes), with_q, ridge=1.0)
    with pytest.raises(ValueError, match="questions must have N"):
        E.text_qa_labels(answers, embedders, questions=questions[:-1], cache=cache)
    with pytest.raises(ValueError, match="no questions were given"):
        E.text_qa_labels(answers, embedders, template="{question} {answer}", cache=cache)


def test_adapters_default_embedders_and_default_cache(tmp_path):
    if not defaults_installed():
        pytest.skip("default offline models are not installed")
    lab = E.classification_labels([0, 1, 0, 1], ["cat", "dog"])  # embedders=None, cache="default"
    assert len(lab.table) >= 2
    assert (tmp_path / "default_cache" / "embeddings" / "embeddings.sqlite").is_file()  # EMMS_EXT_CACHE honoured


# --------------------------------------------------------------------------------------- errors
def test_errors_empty_inputs(embedders, cache):
    with pytest.raises(ValueError, match="class_names must be a non-empty list"):
        E.classification_labels([0, 0], [], embedders, cache=cache)
    with pytest.raises(ValueError, match="labels must be a non-empty list"):
        E.classification_labels([], ["cat"], embedders, cache=cache)
    with pytest.raises(ValueError, match="texts must hold N >= 1"):
        E.free_text_labels([], embedders, cache=cache)
    with pytest.raises(ValueError, match=r"texts\[1\] must be a non-empty list"):
        E.free_text_labels(["a cat", []], embedders, cache=cache)
    with pytest.raises(ValueError, match="answers must be a non-empty list"):
        E.vqa_labels([], embedders, cache=cache)
    with pytest.raises(ValueError, match="answers must be a non-empty list"):
        E.text_qa_labels([], embedders, cache=cache)
    with pytest.raises(ValueError, match="embedders must hold K >= 1"):
        E.classification_labels([0], ["cat"], [], cache=cache)
    with pytest.raises(ValueError, match="texts must be a non-empty list"):
        E.embed_texts([], embedders, cache=cache)


def test_errors_mismatches_and_names(embedders, cache):
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, C=2\)"):
        E.classification_labels([0, 2], ["cat", "dog"], embedders, cache=cache)
    with pytest.raises(ValueError, match="class_names must be given"):
        E.classification_labels([0, 1], None, embedders, cache=cache)
    with pytest.raises(ValueError, match="labels must be names in class_names"):
        E.classification_labels(["cat", "cow"], ["cat", "dog"], embedders, cache=cache)
    with pytest.raises(ValueError, match="class_names must be distinct"):
        E.classification_labels([0, 1], ["cat", "cat"], embedders, cache=cache)
    with pytest.raises(ValueError, match=r"templates\[0\] must contain exactly one"):
        E.classification_labels([0, 1], ["cat", "dog"], embedders, templates="a photo", cache=cache)
    with pytest.raises(ValueError, match=r"multi_hot must be \[N, C\] .* C = len\(class_names\) = 3"):
        E.multilabel_labels(np.ones((4, 2)), ANIMALS[:3], embedders, cache=cache)
    with pytest.raises(ValueError, match=r"boxes must be \[N, 4\] with N = len\(expressions\) = 2"):
        E.referring_expression_labels(["a", "b"], np.zeros((3, 4)), (10, 10), embedders, cache=cache)
    with pytest.raises(ValueError, match="image_sizes must be"):
        E.referring_expression_labels(["a", "b"], np.ones((2, 4)), np.ones((3, 2)), embedders, cache=cache)
    with pytest.raises(ValueError, match="x1 >= x0"):
        E.referring_expression_labels(["a"], [[5, 5, 1, 1]], (10, 10), embedders, cache=cache)
    with pytest.raises(ValueError, match="reduce must be"):
        E.free_text_labels(["a"], embedders, reduce="sum", cache=cache)
    with pytest.raises(ValueError, match="all-MiniLM-L6-v2"):  # unknown names list the offline models
        E.classification_labels([0, 1], ["cat", "dog"], ["no-such/model-xyz"], cache=cache)
    # F-labels and features of different N: the score API names the mismatch
    lab = E.classification_labels([0, 1, 0, 1], ["cat", "dog"], embedders, cache=cache)
    with pytest.raises(ValueError, match="N == 4"):
        emms_ext.emms_score(np.zeros((5, 3)), lab)


@pytest.mark.parametrize("reduce", ["repeat", "mean"])
def test_several_captions_through_every_door(embedders, cache, reduce):
    # The container itself goes to emms_score / emms_scores / rank, with [N, D] features; rank also builds it
    # from raw captions (task="captioning"). Every door gives the explicit-repeat score.
    texts, codes = _captions(np.random.default_rng(5), 40)
    lab = E.free_text_labels(texts, embedders, reduce=reduce, cache=cache)
    zoo = {"good": informative(codes), "bad": noise_features(40)}
    want = {k: emms_ext.emms_score(lab.features(x), lab.labels, ridge=1.0).score for k, x in zoo.items()}
    assert want["good"] > want["bad"]
    got_one = {k: emms_ext.emms_score(x, lab, ridge=1.0).score for k, x in zoo.items()}
    got_zoo = emms_ext.emms_scores(zoo, lab, ridge=1.0).scores
    r_ready = emms_ext.rank(zoo, lab, ridge=1.0, progress=False, metric="emms")
    for got in (got_one, got_zoo, r_ready.scores):
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-10, abs=1e-12)
    if reduce == "repeat":  # rank's own adapter: the default reduction
        r_raw = emms_ext.rank(
            zoo,
            texts,
            task="captioning",
            embedders=embedders,
            label_cache=cache,
            ridge=1.0,
            progress=False,
            metric="emms",
        )
        assert not r_raw.failures and r_raw.order == ["good", "bad"]
        for k in want:
            assert r_raw.scores[k] == pytest.approx(want[k], rel=1e-10, abs=1e-12)
