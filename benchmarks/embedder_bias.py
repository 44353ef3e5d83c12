"""Does the choice of F-label embedder decide a free-text ranking? EMMS on the text zoo's free-text tasks
with every embedder set: each installed text model alone (K = 1), the default pair (K = 2), the pair plus
all-mpnet-base-v2 (K = 3), and only the embedders outside the zoo's families.

    python benchmarks/embedder_bias.py [--tasks wordnet-words wordnet-synonyms] [--draws 20] [--readme]

For every set: tau_w against each ground truth (mean and a 95% interval over `--draws` random halves of the
training samples, seeded), the mixture weights t found (mean over candidates, full data), and the mean rank
(1 = first of 10) of each embedder's own family among the candidates. The candidates are layers of
all-MiniLM-L6-v2 ("minilm6"), of paraphrase-MiniLM-L3-v2 ("minilm3") and a random control; all-mpnet-base-v2
is of no candidate's family. ``--readme`` rewrites the generated section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import emms_ext  # noqa: E402
from benchmarks.zoo import tasks as zoo_tasks  # noqa: E402
from benchmarks.zoo import text  # noqa: E402
from emms_ext import FreeTextLabels  # noqa: E402
from emms_ext.selection.evaluate import weighted_tau  # noqa: E402

FAMILY_OF = {"all-MiniLM-L6-v2": "minilm6", "paraphrase-MiniLM-L3-v2": "minilm3", "all-mpnet-base-v2": None}
SHORT = {"all-MiniLM-L6-v2": "L6", "paraphrase-MiniLM-L3-v2": "L3", "all-mpnet-base-v2": "MPNet"}
SETS = {
    "L6 alone": ("all-MiniLM-L6-v2",),
    "L3 alone": ("paraphrase-MiniLM-L3-v2",),
    "default pair (L6 + L3)": ("all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2"),
    "L6 + L3 + MPNet": ("all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2", "all-mpnet-base-v2"),
    "outside the zoo (MPNet alone)": ("all-mpnet-base-v2",),
}
MARK = ("<!-- embedder_bias:start -->", "<!-- embedder_bias:end -->")
README = ROOT / "benchmarks" / "README.md"


def training_split(task: str, truth: dict) -> tuple[dict, list, torch.Tensor, int]:
    """(candidate -> [S, D] features from the benchmark's cache, texts of the label rows, the sample of each
    row [M], S) of a free-text task's training split."""
    xtr, ytr, _, _, classes = text.load_task(task, truth["n_train"], truth["n_test"])
    if classes is not None:
        raise ValueError(f"{task} is not a free-text task")
    feats = zoo_tasks.cached_features(task, truth, len(xtr), lambda c: text.extract(text.build(c), xtr).numpy())
    groups = [y if isinstance(y, list) else [y] for y in ytr]
    owner = torch.tensor([i for i, g in enumerate(groups) for _ in g], dtype=torch.int64)
    return feats, [t for g in groups for t in g], owner, len(groups)


def tau(scores: dict, truth: dict) -> float:
    """tau_w over the candidates both name."""
    names = [c for c in truth if c in scores]
    return weighted_tau([scores[c] for c in names], [truth[c] for c in names])


def family_ranks(scores: dict) -> dict:
    """family -> mean rank (1 = best) of its candidates among all candidates."""
    order = sorted(scores, key=lambda c: -scores[c])
    ranks = {c: i + 1 for i, c in enumerate(order)}
    return {f: float(np.mean([r for c, r in ranks.items() if c.startswith(f + "-")])) for f in text.DEPTHS}


def measure(task: str, truth: dict, draws: int, seed: int = 0) -> dict:
    from emms_ext.embed import available_models, embed_texts

    feats, texts, owner, S = training_split(task, truth)
    installed = set(available_models())
    blocks = {m: embed_texts(texts, [m])[0] for m in FAMILY_OF if m in installed}
    truths = {gt: {c: row[gt] for c, row in truth["candidates"].items() if gt in row} for gt in ("finetune", "probe")}
    g = torch.Generator().manual_seed(seed)
    halves = [torch.sort(torch.randperm(S, generator=g)[: S // 2]).values for _ in range(draws)]
    out = {}
    for name, members in SETS.items():
        if not set(members) <= installed:
            continue
        fl = FreeTextLabels([blocks[m] for m in members], owner, S)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            full = emms_ext.emms_scores(feats, fl)
            per_draw = [
                emms_ext.emms_scores({c: x[h] for c, x in feats.items()}, zoo_tasks.subset_labels(fl, h)).scores
                for h in halves
            ]
        scores = full.scores
        row = {
            "t": [float(v) for v in torch.stack([r.t for r in full.values()]).mean(0)],
            "family_rank": family_ranks(scores),
        }
        for gt, values in truths.items():
            if not values:
                continue
            taus = np.array([tau(s, values) for s in per_draw])
            row[gt] = {
                "full": tau(scores, values),
                "mean": float(taus.mean()),
                "lo": float(np.percentile(taus, 2.5)),
                "hi": float(np.percentile(taus, 97.5)),
            }
        out[name] = row
    return out


def report(results: dict, truth_notes: dict) -> str:
    lines = []
    for task, rows in results.items():
        gts = [gt for gt in ("finetune", "probe") if any(gt in r for r in rows.values())]
        lines += [
            f"#### {task} ({truth_notes[task]})\n",
            "| F-label embedders | "
            + " | ".join(f"tau_w vs {gt} (95% interval)" for gt in gts)
            + " | t (mean over candidates) | mean rank: minilm6 / minilm3 |",
            "|---|" + "---:|" * len(gts) + "---|---:|",
        ]
        for name, r in rows.items():
            members = SETS[name]
            t = " / ".join(f"{SHORT[m]} {v:.2f}" for m, v in zip(members, r["t"]))
            cells = [f"{r[gt]['full']:+.2f} ({r[gt]['lo']:+.2f} .. {r[gt]['hi']:+.2f})" for gt in gts]
            fam = f"{r['family_rank']['minilm6']:.1f} / {r['family_rank']['minilm3']:.1f}"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {t} | {fam} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["wordnet-words", "wordnet-synonyms"])
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--truth-dir", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--readme", action="store_true")
    args = ap.parse_args(argv)
    results, notes = {}, {}
    for task in args.tasks:
        path = zoo_tasks.truth_path(task, args.truth_dir)
        if not path.is_file():
            print(f"{task}: no ground truth ({zoo_tasks.truth_command(task, path)})", file=sys.stderr)
            continue
        truth = json.loads(path.read_text())
        results[task] = measure(task, truth, args.draws)
        notes[task] = (
            f"truth v{truth['version']}, targets embedded by {', '.join(truth.get('embedders', []))}; "
            f"{truth['n_train']} train samples, {args.draws} random halves"
        )
    text_out = report(results, notes)
    print(text_out)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.readme and results:
        readme = README.read_text()
        start, end = readme.index(MARK[0]), readme.index(MARK[1])
        README.write_text(readme[: start + len(MARK[0])] + "\n" + text_out + readme[end:])
    return results


if __name__ == "__main__":
    main()
