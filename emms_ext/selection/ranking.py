"""``Ranking``: the result of ``emms_ext.rank`` — models sorted by score, with error bars when asked for
(``rank(..., uncertainty=True)``: standard errors, ``prob_better``, the top set), tied groups, timings,
warnings, failures, and exports to dict / JSON / CSV / pandas and a matplotlib plot (pandas and matplotlib
imported lazily)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from dataclasses import dataclass, field

import torch

from ..core.folds import jackknife_stderr
from ..core.folds import prob_better as _prob_better
from ..core.folds import top_set as _top_set
from .evaluate import weighted_tau

SCORE_DIGITS = 10  # significant digits a Ranking keeps: below them the BLAS's summation order (thread count) shows


def round_score(x: float) -> float:
    """``x`` to ``SCORE_DIGITS`` significant digits (the same ranking whatever the thread count)."""
    return float(f"{float(x):.{SCORE_DIGITS}g}") + 0.0  # + 0.0: no -0.0


def _jsonable(x):
    """Plain JSON types for details (EMMSResult and the like): tensors become lists."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if torch.is_tensor(x):
        return x.detach().cpu().tolist()
    if hasattr(x, "tolist") and hasattr(x, "dtype"):  # numpy arrays and scalars
        return x.tolist()
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return repr(x)


@dataclass
class Ranking:
    """Models of a zoo ranked by a transferability metric (higher score = predicted to transfer better).

    Attributes:
        order: model names, best first (failed models excluded).
        scores: name -> score.
        metric: the metric's registry name (e.g. "emms").
        relative: True when the metric's values only compare models within this zoo (e.g. min-max
            normalised): do not compare them across zoos or datasets.
        timings: {"per_model": name -> seconds (feature loading / extraction plus its share of scoring),
            "labels": seconds building the target / F-labels, "scoring": seconds, "total": seconds}.
        warnings: messages raised while scoring (e.g. the EMMS degeneracy warning).
        failures: name -> reason, for models that could not be scored.
        details: name -> per-model detail (``EMMSResult`` for EMMS metrics).
        embedders: names of the F-label embedders ``rank`` used (None when the target came with ready
            F-labels, or the metric needs none).
        overlaps: candidate -> the embedders it is (part of): same name / folder or shared weights
            (``overlap.py``); on free text such candidates' scores are inflated.
        fold_scores: name -> ``[F]`` leave-one-fold-out scores (``rank(..., uncertainty=True)``), paired
            across models; ``stderr``, ``prob_better`` and ``top_set`` come from them.
        saturation: the message when the metric gave (numerically) the same score to every candidate or to
            most of them (``saturation.py``; also in ``warnings``), else None.

    Scores (and fold scores) keep ``SCORE_DIGITS`` significant digits, so the same features give the same
    ranking with any thread count; models with equal scores are tied (``ties``) and ordered by name.
    """

    scores: dict
    metric: str = "emms"
    relative: bool = False
    timings: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    failures: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    embedders: list | None = None
    overlaps: dict = field(default_factory=dict)
    fold_scores: dict = field(default_factory=dict)
    saturation: str | None = None

    def __post_init__(self):
        self.scores = {str(k): round_score(v) for k, v in self.scores.items()}
        self.failures = {k: str(v) for k, v in self.failures.items()}
        self.fold_scores = {str(k): [round_score(v) for v in vals] for k, vals in self.fold_scores.items()}

    @property
    def order(self) -> list:
        """Model names from best to worst score (failed models excluded); tied scores in name order."""
        return sorted(self.scores, key=lambda n: (-self.scores[n], n))

    @property
    def stderr(self) -> dict:
        """name -> delete-a-group jackknife standard error of its score (models with fold scores)."""
        return {n: jackknife_stderr(self.fold_scores[n]) for n in self.order if n in self.fold_scores}

    def _need_folds(self, *names):
        if not self.fold_scores:
            raise ValueError("this ranking has no error bars: rank(..., uncertainty=True) computes them")
        for n in names:
            if n not in self.scores:
                raise KeyError(f"{n!r} is not a ranked model (ranked: {self.order})")
            if n not in self.fold_scores:
                raise ValueError(f"model {n!r} has no fold scores (see warnings)")

    def prob_better(self, a: str, b: str) -> float:
        """The probability that model ``a``'s score exceeds ``b``'s under the paired jackknife: their score
        difference over the jackknife SE of the fold-wise differences, on Student's t with F - 1 dof."""
        self._need_folds(a, b)
        return _prob_better(self.scores[a], self.scores[b], self.fold_scores[a], self.fold_scores[b])

    def top_set(self, level: float = 0.95) -> list:
        """The models not distinguishable from the best at ``level`` (the best first): every model ``m``
        with ``prob_better(best, m) <= (1 + level) / 2``."""
        self._need_folds()
        have = {n: self.scores[n] for n in self.order if n in self.fold_scores}
        return _top_set(have, self.fold_scores, level)

    @property
    def ties(self) -> list:
        """Groups (lists of names, in order) of two or more models with exactly the same score."""
        groups: dict = {}
        for n in self.order:
            groups.setdefault(self.scores[n], []).append(n)
        return [g for g in groups.values() if len(g) > 1]

    def _tie_reason(self, group: list) -> str:
        if all(getattr(self.details.get(n), "degenerate", False) for n in group):
            return (
                "each fits the target exactly in sample (D >= N - 1): use mode='gcv' / 'loo' or a ridge, or "
                "more samples"
            )
        return "equal scores"

    def best_layers(self) -> dict:
        """model -> (its best candidate "model@layer", score), for candidates named "model@layer" (layers
        of one checkpoint, ``rank(..., layers="all")``), models in the order of their best score."""
        best = {}
        for name in self.order:
            model, sep, _ = str(name).rpartition("@")
            if sep and model not in best:
                best[model] = (name, self.scores[name])
        return best

    @property
    def best(self):
        """Name of the best-scoring model, or None when no model was scored."""
        order = self.order
        return order[0] if order else None

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, name) -> float:
        return self.scores[name]

    # ------------------------------------------------------------------------------------ exports
    def to_dict(self) -> dict:
        """The ranking as a JSON-ready dict: metric, relative, order, scores (best first), failures, warnings,
        timings and per-model details."""
        per_model = self.timings.get("per_model", {})
        errors = {}
        if self.fold_scores:
            errors = {
                "stderr": self.stderr,
                "top_set": self.top_set(),
                "fold_scores": {n: self.fold_scores[n] for n in self.order if n in self.fold_scores},
            }
        return {
            "metric": self.metric,
            "relative": self.relative,
            "order": self.order,
            "scores": {n: self.scores[n] for n in self.order},
            **errors,
            "ties": self.ties,
            "saturation": self.saturation,
            "failures": dict(self.failures),
            "warnings": list(self.warnings),
            "timings": _jsonable({**self.timings, "per_model": dict(per_model)}),
            "details": {n: _jsonable(d) for n, d in self.details.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> Ranking:
        """A ranking from ``to_dict`` output; ``ValueError`` unless ``d`` holds ``scores: {model name: score}``."""
        if not isinstance(d, dict) or "scores" not in d or not isinstance(d["scores"], dict):
            raise ValueError("a ranking dict must hold 'scores': {model name: score} (as written by to_json)")
        return cls(
            scores=d["scores"],
            metric=d.get("metric", "emms"),
            relative=bool(d.get("relative", False)),
            timings=d.get("timings", {}),
            warnings=list(d.get("warnings", [])),
            failures=dict(d.get("failures", {})),
            details=dict(d.get("details", {})),
            fold_scores=dict(d.get("fold_scores", {})),
            saturation=d.get("saturation"),
        )

    def to_json(self, path=None, indent: int = 2) -> str:
        """The ranking as JSON (``to_dict``); also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            with open(os.fspath(path), "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text) -> Ranking:
        """A ranking from ``to_json`` output (a path or the JSON text)."""
        text = os.fspath(path_or_text) if isinstance(path_or_text, os.PathLike) else path_or_text
        if isinstance(text, str) and not text.lstrip().startswith("{"):
            with open(text, encoding="utf-8") as f:
                text = f.read()
        return cls.from_dict(json.loads(text))

    CSV_COLUMNS = ("rank", "model", "score", "stderr", "top_set", "seconds", "status", "reason")

    def _rows(self):
        per_model = self.timings.get("per_model", {})
        se = self.stderr
        top = set(self.top_set()) if self.fold_scores else set()
        for i, n in enumerate(self.order, 1):
            yield {
                "rank": i,
                "model": n,
                "score": repr(self.scores[n]),
                "stderr": repr(se[n]) if n in se else "",
                "top_set": ("yes" if n in top else "no") if n in se else "",
                "seconds": _fmt_s(per_model.get(n)),
                "status": "ok",
                "reason": "",
            }
        for n, why in self.failures.items():
            yield {
                "rank": "",
                "model": n,
                "score": "",
                "stderr": "",
                "top_set": "",
                "seconds": _fmt_s(per_model.get(n)),
                "status": "failed",
                "reason": why,
            }

    def to_csv(self, path=None) -> str:
        """One row per model (rank, model, score, stderr and whether it is in the 95% top set when the ranking
        has error bars, seconds, status, reason; failures last); also written to ``path`` if given.
        ``from_csv`` reads back the scores, not the fold scores behind the error bars (use JSON for those)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(self._rows())
        text = buf.getvalue()
        if path is not None:
            with open(os.fspath(path), "w", encoding="utf-8", newline="") as f:
                f.write(text)
        return text

    @classmethod
    def from_csv(cls, path_or_text, metric: str = "emms", relative: bool = False) -> Ranking:
        """Scores, failures and per-model seconds from ``to_csv`` output (a path or the CSV text)."""
        text = os.fspath(path_or_text)
        if "\n" not in text:
            with open(text, encoding="utf-8", newline="") as f:
                text = f.read()
        scores, failures, per_model = {}, {}, {}
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("seconds"):
                per_model[row["model"]] = float(row["seconds"])
            if row.get("status") == "failed":
                failures[row["model"]] = row.get("reason", "")
            else:
                scores[row["model"]] = float(row["score"])
        return cls(
            scores=scores,
            metric=metric,
            relative=relative,
            failures=failures,
            timings={"per_model": per_model} if per_model else {},
        )

    def to_pandas(self):
        """A ``pandas.DataFrame`` with the CSV columns (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("Ranking.to_pandas needs pandas: pip install pandas (or use to_dict / to_csv)") from exc
        df = pd.DataFrame(list(self._rows()), columns=list(self.CSV_COLUMNS))
        df["score"] = pd.to_numeric(df["score"], errors="coerce")
        df["stderr"] = pd.to_numeric(df["stderr"], errors="coerce")
        df["seconds"] = pd.to_numeric(df["seconds"], errors="coerce")
        df["rank"] = pd.to_numeric(df["rank"], errors="coerce").astype("Int64")
        return df

    # ------------------------------------------------------------------------------------ display
    def __str__(self) -> str:
        per_model = self.timings.get("per_model", {})
        names = self.order + list(self.failures)
        w = max([5] + [len(str(n)) for n in names])
        note = " (relative: scores compare only models within this zoo)" if self.relative else ""
        se = self.stderr
        top = set(self.top_set()) if self.fold_scores else set()
        lines = [
            f"Ranking by {self.metric}{note}: {len(self.order)} models ranked, {len(self.failures)} failed",
            f"{'rank':>4}  {'model':<{w}}  {'score':>12}"
            + (f"  {'± SE':>10}  top" if se else "")
            + f"  {'seconds':>8}",
        ]
        tied = {n: i for i, g in enumerate(self.ties, 1) for n in g}
        for i, n in enumerate(self.order, 1):
            s = per_model.get(n)
            err = (f"  {se[n]:>10.3g}  {'*' if n in top else ' ':>3}" if n in se else f"  {'-':>10}     ") if se else ""
            mark = f"  (tie {tied[n]})" if n in tied else ""
            lines.append(f"{i:>4}  {n:<{w}}  {self.scores[n]:>12.6g}{err}  {'' if s is None else f'{s:8.3f}':>8}{mark}")
        for n, why in self.failures.items():
            lines.append(f"{'-':>4}  {n:<{w}}  {'failed':>12}  {why}")
        if se:
            folds = len(next(iter(self.fold_scores.values())))
            lines.append(
                f"± SE: delete-a-group jackknife over {folds} folds; *: the 95% top set (not distinguishable "
                "from the best by the paired jackknife)"
            )
        for i, g in enumerate(self.ties, 1):
            lines.append(f"tie {i}: {', '.join(g)} score {self.scores[g[0]]:.6g}: {self._tie_reason(g)}")
        if "total" in self.timings:
            lines.append(f"total {self.timings['total']:.3f} s")
        for msg in self.warnings:
            lines.append(f"warning: {msg}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        rel = ", relative to this zoo" if self.relative else ""
        top = ", ".join(f"{n}={self.scores[n]:.4g}" for n in self.order[:5])
        more = ", ..." if len(self.order) > 5 else ""
        fail = f", failures={sorted(self.failures)}" if self.failures else ""
        return f"Ranking(metric={self.metric!r}{rel}: {top}{more}{fail})"

    def plot(self, path=None, truth: dict | None = None):
        """A horizontal bar chart of the scores (best on top; ± 1 SE error bars when the ranking has them);
        with ``truth`` (name -> ground-truth value, e.g. fine-tuned accuracy) also a scatter of score vs
        truth titled with the weighted Kendall tau (``scipy.stats.weightedtau``, its defaults). Saved to
        ``path`` if given; returns the figure."""
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ImportError("Ranking.plot needs matplotlib: pip install 'emms_ext[plot]'") from exc
        order = self.order
        if not order:
            raise ValueError(
                "nothing to plot: no model was scored" + (f" ({len(self.failures)} failed)" if self.failures else "")
            )
        both = [n for n in order if truth and n in truth]
        if truth is not None and len(both) < 2:
            raise ValueError(
                f"truth must give values for at least 2 ranked models (got {len(both)} of {len(order)} names matching)"
            )
        ncols = 2 if truth is not None else 1
        fig = Figure(figsize=(6.5 * ncols, max(2.5, 0.35 * len(order) + 1.2)), layout="constrained")
        ax = fig.add_subplot(1, ncols, 1)
        vals = [self.scores[n] for n in order][::-1]
        se = self.stderr
        err = [se.get(n, 0.0) for n in order][::-1] if se else None
        ax.barh(range(len(order)), vals, xerr=err, color="tab:blue", ecolor="black", capsize=3)
        ax.set_yticks(range(len(order)), [str(n) for n in order][::-1])
        ax.set_xlabel(f"{self.metric} score (higher is better)" + ("; bars: ± 1 jackknife SE" if se else ""))
        rel = " — relative to this zoo" if self.relative else ""
        fail = f" ({len(self.failures)} failed)" if self.failures else ""
        ax.set_title(f"Ranking by {self.metric}{rel}{fail}")
        if truth is not None:
            s = [self.scores[n] for n in both]
            t = [float(truth[n]) for n in both]
            tau = weighted_tau(s, t)
            ax2 = fig.add_subplot(1, ncols, 2)
            ax2.scatter(s, t, color="tab:orange")
            for n, x, y in zip(both, s, t):
                ax2.annotate(str(n), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax2.set_xlabel(f"{self.metric} score")
            ax2.set_ylabel("ground truth")
            ax2.set_title(f"score vs ground truth: weighted Kendall τ_w = {tau:.3f}")
        if path is not None:
            fig.savefig(os.fspath(path), dpi=120)
        return fig


def _fmt_s(s) -> str:
    return "" if s is None else f"{float(s):.6f}"
