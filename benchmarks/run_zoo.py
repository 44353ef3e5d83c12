"""The project's "paper table": every transferability method on every benchmark task of the real zoo,
against both ground truths (fine-tuning and linear probe), with wall-clock.

    python benchmarks/run_zoo.py [--tasks digits fashion wordnet ...] [--readme] [--json out.json]
        [--folds 5] [--threads 1] [--check-against previous.json]
    python benchmarks/run_zoo.py --compare a.json b.json   # which table cells differ at the third decimal
    python benchmarks/run_zoo.py --from-json a.json b.json --readme   # the report of runs split over processes
    python benchmarks/run_zoo.py --add-coverage a.json --coverage GBC SFDA --json b.json   # more top sets

Needs the ground-truth files made by ``benchmarks.zoo.ground_truth`` / ``benchmarks.zoo.text_truth`` (a task
whose truth file is missing is skipped with the command that makes it). Features of the training split are
extracted once per candidate and cached under benchmarks/out/features/; F-labels come from the offline text
models (K = 2). ``--readme`` rewrites the generated section of benchmarks/README.md and the plots in docs/.

Coverage: for the ``--coverage`` methods (default ``COVERAGE``) every task is also re-scored on its ``--folds``
leave-one-fold-out
subsets (one fold assignment per task, stratified by class, as ``rank(..., uncertainty=True)`` makes it);
the jackknife gives each method's 95% top set (``Ranking.top_set``), and the table says how often it holds
the truly best candidate (highest fine-tuned score; any of tied ones) and how large it is.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import emms_ext  # noqa: E402
from benchmarks.zoo import ground_truth, text_truth  # noqa: E402
from benchmarks.zoo import tasks as zoo_tasks  # noqa: E402
from emms_ext.baselines.logme import logme  # noqa: E402
from emms_ext.core.folds import fold_subsets  # noqa: E402
from emms_ext.core.labels import prepare_labels  # noqa: E402
from emms_ext.ops import reference  # noqa: E402
from emms_ext.selection import Ranking, get_metric  # noqa: E402
from emms_ext.selection.consensus import DEFAULT_MEMBERS, aggregate  # noqa: E402
from emms_ext.selection.evaluate import evaluate, format_table  # noqa: E402
from emms_ext.selection.uncertainty import fold_assignment  # noqa: E402

# The API's default mode and the out-of-sample mode benchmarks/README.md recommends: verdicts and scatter plots.
FOCUS = ("EMMS (exact)", "EMMS (gcv)")
EMMS_VARIANTS = {
    "EMMS (exact)": dict(mode="exact"),
    "EMMS (alternating)": dict(mode="alternating"),
    "EMMS (reference)": dict(mode="reference"),
    "EMMS (ridge=gcv)": dict(mode="exact", ridge="gcv"),
    "EMMS (gcv)": dict(mode="gcv"),
    "EMMS (loo)": dict(mode="loo"),
    "EMMS (evidence)": dict(mode="evidence"),
}
# metric="consensus": the rank aggregation of these rows (the members rank() uses by default, where they apply)
CONSENSUS = {"emms_gcv": "EMMS (gcv)", "logme_flabels": "LogME (F-labels)", "logme": "LogME"}
BASELINES = {
    "LogME": "logme",
    "LogME (F-labels)": "logme_flabels",
    "EMMS(One)": "emms_one",
    "H-score": "hscore",
    "H-score (regularized)": "hscore_regularized",
    "N-LEEP": "nleep",
    "TransRate": "transrate",
    "SFDA": "sfda",
    "GBC": "gbc",
    "PARC": "parc",
    "kNN": "knn",
}
# The rows that are scored on their own (not ablations or by-products of other rows): --coverage's choices.
SCORED_ALONE = (*EMMS_VARIANTS, *BASELINES, "Consensus")
MARK = ("<!-- run_zoo:start -->", "<!-- run_zoo:end -->")
README, DOCS = ROOT / "benchmarks" / "README.md", ROOT / "docs"  # where --readme writes


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


ENSEMBLE = ("{}.", "a {}.", "an example of a {}.", "a picture of a {}.")  # generic prompts added to the task's


def ablations(task, gcv: dict) -> dict:
    """Variants of the out-of-sample mode (design choices measured, not assumed): one F-label embedder
    instead of the mixture, an R^2-style normalization by the mixed target's variance, LogME's evidence of
    the mixed target Z t (t from mode="gcv"), and for class labels a prompt ensemble and L2-normalized
    class embeddings."""
    out = {}
    if isinstance(task.labels, emms_ext.ClassLabels):
        from emms_ext.embed import classification_labels

        ens = classification_labels(
            task.target.labels, task.classes, templates=zoo_tasks.TEMPLATES[task.name] + ENSEMBLE
        )
        out["EMMS (gcv, prompt ensemble)"] = _timed(
            lambda: emms_ext.emms_scores(task.features, emms_ext.ClassLabels(ens.table, ens.indices), "gcv").scores
        )
        unit = emms_ext.ClassLabels(
            [torch.nn.functional.normalize(torch.as_tensor(t).double(), dim=1) for t in task.labels.table],
            task.labels.indices,
        )
        out["EMMS (gcv, L2-normalized F-labels)"] = _timed(
            lambda: emms_ext.emms_scores(task.features, unit, "gcv").scores
        )
    basis = prepare_labels(task.labels)
    for k in range(basis.K if basis.K > 1 else 0):  # K = 1 (regression targets): nothing to ablate
        out[f"EMMS (gcv, embedder {k} only)"] = _timed(
            lambda k=k: emms_ext.emms_scores(task.features, zoo_tasks.one_embedder(task.labels, k), "gcv").scores
        )
    A, N = basis.A, basis.N  # N: label rows (a sample with several texts counts once per text)
    # A by-product of mode="gcv" (no time of its own: None).
    out["EMMS (gcv, R^2)"] = ({m: 1 + r.score * r.label_dim * N / float(r.t @ A @ r.t) for m, r in gcv.items()}, None)
    Z = reference.label_stack(zoo_tasks.per_sample(task.labels))  # standardized [N, L, K]

    def evidence():
        return {
            m: logme(zoo_tasks.rows(task.labels, task.features[m]).double(), Z @ r.t, regression=True)
            for m, r in gcv.items()
        }

    out["EMMS (gcv t) + LogME evidence"] = _timed(evidence)
    return out


def score_task(task, methods=None) -> tuple[dict, dict]:
    """(method -> {candidate -> score}, method -> seconds) on one task: every row, or only the EMMS modes,
    baselines and Consensus named in ``methods`` (the ablations and by-products need every row)."""
    scores, seconds = {}, {}
    if methods is not None and "Consensus" in methods:  # its members' rows are needed
        methods = {*methods, *(row for m, row in CONSENSUS.items() if m in DEFAULT_MEMBERS)}

    def wanted(method) -> bool:
        return methods is None or method in methods

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = {}
        for method, kw in EMMS_VARIANTS.items():
            if not wanted(method):
                continue
            results[method], seconds[method] = _timed(
                lambda kw=kw: emms_ext.emms_scores(task.features, task.labels, **kw)
            )
            scores[method] = results[method].scores
        if methods is None:
            # The uniform label mixture t = 1/K instead of the optimized one: ridge="gcv" reports its GCV error.
            scores["EMMS (gcv, uniform t)"] = {m: -r.gcv for m, r in results["EMMS (ridge=gcv)"].items()}
            seconds["EMMS (gcv, uniform t)"] = None  # a by-product of ridge="gcv"
            for method, (s, sec) in ablations(task, results["EMMS (gcv)"]).items():
                scores[method], seconds[method] = s, sec
        for method, name in BASELINES.items():
            metric = get_metric(name)
            if not wanted(method) or (
                any(getattr(task.target, need) is None for need in metric.needs)
                or (name == "logme" and task.target.labels is None and task.target.targets is None)
            ):
                continue  # not asked for, or the method does not apply to this kind of task (class-based on free text)
            start = time.perf_counter()
            scores[method] = {}
            for cand, x in task.features.items():
                try:
                    scores[method][cand] = float(metric.fn(x.double(), task.target))
                except Exception as exc:  # one failing (method, model) must not stop the table
                    print(f"  {method} failed on {cand}: {exc}", file=sys.stderr)
            seconds[method] = time.perf_counter() - start
        if wanted("Consensus"):
            members = {m: scores[row] for m, row in CONSENSUS.items() if m in DEFAULT_MEMBERS and row in scores}
            scores["Consensus"], seconds["Consensus"] = aggregate(members), None
    return scores, seconds


# The rows whose 95% top sets are checked against the truth: each costs --folds extra scorings per task.
COVERAGE = ("EMMS (exact)", "EMMS (gcv)", "EMMS (evidence)", "LogME", "LogME (F-labels)", "Consensus")


def coverage(task, scores: dict, methods, folds: int, seed: int = 0) -> dict:
    """method -> {"top_set": the 95% top set, "size", "zoo": candidates ranked, "covers": whether the top set
    holds a truly best candidate (highest fine-tuned score, any of tied ones)}: ``methods`` re-scored on the
    ``folds`` leave-one-fold-out subsets of one fold assignment (``rank(..., uncertainty=True)``'s, the same
    for every method), the delete-a-group jackknife through ``Ranking``."""
    n = len(next(iter(task.features.values())))
    methods = [m for m in methods if m in scores]
    per_fold = [
        score_task(zoo_tasks.subset(task, keep), set(methods))[0]
        for keep in fold_subsets(fold_assignment(task.target, n, folds, seed))
    ]
    truth = {c: v for c, v in task.truth["finetune"].items() if c in task.features}
    top = max(truth.values())
    best = {c for c, v in truth.items() if v == top}
    out = {}
    for m in methods:
        have = [c for c in scores[m] if all(c in f.get(m, {}) for f in per_fold)]  # scored on every subset
        r = Ranking(
            scores={c: scores[m][c] for c in have}, metric=m, fold_scores={c: [f[m][c] for f in per_fold] for c in have}
        )
        ts = r.top_set() if have else []
        out[m] = {"top_set": ts, "size": len(ts), "zoo": len(have), "covers": bool(best & set(ts))}
    return out


def coverage_methods(names: list[str]) -> list[str]:
    """The --coverage list: method names as the tables spell them, or 'all' (every method scored on its own:
    the EMMS variants, the baselines and Consensus; not the ablations and by-products of other rows)."""
    if names == ["all"]:
        return list(SCORED_ALONE)
    unknown = [n for n in names if n not in SCORED_ALONE]
    if unknown:
        raise SystemExit(f"--coverage: unknown method(s) {unknown}; choose from {list(SCORED_ALONE)} or 'all'")
    return names


def add_coverage(args, methods: list[str]) -> dict:
    """--add-coverage: the earlier run's JSON with top sets for ``methods`` on every task it scored against
    the fine-tuning truth (plain scores and fold count from that run, so the folds match its top sets)."""
    if not args.json:
        raise SystemExit("--add-coverage needs --json (where the completed run is written)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run = json.loads(Path(args.add_coverage).read_text())
    folds = run.get("folds") or args.folds
    cover = run.setdefault("coverage", {})
    for name in args.tasks:
        if name not in run["detail"] or "finetune" not in run["detail"][name]:
            continue
        task = zoo_tasks.load(name, json.loads(zoo_tasks.truth_path(name, args.truth_dir).read_text()))
        todo = [m for m in methods if m in run["scores"][name] and m not in cover.get(name, {})]
        if todo:
            start = time.perf_counter()
            cover.setdefault(name, {}).update(coverage(task, run["scores"][name], todo, folds))
            print(f"{name}: top sets of {len(todo)} methods from {folds} folds in {time.perf_counter() - start:.0f} s")
    run["folds"] = folds
    Path(args.json).write_text(json.dumps(run, indent=1))
    return run


def describe_truth(name: str, truth: dict) -> str:
    """One phrase: which protocol version and split made the task's truth file, flagged when it is not the
    version the generating script is at now (the file then needs re-running)."""
    current = (ground_truth if name in zoo_tasks.VISION else text_truth).VERSION
    stale = "" if truth["version"] == current else f" (STALE: the script is at v{current}; re-run it)"
    return f"{name} v{truth['version']}{stale}, {truth['n_train']} train / {truth['n_test']} test"


def verdicts(tables: dict) -> list[str]:
    """Plain sentences: per task, the focus EMMS modes against LogME, LogME (F-labels) and the best method."""
    lines = []
    table = tables.get("finetune", {})
    for task in sorted({t for row in table.values() for t in row}):
        col = {m: row[task] for m, row in table.items() if task in row}
        best = max(col, key=col.get)
        vs = ", ".join(f"{b} {col[b]:+.3f}" for b in ("LogME", "LogME (F-labels)") if b in col)
        ours = "; ".join(
            f"{m} {col[m]:+.3f}" + ("" if m == best else f" (loses to the best by {col[best] - col[m]:.3f})")
            for m in FOCUS
            if m in col
        )
        lines.append(f"- {task}: best {best} {col[best]:+.3f}; {ours}; {vs}")
    return lines


def coverage_table(tables: dict, cover: dict, folds: int) -> list[str]:
    """Markdown lines: per method its mean tau_w (fine-tuning truth), how many tasks' 95% top sets hold the
    truly best candidate, the mean top-set size, and per task "yes/no size/zoo"."""
    task_names = list(cover)
    order = [*COVERAGE, *(m for m in SCORED_ALONE if m not in COVERAGE)]
    methods = [m for m in order if any(m in cover[t] for t in task_names)]
    if not methods:
        return []
    out = [
        "### Does the 95% top set hold the truly best candidate? (fine-tuning ground truth)\n",
        "| method | mean tau_w | covers the best | mean top-set size | " + " | ".join(task_names) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(task_names),
    ]
    for m in methods:
        rows = [cover[t][m] for t in task_names if m in cover[t]]
        taus = [v for t, v in tables.get("finetune", {}).get(m, {}).items() if t in cover and m in cover[t]]
        cells = [
            f"{'yes' if cover[t][m]['covers'] else 'no'} {cover[t][m]['size']}/{cover[t][m]['zoo']}"
            if m in cover[t]
            else "-"
            for t in task_names
        ]
        out.append(
            f"| {m} | {sum(taus) / len(taus):.3f} | {sum(r['covers'] for r in rows)}/{len(rows)} | "
            f"{sum(r['size'] for r in rows) / len(rows):.1f} | " + " | ".join(cells) + " |"
        )
    out += [
        "",
        f"(Each method re-scored on the F = {folds} leave-one-fold-out subsets of one fold assignment per task "
        f"(stratified by class, seed 0: `rank(..., uncertainty=True, folds={folds})`'s); the top set is every "
        "candidate the paired jackknife cannot tell from the method's first at 95% (`Ranking.top_set()`); "
        "the truly best is the highest fine-tuned score (any of tied ones). Cells: yes/no, top-set size / "
        "candidates ranked. A top set holding every candidate always covers: read coverage with the size.)",
        "",
    ]
    return out


def report(tables: dict, detail: dict, timing: dict, provenance: list[str] = (), cover=None, folds: int = 0) -> str:
    """The markdown of the generated README section."""
    out = []
    for gt, title in (("finetune", "fine-tuning"), ("probe", "linear-probe")):
        if tables.get(gt):
            out += [
                f"### Weighted Kendall tau against the {title} ground truth\n",
                format_table(tables[gt]),
                "",
                "(-: the method does not apply — class-based methods on free-text labels; the mean is "
                "over the tasks where it applies.)",
                "",
            ]
    if cover:
        out += coverage_table(tables, cover, folds)
    for gt, title in (("finetune", "fine-tuning"), ("probe", "linear-probe")):
        rows = {m: [d[gt][m] for d in detail.values() if m in d.get(gt, {})] for m in tables.get(gt, {})}
        if not any(rows.values()):
            continue
        keys = ("weighted_tau", "kendall_tau", "pearson", "rel@1", "rel@3")
        out += [
            f"### Every measure against the {title} ground truth (mean over tasks)\n",
            "| method | tau_w | Kendall tau | Pearson | Rel@1 | Rel@3 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for m, rs in rows.items():
            out.append(f"| {m} | " + " | ".join(f"{sum(r[k] for r in rs) / len(rs):.3f}" for k in keys) + " |")
        out.append("")
    out += ["### Verdict per task (tau_w, fine-tuning ground truth)\n", *verdicts(tables), ""]
    out += [
        "### Wall-clock (seconds, all candidates of the task; features given)\n",
        "| method | " + " | ".join(timing) + " |",
        "|---|" + "---:|" * len(timing),
    ]

    def cell(sec) -> str:
        return "-" if sec is False else "by-product" if sec is None else f"{sec:.2f}"

    for m in dict.fromkeys(m for sec in timing.values() for m in sec):
        out.append(f"| {m} | " + " | ".join(cell(timing[t].get(m, False)) for t in timing) + " |")
    out += [
        "",
        (
            "(by-product: computed from another row's results at no cost of its own — uniform t from "
            '`ridge="gcv"`, R^2 from `gcv`, Consensus from the rows of its members.)'
        ),
    ]
    if provenance:
        out += ["", "Ground truth scored against: " + "; ".join(provenance) + "."]
    return "\n".join(out) + "\n"


def plot(tables: dict, scores: dict, truths: dict, path_tau: Path, path_scatter: Path) -> None:
    """tau_w per method and task (fine-tuning truth); the default mode's score against fine-tuned accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = tables["finetune"]
    methods, task_names = list(table), sorted({t for row in table.values() for t in row})
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(methods) * max(1, len(task_names)) / 2 + 1.5))
    h = 0.8 / max(1, len(task_names))
    for i, t in enumerate(task_names):
        ys = [j + i * h for j in range(len(methods))]
        ax.barh(ys, [table[m].get(t, float("nan")) for m in methods], height=h, label=t)
    ax.set_yticks([j + 0.4 - h / 2 for j in range(len(methods))], methods, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("weighted Kendall tau vs fine-tuned accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_tau, dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(
        len(FOCUS), len(task_names), figsize=(3.6 * len(task_names), 3.2 * len(FOCUS)), squeeze=False
    )
    for row, method in zip(axes, FOCUS):
        for ax, t in zip(row, task_names):
            s, gt = scores[t][method], truths[t]["finetune"]
            names = [c for c in s if c in gt]
            ax.scatter([s[c] for c in names], [gt[c] for c in names], s=14)
            ax.set_title(f"{t}: tau_w {table[method][t]:.2f}", fontsize=9)
            ax.set_xlabel(f"{method} score", fontsize=8)
            ax.set_ylabel("fine-tuned score", fontsize=8)
    fig.tight_layout()
    fig.savefig(path_scatter, dpi=120)
    plt.close(fig)


def differences(a: dict, b: dict) -> list[str]:
    """The cells of two runs' JSON (``--json``) that differ at the third decimal (every measure of every
    method, task and truth) or in their top sets, one line each; the largest absolute difference last."""
    out, largest = [], 0.0
    alone = sorted(set(a["detail"]) ^ set(b["detail"]))
    if alone:
        out.append(f"tasks in one run only (not compared): {', '.join(alone)}")
    for task in sorted(set(a["detail"]) & set(b["detail"])):
        for gt in sorted(set(a["detail"].get(task, {})) | set(b["detail"].get(task, {}))):
            ra, rb = a["detail"].get(task, {}).get(gt, {}), b["detail"].get(task, {}).get(gt, {})
            for m in dict.fromkeys([*ra, *rb]):
                if m not in ra or m not in rb:
                    out.append(f"{task} / {gt} / {m}: in one run only")
                    continue
                for k, va in ra[m].items():
                    vb = rb[m].get(k)
                    if vb is None or f"{va:.3f}" != f"{vb:.3f}":
                        out.append(f"{task} / {gt} / {m} / {k}: {va:.3f} vs {vb if vb is None else f'{vb:.3f}'}")
                    if vb is not None:
                        largest = max(largest, abs(va - vb))
    ca, cb = a.get("coverage", {}), b.get("coverage", {})
    if not (ca and cb):  # a run without --folds has no top sets
        out += ["top sets: not compared (a run without them)"] if ca or cb else []
        ca = cb = {}
    for task in sorted((set(ca) | set(cb)) - set(alone)):
        for m in dict.fromkeys([*ca.get(task, {}), *cb.get(task, {})]):
            xa, xb = ca.get(task, {}).get(m), cb.get(task, {}).get(m)
            if xa is None or xb is None or xa["top_set"] != xb["top_set"]:
                out.append(f"{task} / coverage / {m}: top set {xa and xa['top_set']} vs {xb and xb['top_set']}")
    return out + [f"largest absolute difference: {largest:.2e}"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=list(zoo_tasks.VISION + zoo_tasks.TEXT))
    ap.add_argument("--truth-dir", default=None, help="where truth_<task>.json live (default benchmarks/zoo)")
    ap.add_argument("--json", default=None, help="write all numbers here")
    ap.add_argument(
        "--readme",
        action="store_true",
        help="rewrite the generated section of benchmarks/README.md and docs/zoo_tau.png, docs/zoo_scatter.png",
    )
    ap.add_argument(
        "--folds", type=int, default=5, help="leave-one-fold-out re-scorings for the coverage table (0: none)"
    )
    ap.add_argument(
        "--coverage",
        nargs="+",
        default=list(COVERAGE),
        metavar="METHOD",
        help="the methods whose top sets are checked (each costs --folds scorings per task; 'all': every "
        "method that score_task can score alone)",
    )
    ap.add_argument(
        "--add-coverage",
        default=None,
        metavar="JSON",
        help="no plain scoring: an earlier run's --json with the --coverage methods' top sets added (its scores "
        "and fold count reused; its own top sets kept), written to --json",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--check-against", default=None, help="a previous run's --json: list the cells that differ")
    ap.add_argument("--compare", nargs=2, default=None, metavar="JSON", help="only compare two runs' --json")
    ap.add_argument(
        "--from-json",
        nargs="+",
        default=None,
        metavar="JSON",
        help="no scoring: the report of earlier runs' --json, their tasks merged (a task in several: the first "
        "run's scores; the top sets of every run)",
    )
    args = ap.parse_args(argv)
    methods = coverage_methods(args.coverage)
    if args.add_coverage:
        return add_coverage(args, methods)
    if args.compare:
        diff = differences(*(json.loads(Path(p).read_text()) for p in args.compare))
        print("\n".join(diff))
        return {"differences": diff}
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    tables, detail, timing, all_scores, truths = {"finetune": {}, "probe": {}}, {}, {}, {}, {}
    provenance, cover, threads = [], {}, torch.get_num_threads()
    runs = [json.loads(Path(p).read_text()) for p in args.from_json or ()]
    if runs:  # the runs' top sets must come from the same number of folds to share a table
        folds = {run.get("folds", 0) for run in runs if run.get("coverage")}
        if len(folds) > 1:
            raise SystemExit(f"--from-json: the runs' top sets come from different --folds ({sorted(folds)})")
        args.folds = folds.pop() if folds else 0
        threads = sorted({run.get("threads") for run in runs}, key=str)
        threads = threads[0] if len(threads) == 1 else threads
    for name in args.tasks if not runs else ():
        path = zoo_tasks.truth_path(name, args.truth_dir)
        if not path.exists():
            print(f"skipping {name}: no {path}; make it with: {zoo_tasks.truth_command(name, path)}")
            continue
        truth = json.loads(path.read_text())
        provenance.append(describe_truth(name, truth))
        task = zoo_tasks.load(name, truth)
        scores, seconds = score_task(task)
        all_scores[name], truths[name], timing[name] = scores, task.truth, seconds
        for gt, values in task.truth.items():
            for method, s in scores.items():
                res = evaluate(s, values)
                detail.setdefault(name, {}).setdefault(gt, {})[method] = res
                tables[gt].setdefault(method, {})[name] = res["weighted_tau"]
        if args.folds and "finetune" in task.truth:
            start = time.perf_counter()
            cover[name] = coverage(task, scores, methods, args.folds)
            print(f"{name}: top sets from {args.folds} folds in {time.perf_counter() - start:.0f} s", flush=True)
        print(f"{name}: {len(task.features)} candidates scored", flush=True)
    for name in [t for t in args.tasks if any(t in run["detail"] for run in runs)]:
        run = next(run for run in runs if name in run["detail"])
        truth = json.loads(zoo_tasks.truth_path(name, args.truth_dir).read_text())
        provenance.append(describe_truth(name, truth))
        detail[name], timing[name], all_scores[name] = run["detail"][name], run["timing"][name], run["scores"][name]
        truths[name] = zoo_tasks.ground_truths(truth)
        for other in runs:  # top sets: every run's methods for this task (the first run's where several)
            for method, top in other.get("coverage", {}).get(name, {}).items():
                cover.setdefault(name, {}).setdefault(method, top)
        for gt, rows in detail[name].items():
            for method, res in rows.items():
                tables[gt].setdefault(method, {})[name] = res["weighted_tau"]
    text = (
        report(tables, detail, timing, provenance, cover, args.folds) if timing else "no task had a ground-truth file\n"
    )
    print(text)
    out = {"detail": detail, "timing": timing, "scores": all_scores, "coverage": cover}
    out.update(folds=args.folds, threads=threads)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    if args.check_against:
        diff = differences(json.loads(Path(args.check_against).read_text()), out)
        print(f"Against {args.check_against}:\n" + "\n".join(diff))
        out["differences"] = diff
    if args.readme and timing:
        plot(tables, all_scores, truths, DOCS / "zoo_tau.png", DOCS / "zoo_scatter.png")
        body = README.read_text()
        start, end = body.find(MARK[0]), body.find(MARK[1])
        section = (
            f"{MARK[0]}\n{text}\n![tau_w per method](../docs/zoo_tau.png)\n\n"
            f"![{' and '.join(FOCUS)} scores vs fine-tuned accuracy](../docs/zoo_scatter.png)\n{MARK[1]}"
        )
        body = body[:start] + section + body[end + len(MARK[1]) :] if 0 <= start < end else body + "\n" + section + "\n"
        README.write_text(body)
    return {"tables": tables, **out}


if __name__ == "__main__":
    main()
