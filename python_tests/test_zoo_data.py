"""The benchmark zoo's offline datasets (Debian packages): skipped with the install hint when absent."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.zoo import data  # noqa: E402

fashion = pytest.mark.skipif(
    not (data.FASHION_ROOT / "t10k-labels-idx1-ubyte.gz").exists(), reason="apt-get install dataset-fashion-mnist"
)
wordnet = pytest.mark.skipif(not (data.WORDNET_ROOT / "data.noun").exists(), reason="apt-get install wordnet-base")


@fashion
def test_fashion_mnist_reads_the_real_idx_files():
    images, labels = data.fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8 and labels.shape == (10000,)
    assert np.bincount(labels).tolist() == [1000] * 10  # the test split is balanced
    assert 50 < images.mean() < 100  # real clothing images, not zeros
    train_images, train_labels = data.fashion_mnist("train")
    assert train_images.shape == (60000, 28, 28) and np.bincount(train_labels).tolist() == [6000] * 10
    assert len(data.FASHION_CLASSES) == 10


@wordnet
def test_wordnet_noun_glosses_and_lexicographer_classes():
    rows = data.wordnet_glosses("noun")
    assert len(rows) > 80000
    gloss, lexname, word = rows[0]
    assert word == "entity" and lexname == "noun.Tops" and gloss.startswith("that which is perceived")
    names = {r[1] for r in rows}
    assert {"noun.animal", "noun.artifact", "noun.plant"} <= names and all(n.startswith("noun.") for n in names)
    dog = [r for r in rows if r[2] == "dog" and r[1] == "noun.animal"]
    assert dog and "domesticated" in dog[0][0]


def test_balanced_subset_is_balanced_disjoint_and_reproducible():
    labels = np.repeat(np.arange(4), 50)
    a = data.balanced_subset(labels, 10, seed=1)
    b = data.balanced_subset(labels, 10, seed=1, exclude=a)
    assert np.bincount(labels[a]).tolist() == [10] * 4 and not set(a) & set(b)
    assert np.array_equal(a, data.balanced_subset(labels, 10, seed=1))
    with pytest.raises(ValueError, match="fewer than per_class"):
        data.balanced_subset(labels, 60)
