"""`make demo`: rank a small zoo of feature extractors on a real dataset with EMMS, next to ground truth.

What it shows, honestly: scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 10 classes) and
a zoo of nine feature extractors built on the spot — raw pixels, PCA at three widths, pooling, random
projections, random Fourier features, a randomly initialised MLP and noise-corrupted pixels (pre-trained
networks arrive with the benchmark issue). The F-labels are real: the class names, as prompts
("a photo of the handwritten digit {}"), embedded by the two pre-trained text models that install
offline (all-MiniLM-L6-v2 and paraphrase-MiniLM-L3-v2; K = 2). The ground truth is each extractor's
held-out accuracy of a logistic-regression probe. EMMS scores only the training half.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from scipy.stats import kendalltau, weightedtau
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.kernel_approximation import RBFSampler
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import emms_ext
from emms_ext.embed import classification_labels

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def build_zoo(X_train: np.ndarray, X_test: np.ndarray, seed: int = 0) -> dict:
    """name -> (train features, test features): extractors of deliberately different quality."""
    rng = np.random.default_rng(seed)
    zoo = {"pixels (64-d)": (X_train, X_test)}
    for k in (4, 12, 32):
        pca = PCA(k, random_state=seed).fit(X_train)
        zoo[f"PCA-{k}"] = (pca.transform(X_train), pca.transform(X_test))
    pool = lambda X: X.reshape(-1, 4, 2, 4, 2).mean((2, 4)).reshape(len(X), 16)  # noqa: E731  2x2 pooling
    zoo["2x2 pooling (16-d)"] = (pool(X_train), pool(X_test))
    P = rng.standard_normal((64, 8))
    zoo["random projection-8"] = (X_train @ P, X_test @ P)
    rff = RBFSampler(gamma=0.001, n_components=256, random_state=seed).fit(X_train)
    zoo["random Fourier-256"] = (rff.transform(X_train), rff.transform(X_test))
    torch.manual_seed(seed)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32), torch.nn.ReLU())
    with torch.no_grad():
        f = lambda X: mlp(torch.from_numpy(X).float()).numpy()  # noqa: E731
        zoo["random-init MLP-32"] = (f(X_train), f(X_test))
    noise = lambda X: X + 6.0 * rng.standard_normal(X.shape)  # noqa: E731
    zoo["noisy pixels"] = (noise(X_train), noise(X_test))
    return zoo


def probe_accuracy(F_train, y_train, F_test, y_test) -> float:
    sc = StandardScaler().fit(F_train)
    clf = LogisticRegression(max_iter=3000, C=1.0).fit(sc.transform(F_train), y_train)
    return float(clf.score(sc.transform(F_test), y_test))


def main() -> None:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    zoo = build_zoo(X_train, X_test)
    start = time.perf_counter()
    labels = classification_labels(torch.from_numpy(y_train), DIGITS,
                                   templates=("a photo of the handwritten digit {}.",))
    print(f"F-labels: {len(DIGITS)} class prompts embedded by K={len(labels.table)} pre-trained text models "
          f"(widths {[t.shape[1] for t in labels.table]}) in {time.perf_counter() - start:.1f} s (cached after)")

    truth = {name: probe_accuracy(tr, y_train, te, y_test) for name, (tr, te) in zoo.items()}
    start = time.perf_counter()
    feats = {name: tr for name, (tr, _) in zoo.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emms_ext.EMMSDegeneracyWarning)
        results = {mode: emms_ext.emms_scores(feats, labels, mode) for mode in ("exact", "reference")}
    elapsed = time.perf_counter() - start

    exact = results["exact"]
    print(f"\nEMMS on scikit-learn digits: N={len(y_train)} training images, {len(zoo)} feature extractors\n")
    print(f"{'rank':>4}  {'model':22s} {'EMMS exact':>11s} {'EMMS ref':>10s} {'t (L6, L3)':>12s} "
          f"{'probe acc':>9s}")
    for i, name in enumerate(exact.order, 1):
        r = exact[name]
        t = ", ".join(f"{v:.2f}" for v in r.t.tolist())
        print(f"{i:>4}  {name:22s} {r.score:11.4f} {results['reference'][name].score:10.2f} {t:>12s} "
              f"{truth[name]:9.3f}")
    names = list(zoo)
    acc = np.array([truth[n] for n in names])
    print("\nagreement with the probe-accuracy ranking (higher is better; 1 = identical order):")
    for mode, res in results.items():
        s = np.array([res[n].score for n in names])
        print(f"  EMMS {mode:9s}  weighted Kendall tau {weightedtau(s, acc)[0]:+.3f}   "
              f"Kendall tau {kendalltau(s, acc)[0]:+.3f}")
    print(f"\nscored {len(zoo)} models x 2 modes in {elapsed:.2f} s")


if __name__ == "__main__":
    main()
