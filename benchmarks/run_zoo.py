"""The project's "paper table": every transferability method on every benchmark task of the real zoo,
against both ground truths (fine-tuning and linear probe), with wall-clock.

    python benchmarks/run_zoo.py [--tasks digits fashion] [--truth-dir benchmarks/zoo] [--plot docs/zoo_tau.png]

Needs the ground-truth files made by ``python -m benchmarks.zoo.ground_truth`` (a task whose truth file is
missing is skipped with the command to make it). Features of the training split are extracted once per
candidate and cached under benchmarks/out/features/; F-labels come from the offline text models.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.zoo import ground_truth, vision  # noqa: E402

import emms_ext  # noqa: E402
from emms_ext.evaluate import evaluate, format_table  # noqa: E402
from emms_ext.metrics import Target, get_metric  # noqa: E402

EMMS_VARIANTS = {"EMMS (exact)": dict(mode="exact"), "EMMS (alternating)": dict(mode="alternating"),
                 "EMMS (reference)": dict(mode="reference"), "EMMS (ridge=gcv)": dict(mode="exact", ridge="gcv")}
BASELINES = {"LogME": "logme", "LogME (F-labels)": "logme_flabels", "EMMS(One)": "emms_one", "H-score": "hscore",
             "H-score (regularized)": "hscore_regularized", "N-LEEP": "nleep", "TransRate": "transrate",
             "SFDA": "sfda", "GBC": "gbc", "PARC": "parc", "kNN": "knn"}
TEMPLATES = {"digits": ("a photo of the handwritten digit {}.",), "fashion": ("a photo of a {}.",)}


def features(task: str, truth: dict, xtr: torch.Tensor) -> dict:
    """Training-split features of every candidate in the truth file, cached as .npy."""
    cache = ROOT / "benchmarks" / "out" / "features" / f"{task}-v{truth['version']}-n{len(xtr)}"
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in truth["candidates"]:
        path = cache / f"{name}.npy"
        if not path.exists():
            np.save(path, vision.extract(vision.build(name), xtr).numpy())
        out[name] = torch.from_numpy(np.load(path))
    return out


def score_task(task: str, truth: dict) -> tuple[dict, dict]:
    """(method -> {model -> score}, method -> seconds) on one task."""
    from emms_ext.embed import classification_labels

    xtr, ytr, _, _, names = ground_truth.load_target(task, truth["n_train"], truth["n_test"])
    feats = features(task, truth, xtr)
    labels = classification_labels(ytr, names, templates=TEMPLATES[task])
    scores, seconds = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method, kw in EMMS_VARIANTS.items():
            start = time.perf_counter()
            res = emms_ext.emms_scores(feats, labels, **kw)
            seconds[method] = time.perf_counter() - start
            scores[method] = res.scores
        target = Target(labels=ytr, label_embeddings=labels, task="classification")
        for method, metric in BASELINES.items():
            fn = get_metric(metric).fn
            start = time.perf_counter()
            scores[method] = {}
            for name, x in feats.items():
                try:
                    scores[method][name] = float(fn(x.double(), target))
                except Exception as exc:  # noqa: BLE001 - one failing (method, model) must not stop the table
                    print(f"  {method} failed on {name}: {exc}", file=sys.stderr)
            seconds[method] = time.perf_counter() - start
    return scores, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["digits", "fashion"])
    ap.add_argument("--truth-dir", default=str(ROOT / "benchmarks" / "zoo"))
    ap.add_argument("--json", default=None, help="write all numbers here")
    args = ap.parse_args()
    tables = {"finetune": {}, "probe": {}}
    detail, timing = {}, {}
    for task in args.tasks:
        path = Path(args.truth_dir) / f"truth_{task}.json"
        if not path.exists():
            print(f"skipping {task}: no {path}; make it with: python -m benchmarks.zoo.ground_truth "
                  f"--target {task} --out {path}")
            continue
        truth = json.loads(path.read_text())
        scores, seconds = score_task(task, truth)
        for gt in tables:
            gt_values = {m: row[gt] for m, row in truth["candidates"].items() if gt in row}
            for method, s in scores.items():
                res = evaluate(s, gt_values)
                detail.setdefault(task, {}).setdefault(gt, {})[method] = res
                tables[gt].setdefault(method, {})[task] = res["weighted_tau"]
        timing[task] = seconds
    for gt, table in tables.items():
        if not table:
            continue
        print(f"\n## Weighted Kendall tau against the {gt} ground truth\n")
        print(format_table(table))
    for task, seconds in timing.items():
        print(f"\n## Wall-clock on {task} (all candidates, seconds)\n")
        print("| method | seconds |\n|---|---:|")
        for method, s in seconds.items():
            print(f"| {method} | {s:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"detail": detail, "timing": timing}, indent=1))


if __name__ == "__main__":
    main()
