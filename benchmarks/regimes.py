"""Can the benchmark tell methods apart? Every method on every task in three regimes — the metric sees all
training samples, 50 per class, or 10 per class (R seeded random draws each) — against the same full-task
fine-tuning truth, with paired bootstrap confidence intervals.

    python benchmarks/regimes.py [--tasks ...] [--draws 5] [--boot 1000] [--readme]
                                  [--json out.json | --from-json out.json ...]

Regimes: tasks without classes (free text, regression) draw 50 x 10 and 10 x 10 samples (the sample counts
of the 10-class tasks). A method's tau_w on one (task, regime, draw) is against the fine-tuning truth of
the task's candidates; a method that gives every candidate the same score ranks nothing and gets 0 (its
scores are tied; scipy's weighted tau is undefined there). A method that fails on a candidate is left out
of that unit.

Statistics (paired bootstrap, ``--boot`` replicates, seeded): each replicate resamples every task's candidates
with replacement (the same resample for every method, regime and draw of the task: the comparisons are
paired) and recomputes every tau_w; a mean's 95% interval is the 2.5 / 97.5 percentiles of its replicates.
A method is better or worse than another only when the 95% interval of the paired difference excludes 0;
otherwise the two tie. ``--readme`` rewrites the generated section of benchmarks/README.md.
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
from benchmarks.run_zoo import BASELINES, CONSENSUS, EMMS_VARIANTS  # noqa: E402
from benchmarks.zoo import tasks as zoo_tasks  # noqa: E402
from emms_ext.selection import get_metric  # noqa: E402
from emms_ext.selection.consensus import DEFAULT_MEMBERS, aggregate  # noqa: E402
from emms_ext.selection.evaluate import weighted_tau  # noqa: E402

REGIMES = {"all": None, "50 per class": 50, "10 per class": 10}
METHODS = [m for m in EMMS_VARIANTS if m != "EMMS (ridge=gcv)"] + list(BASELINES) + ["Consensus"]
DEFAULT = "EMMS (exact)"  # rank()'s default metric ("emms") when this benchmark was made
# In-sample fits: every model with D >= N - 1 fits exactly and ties (at 0) — not eligible as the default.
TIES_WIDE = ("EMMS (exact)", "EMMS (alternating)", "EMMS (reference)", "EMMS(One)")
MARK = ("<!-- regimes:start -->", "<!-- regimes:end -->")
README = ROOT / "benchmarks" / "README.md"
CLASSES_IF_NONE = 10  # sample counts of class-free tasks: per-class counts times this


def draw(task, per_class: int, seed: int) -> torch.Tensor:
    """Sorted indices of a stratified draw (per_class of each class), or per_class x 10 samples without classes."""
    g = np.random.default_rng(seed)
    y = task.target.labels
    if y is None:
        n = len(next(iter(task.features.values())))
        return torch.from_numpy(np.sort(g.choice(n, per_class * CLASSES_IF_NONE, replace=False)))
    y = np.asarray(y)
    picks = [g.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    return torch.from_numpy(np.sort(np.concatenate(picks)))


def score_methods(task) -> dict:
    """method -> {candidate -> score} for every method of METHODS that applies to the task."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method, kw in EMMS_VARIANTS.items():
            if method in METHODS:
                out[method] = emms_ext.emms_scores(task.features, task.labels, errors="skip", **kw).scores
        for method, name in BASELINES.items():
            metric = get_metric(name)
            t = task.target
            if any(getattr(t, need) is None for need in metric.needs) or (
                name == "logme" and t.labels is None and t.targets is None
            ):
                continue
            out[method] = {}
            for cand, x in task.features.items():
                try:
                    out[method][cand] = float(metric.fn(x.double(), t))
                except Exception:  # noqa: BLE001 — a failing (method, candidate) leaves the unit, not the run
                    pass
        members = {m: out[row] for m, row in CONSENSUS.items() if m in DEFAULT_MEMBERS and row in out}
        out["Consensus"] = aggregate(members)
    return out


def tau(scores: dict, truth: dict, pick: np.ndarray | None = None) -> float:
    """tau_w over the candidates (optionally resampled by index `pick` into the sorted candidate list);
    0 when the scores are all equal (nothing ranked); NaN when a candidate has no score."""
    names = sorted(truth)
    if any(n not in scores for n in names):
        return float("nan")
    s = np.array([scores[n] for n in names])
    t = np.array([truth[n] for n in names])
    if pick is not None:
        s, t = s[pick], t[pick]
    if np.ptp(s) <= 1e-12 * max(1.0, np.abs(s).max()):
        return 0.0
    return weighted_tau(s, t)


def run(task_names, draws: int, truth_dir=None) -> tuple[list, dict]:
    """Units [(task, regime, draw, method -> scores)] and task -> fine-tuning truth."""
    units, truths = [], {}
    for name in task_names:
        path = zoo_tasks.truth_path(name, truth_dir)
        if not path.exists():
            print(f"skipping {name}: no {path} ({zoo_tasks.truth_command(name, path)})", file=sys.stderr)
            continue
        truth = json.loads(path.read_text())
        task = zoo_tasks.load(name, truth)
        truths[name] = task.truth["finetune"]
        for regime, per_class in REGIMES.items():
            for r in range(1 if per_class is None else draws):
                sub = (
                    task
                    if per_class is None
                    else zoo_tasks.subset(task, draw(task, per_class, seed=1000 * r + per_class))
                )
                units.append((name, regime, r, score_methods(sub)))
        print(f"{name}: {len(truths[name])} candidates, {len(units)} units so far", flush=True)
    return units, truths


def bootstrap(units: list, truths: dict, boot: int, seed: int = 0) -> dict:
    """method -> tau_w [n_units, 1 + boot]: column 0 on the data, then one column per replicate; NaN where
    the method does not apply to the unit's task (or failed on a candidate)."""
    rng = np.random.default_rng(seed)
    picks = [None] + [{t: rng.integers(0, len(v), len(v)) for t, v in truths.items()} for _ in range(boot)]
    out = {}
    for m in METHODS:
        if not any(m in u[3] for u in units):
            continue
        out[m] = np.array(
            [
                [tau(u[3][m], truths[u[0]], None if p is None else p[u[0]]) if m in u[3] else np.nan for p in picks]
                for u in units
            ]
        )
    return out


def mean_over(taus: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """[1 + boot] means over the selected units (NaN units skipped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.nanmean(taus[rows], axis=0)


def paired(a: np.ndarray, b: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
    """[1 + boot] mean difference a - b over the selected units where both apply (None if none)."""
    both = rows & ~np.isnan(a[:, 0]) & ~np.isnan(b[:, 0])
    return mean_over(a - b, both) if both.any() else None


def _ci(x: np.ndarray) -> tuple[float, float]:
    return float(np.nanpercentile(x[1:], 2.5)), float(np.nanpercentile(x[1:], 97.5))


def verdict(diff: np.ndarray) -> str:
    lo, hi = _ci(diff)
    return "better" if lo > 0 else "worse" if hi < 0 else "tie"


def report(taus: dict, units: list, boot: int) -> tuple[str, str]:
    """(markdown, the method the rule picks as rank()'s default)."""
    tasks = sorted({u[0] for u in units})
    groups = {g: np.array([g == "overall" or u[1] == g for u in units]) for g in [*REGIMES, "overall"]}
    lines = [
        f"Tasks: {', '.join(tasks)}; {len(units)} (task, regime, draw) units; {boot} paired bootstrap "
        "replicates over the candidates.\n",
        "#### Mean tau_w (fine-tuning truth) per regime, 95% interval\n",
        "| method | " + " | ".join(groups) + " |",
        "|---|" + "---:|" * len(groups),
    ]
    for m, x in taus.items():
        cells = []
        for rows in groups.values():
            mean = mean_over(x, rows)
            cells.append("-" if np.isnan(mean[0]) else f"{mean[0]:+.3f} [{_ci(mean)[0]:+.2f}, {_ci(mean)[1]:+.2f}]")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"#### Paired difference to {DEFAULT} (the default when this was made), 95% interval\n",
        "| method | " + " | ".join(groups) + " |",
        "|---|" + "---:|" * len(groups),
    ]
    for m, x in taus.items():
        if m == DEFAULT:
            continue
        cells = []
        for rows in groups.values():
            d = paired(x, taus[DEFAULT], rows)
            cells.append("-" if d is None else f"{d[0]:+.3f} [{_ci(d)[0]:+.2f}, {_ci(d)[1]:+.2f}] {verdict(d)}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    everything = groups["overall"]
    wtl = {m: [0, 0, 0] for m in taus}
    for a in taus:
        for b in taus:
            d = None if a == b else paired(taus[a], taus[b], everything)
            if d is not None:
                wtl[a][("better", "tie", "worse").index(verdict(d))] += 1
    means = {m: float(mean_over(x, everything)[0]) for m, x in taus.items()}
    lines += [
        "",
        "#### Wins / ties / losses against every other method (all regimes; paired over the units both apply to)\n",
        "| method | mean tau_w | wins | ties | losses |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in sorted(taus, key=lambda m: -means[m]):
        lines.append(f"| {m} | {means[m]:+.3f} | {wtl[m][0]} | {wtl[m][1]} | {wtl[m][2]} |")
    eligible, why_not = _eligible(taus, units, groups)
    ok = [m for m in eligible if wtl[m][2] == 0]
    pick = max(ok or eligible, key=lambda m: means[m])
    lines += [
        "",
        "Eligible as rank()'s default: a method that applies to every task, does not tie the D >= N models, "
        "and does not collapse at 10 per class (the 95% interval of its mean tau_w there lies above 0). "
        "Not eligible: " + "; ".join(f"{m} ({why})" for m, why in why_not.items()) + ".",
    ]
    rule = (
        f"best mean tau_w among the eligible methods with no significant loss: {pick}"
        if ok
        else f"no eligible method is free of significant losses; by mean tau_w alone: {pick}"
    )
    lines += ["", f"Rule for rank()'s default (mean tau_w over tasks and regimes, no significant paired loss): {rule}."]
    return "\n".join(lines), pick


def _eligible(taus: dict, units: list, groups: dict) -> tuple[list, dict]:
    """(methods eligible as rank()'s default, method -> why not) by the rule printed with the tables."""
    tasks = {u[0] for u in units}
    ok, why_not = [], {}
    for m, x in taus.items():
        applies = {u[0] for u, v in zip(units, x[:, 0]) if not np.isnan(v)}
        few = mean_over(x, groups["10 per class"])
        if m in TIES_WIDE:
            why_not[m] = "ties every D >= N model"
        elif applies != tasks:
            why_not[m] = f"does not apply to {', '.join(sorted(tasks - applies))}"
        elif np.isnan(few[0]) or _ci(few)[0] <= 0:
            why_not[m] = "collapses at 10 per class"
        else:
            ok.append(m)
    return ok, why_not


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=list(zoo_tasks.VISION + zoo_tasks.TEXT))
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--truth-dir", default=None)
    ap.add_argument("--json", default=None, help="write the scored units here (before the statistics)")
    ap.add_argument(
        "--from-json", nargs="+", default=None, help="re-report (and combine) --json unit files instead of scoring"
    )
    ap.add_argument("--readme", action="store_true")
    args = ap.parse_args(argv)
    if args.from_json:
        units, truths = [], {}
        for path in args.from_json:  # e.g. tasks scored in parallel processes
            saved = json.loads(Path(path).read_text())
            units += [tuple(u) for u in saved["units"]]
            truths.update(saved["truths"])
    else:
        units, truths = run(args.tasks, args.draws, args.truth_dir)
        if args.json:  # the scoring is the hour-long part: keep it before anything else can fail
            Path(args.json).write_text(json.dumps({"units": units, "truths": truths}, indent=1, default=float))
    if not units:
        print("no task had a ground-truth file")
        return {}
    taus = bootstrap(units, truths, args.boot)
    text, pick = report(taus, units, args.boot)
    print(text)
    if args.readme:
        body = README.read_text()
        start, end = body.index(MARK[0]), body.index(MARK[1])
        README.write_text(body[: start + len(MARK[0])] + "\n" + text + "\n" + body[end:])
    return {"taus": taus, "pick": pick}


if __name__ == "__main__":
    main()
