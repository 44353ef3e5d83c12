"""What error bars cost: a score with ``folds=F`` (jackknife) against the plain score, per metric.

A script, not a test: it first checks that the fold scores are the scores of the leave-one-fold-out subsets
(against a direct re-scoring of two folds), then times, then prints a markdown table of ratios measured
within this one run (best of `--repeat` after one warm-up; the table in benchmarks/README was measured with
one run and no warm-up).

    python benchmarks/bench_uncertainty.py [--quick] [--folds 10] [--repeat 2] [--modes exact,gcv] [--no-metrics]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import emms_ext  # noqa: E402
from benchmarks.bench_emms import timed  # noqa: E402
from emms_ext.core.folds import assign_folds, fold_subsets  # noqa: E402
from emms_ext.core.jackknife import DOWNDATE_MODES, FOLD_STAT_MODES  # noqa: E402
from emms_ext.selection import get_metric  # noqa: E402
from emms_ext.selection.targets import Target  # noqa: E402


def problem(N: int, D: int, L: int, K: int, C: int, models: int = 1, seed: int = 0):
    """float32 features of ``models`` models with a class structure, and class-table F-labels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (N,), generator=g)
    centers = torch.randn(C, D, generator=g)
    zoo = {f"m{i}": (torch.randn(N, D, generator=g) + 0.3 * (i + 1) * centers[y]).float() for i in range(models)}
    return zoo, y, emms_ext.ClassLabels(torch.randn(C, L, K, generator=g, dtype=torch.float64), y)


def check(zoo, labels, y, mode: str, folds: int) -> None:
    """The fold scores are the leave-one-fold-out subsets' scores (two folds checked directly): to 1e-9 with
    float64 features, to 1e-5 with the float32 ones timed below (a float32 Gram's rounding). ``gcv`` / ``loo``
    hold the full data's ridge choice: a subset that picks another ridge can only score higher on its own."""
    name, x32 = next(iter(zoo.items()))
    subsets = fold_subsets(assign_folds(len(y), folds, classes=y))
    for x, tol in ((x32.double(), 1e-9), (x32, 1e-5)):
        res = emms_ext.emms_scores({name: x}, labels, mode, folds=folds)[name]
        for f in (0, folds - 1):
            keep = subsets[f]
            direct = emms_ext.emms_score(x[keep], emms_ext.ClassLabels(labels.table, y[keep]), mode)
            same = mode not in ("gcv", "loo") or abs(direct.ridge / res.ridge * len(y) / len(keep) - 1) < 0.1
            err = res.fold_scores[f] - direct.score
            assert (abs(err) if same else err) <= tol * max(1.0, abs(direct.score)), (mode, f, x.dtype)


def path(mode: str) -> str:
    """How ``emms_scores(folds=...)`` gets a mode's fold scores."""
    return "downdates" if mode in DOWNDATE_MODES else "refits" if mode in FOLD_STAT_MODES else "re-scoring"


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes (a smoke run)")
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument(
        "--modes", default="exact,alternating,reference,gcv,loo,evidence", help="EMMS modes of the 1-model rows"
    )
    ap.add_argument("--no-metrics", action="store_true", help="skip the other metrics' rows")
    args = ap.parse_args(argv)
    F, rows = args.folds, []
    print(f"folds = {F}; torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| score | shape | plain (s) | with folds (s) | ratio |")
    print("|---|---|---:|---:|---:|", flush=True)

    def row(name, shape, plain, jack):  # printed as measured: a long run keeps what it has
        rows.append((name, shape, plain, jack))
        print(f"| {name} | {shape} | {plain:.3f} | {jack:.3f} | {jack / plain:.1f}x |", flush=True)

    N, D, L, K, C = (600, 128, 32, 3, 10) if args.quick else (5000, 2048, 1024, 3, 100)
    warnings.simplefilter("ignore")
    zoo, y, labels = problem(N, D, L, K, C)
    for mode in args.modes.split(","):
        check(zoo, labels, y, mode, F)
        plain = timed(lambda m=mode: emms_ext.emms_scores(zoo, labels, m), args.repeat)
        jack = timed(lambda m=mode: emms_ext.emms_scores(zoo, labels, m, folds=F), args.repeat)
        row(f"EMMS ({mode}, {path(mode)}), 1 model", f"N={N}, D={D}, L={L}, K={K}, C={C}", plain, jack)
    # A stream cannot be re-read: its folds' statistics come from the same single pass (refits per fold).
    x0 = next(iter(zoo.values()))

    def chunks():
        return (x0[i : i + 1000] for i in range(0, N, 1000))

    for mode in ("exact", "gcv"):
        # checked first: the stream's fold scores are the in-memory features' (float32 rounding apart)
        streamed = emms_ext.emms_score(chunks(), labels, mode, folds=F).fold_scores
        assert torch.allclose(streamed, emms_ext.emms_score(x0, labels, mode, folds=F).fold_scores, rtol=1e-4)
        plain = timed(lambda m=mode: emms_ext.emms_score(chunks(), labels, m), args.repeat)
        jack = timed(lambda m=mode: emms_ext.emms_score(chunks(), labels, m, folds=F), args.repeat)
        row(f"EMMS ({mode}, stream refits), 1 model", f"N={N}, D={D}, L={L}, K={K}, C={C}", plain, jack)
    Nz, Dz, Lz, M = (400, 64, 16, 4) if args.quick else (2000, 768, 384, 16)
    zoo16, y16, lab16 = problem(Nz, Dz, Lz, K, C, models=M, seed=1)
    for mode in ("exact", "gcv"):
        plain = timed(lambda m=mode: emms_ext.emms_scores(zoo16, lab16, m), args.repeat)
        jack = timed(lambda m=mode: emms_ext.emms_scores(zoo16, lab16, m, folds=F), args.repeat)
        row(f"EMMS ({mode}, {path(mode)}), zoo of {M}", f"N={Nz}, D={Dz}, L={Lz}, K={K}, C={C}", plain, jack)
    # Other metrics: the generic path through rank(uncertainty=True) (F re-scorings per model).
    tgt = Target(labels=y16, label_embeddings=lab16)
    x = zoo16["m0"].double()
    for metric in () if args.no_metrics else ("logme", "logme_flabels", "hscore", "knn"):
        fn = get_metric(metric).fn
        plain = timed(lambda fn=fn: fn(x, tgt), args.repeat)
        jack = timed(lambda m=metric: emms_ext.rank({"m0": x}, tgt, m, uncertainty=True, folds=F), args.repeat)
        row(f"{metric} (re-scoring), 1 model", f"N={Nz}, D={Dz}", plain, jack)
    return rows


if __name__ == "__main__":
    main()
