"""Real datasets that install offline from Debian packages (docs/design.md §8).

* Fashion-MNIST (``apt-get install dataset-fashion-mnist``): 70,000 28x28 grey images, 10 named classes,
  idx files under /usr/share/datasets/fashion-mnist/.
* WordNet (``apt-get install wordnet-base``): noun (and verb) synsets with their glosses; each synset's
  lexicographer file ("noun.animal", "noun.artifact", ...) is a real text-classification label.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

FASHION_ROOT = Path(os.environ.get("EMMS_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
WORDNET_ROOT = Path(os.environ.get("EMMS_WORDNET", "/usr/share/wordnet"))
FASHION_CLASSES = [
    "T-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]
# WordNet's lexicographer files, by number (lexnames(5WN)); nouns are 03..28, verbs 29..44.
LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]


def _missing(what: str, path: Path, package: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} not found at {path}: install it with `apt-get install {package}` "
        f"(or point the environment variable to a copy)"
    )


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (the MNIST format; gzip or plain) as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError(f"{path} is not an unsigned-byte idx file (magic {data[:4]!r})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist(split: str = "train", root: Path = FASHION_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 28, 28], labels int64 [n]) of the "train" (60,000) or "test" (10,000) split."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test' (got {split!r})")
    prefix = "train" if split == "train" else "t10k"
    paths = [root / f"{prefix}-{kind}-idx{n}-ubyte.gz" for kind, n in (("images", 3), ("labels", 1))]
    for p in paths:
        if not p.is_file() and not p.with_suffix("").is_file():
            raise _missing("Fashion-MNIST", root, "dataset-fashion-mnist")
    images, labels = (_read_idx(p if p.is_file() else p.with_suffix("")) for p in paths)
    return images, labels.astype(np.int64)


def _synsets(pos: str, root: Path):
    """(fields before "|", the text after it) of every synset line of WordNet's data.<pos>, in file order."""
    if pos not in ("noun", "verb"):
        raise ValueError(f"pos must be 'noun' or 'verb' (got {pos!r})")
    path = root / f"data.{pos}"
    if not path.is_file():
        raise _missing("WordNet", path, "wordnet-base")
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  "):  # the license header
                continue
            head, _, gloss = line.partition(" | ")
            yield head.split(), gloss


def _lemmas(fields: list[str]) -> list[str]:
    n = int(fields[3], 16)  # w_cnt is two hex digits, followed by n (word, lex_id) pairs
    return [fields[4 + 2 * j].replace("_", " ") for j in range(n)]


def wordnet_glosses(pos: str = "noun", root: Path = WORDNET_ROOT) -> list[tuple[str, str, str]]:
    """Every synset of `pos` ("noun" | "verb") as (gloss, lexicographer file name, head word), in file order.

    The gloss is the text after "|" up to the first "; " (definitions, without the quoted examples); the head
    word is the synset's first lemma with underscores as spaces.
    """
    return [
        (gloss.strip().split("; ")[0].strip().strip('"'), LEXNAMES[int(fields[1])], fields[4].replace("_", " "))
        for fields, gloss in _synsets(pos, root)
    ]


def wordnet_lemmas(pos: str = "noun", root: Path = WORDNET_ROOT) -> list[list[str]]:
    """Every synset's lemmas (synonyms, underscores as spaces), in the order of ``wordnet_glosses``."""
    return [_lemmas(fields) for fields, _ in _synsets(pos, root)]


def wordnet_depths(pos: str = "noun", root: Path = WORDNET_ROOT) -> list[int]:
    """Every synset's depth in the hypernym tree (hypernym and instance-hypernym pointers; the shortest path
    to a synset with none, e.g. "entity" = 0), in the order of ``wordnet_glosses``."""
    order, parents = [], {}
    for fields, _ in _synsets(pos, root):
        at = 4 + 2 * int(fields[3], 16)
        pointers = [fields[at + 1 + 4 * j : at + 5 + 4 * j] for j in range(int(fields[at]))]
        parents[fields[0]] = [p[1] for p in pointers if p[0] in ("@", "@i") and p[2] == pos[0]]
        order.append(fields[0])
    depth: dict[str, int] = {}
    for start in order:  # iterative: the hypernym graph is a DAG, deep enough to exhaust recursion
        stack = [start]
        while stack:
            node = stack[-1]
            todo = [p for p in parents[node] if p not in depth]
            if todo:
                stack.extend(todo)
                continue
            depth[node] = 1 + min((depth[p] for p in parents[node]), default=-1)
            stack.pop()
    return [depth[o] for o in order]


def balanced_subset(
    labels: np.ndarray, per_class: int, seed: int = 0, exclude: np.ndarray | None = None, classes: list | None = None
) -> np.ndarray:
    """Indices of `per_class` samples of every class (sorted), drawn with a fixed seed; `exclude` indices
    are never drawn (to keep a held-out split disjoint)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    taken = np.zeros(len(labels), dtype=bool)
    if exclude is not None:
        taken[np.asarray(exclude)] = True
    picks = []
    for c in classes if classes is not None else np.unique(labels):
        pool = np.flatnonzero((labels == c) & ~taken)
        if len(pool) < per_class:
            raise ValueError(f"class {c!r} has {len(pool)} samples, fewer than per_class={per_class}")
        picks.append(rng.choice(pool, per_class, replace=False))
    return np.sort(np.concatenate(picks))
