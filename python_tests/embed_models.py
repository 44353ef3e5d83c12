"""Tiny randomly initialised transformers checkpoints (BERT, GPT-2, CLIP) written to a folder, with
tokenizers built from small vocabularies: the code paths of the paper's models, tested without weights.
Nothing is downloaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = [
    "a",
    "an",
    "the",
    "photo",
    "of",
    "cat",
    "dog",
    "car",
    "truck",
    "bird",
    "man",
    "left",
    "right",
    "on",
    "at",
    "red",
    "blue",
    "what",
    "is",
    "color",
    "yes",
    "no",
    "two",
    "three",
    "or",
    "top",
    "shirt",
]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (so a byte-level BPE vocabulary covers any text)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def build_bert(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + chars + ["##" + c for c in chars] + list(".,-/[]")
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tok = BertTokenizer(str(folder / "vocab.txt"))
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_gpt2(folder: Path, seed: int = 1) -> Path:
    import torch
    from transformers import GPT2Config, GPT2Model, GPT2Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(_bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = GPT2Tokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    torch.manual_seed(seed)
    eos = vocab["<|endoftext|>"]
    cfg = GPT2Config(
        vocab_size=len(vocab),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=128,
        bos_token_id=eos,
        eos_token_id=eos,
        architectures=["GPT2LMHeadModel"],
    )
    GPT2Model(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_clip(folder: Path, seed: int = 2) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    torch.manual_seed(seed)
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=eos,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=16,
        ),
        projection_dim=24,
    )
    CLIPModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_glove(path: Path, dim: int = 8, seed: int = 3) -> Path:
    """A GloVe-format text file over WORDS with random vectors."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = [w + " " + " ".join(f"{x:.6f}" for x in rng.standard_normal(dim)) for w in WORDS]
    path.write_text("\n".join(lines) + "\n")
    return path


def defaults_installed() -> bool:
    from emms_ext.embed import available_models

    return {"all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2"} <= set(available_models())
