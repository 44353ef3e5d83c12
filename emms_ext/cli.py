"""The ``emms`` command line: rank a directory of feature files, embed texts, evaluate a ranking, run a demo.

    emms rank --features feats/ --labels y.npy --class-names classes.txt --out r.json --csv r.csv --plot r.png
    emms embed --texts classes.txt --out classes.npy
    emms evaluate --scores r.json --truth finetuned_acc.json
    emms demo

Exit codes: 0 ok; 2 a usage or input error (the message says what to fix); 1 any other failure
(``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem with the command line or the input files: reported in one line, exit code 2."""


# -------------------------------------------------------------------------------------- file readers
def _need_file(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"{what} file {path!r} does not exist; check the path given to --{what.replace(' ', '-')}")
    return p


def _parse_column(values: list[str], regression: bool):
    import numpy as np

    if regression:
        try:
            return np.array([float(v) for v in values], dtype=np.float64)
        except ValueError as exc:
            raise UsageError(f"--labels: regression targets must be numbers ({exc})") from exc
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        return [v for v in values]  # class names


def read_labels(path: str, regression: bool = False):
    """Labels from .npy (ints, names or floats), .txt (one per line) or .csv (one column, or the column
    named label/labels/target/y, else the last; a header row is detected)."""
    import numpy as np

    p = _need_file(path, "labels")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise UsageError(f"--labels {path}: not a plain .npy array ({exc})") from exc
        if arr.dtype.kind in "US":
            return [str(x) for x in arr.tolist()]
        return arr.astype(np.float64) if regression else arr
    text = p.read_text(encoding="utf-8")
    if suffix == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        if not rows:
            raise UsageError(f"--labels {path}: the file is empty")
        header = [c.strip().lower() for c in rows[0]]
        col = next((header.index(k) for k in ("label", "labels", "target", "y") if k in header), None)
        has_header = col is not None or (len(rows) > 1 and not _numeric(rows[0][-1]) and _numeric(rows[1][-1]))
        col = len(rows[0]) - 1 if col is None else col
        values = [r[col].strip() for r in rows[1 if has_header else 0:]]
    else:
        values = [line.strip() for line in text.splitlines() if line.strip()]
    if not values:
        raise UsageError(f"--labels {path}: no labels found")
    return _parse_column(values, regression)


def _numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def read_lines(path: str, what: str) -> list[str]:
    p = _need_file(path, what)
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise UsageError(f"--{what.replace(' ', '-')} {path}: the file has no non-empty lines")
    return lines


def read_json(path: str, what: str) -> dict:
    p = _need_file(path, what)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"--{what} {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"--{what} {path}: must be a JSON object {{model name: value}}")
    return data


# -------------------------------------------------------------------------------------- subcommands
def cmd_rank(args) -> int:
    import numpy as np

    from .features import feature_files
    from .ranker import rank

    try:
        files = feature_files(args.features)
    except FileNotFoundError as exc:
        raise UsageError(f"--features: {exc}") from exc
    except ValueError as exc:
        raise UsageError(f"--features: {exc}") from exc
    class_names = read_lines(args.class_names, "class names") if args.class_names else None
    if args.label_embeddings:
        arr = np.load(_need_file(args.label_embeddings, "label embeddings"), allow_pickle=False)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if args.labels:  # class-table form: [C, L, K] rows indexed by the labels
            y = read_labels(args.labels)
            if isinstance(y, list):
                if class_names is None:
                    raise UsageError("--labels holds class names: give --class-names to index --label-embeddings")
                pos = {n: i for i, n in enumerate(class_names)}
                y = np.array([pos[v] for v in y])
            from .labels import ClassLabels

            target = ClassLabels(arr, np.asarray(y, dtype=np.int64)) if len(arr) != len(y) else arr
        else:
            target = arr
    else:
        if not args.labels:
            raise UsageError("give --labels FILE (or --label-embeddings FILE.npy with ready F-labels)")
        target = read_labels(args.labels, regression=args.task == "regression")
        if args.task == "classification" and class_names is None and not isinstance(target, list):
            raise UsageError("--labels holds class indices: give --class-names FILE (one class name per line, "
                             "in index order) so the names can be embedded as F-labels")
    options = {}
    if args.ridge is not None:
        options["ridge"] = args.ridge
    if args.templates:
        options["templates"] = tuple(args.templates)
    progress = False if args.quiet else None
    result = rank({name: str(path) for name, path in files.items()}, target, args.metric, task=args.task,
                  class_names=class_names, embedders=args.embedders or None, device=args.device,
                  progress=progress, **options)
    if not args.quiet:
        print(result)
    if args.out:
        result.to_json(args.out)
    if args.csv:
        result.to_csv(args.csv)
    if args.plot:
        truth = read_json(args.truth, "truth") if args.truth else None
        result.plot(args.plot, truth={k: float(v) for k, v in truth.items()} if truth else None)
    if not result.scores:
        print(f"error: no model could be scored ({len(result.failures)} failed; reasons above); fix the feature "
              "files so that each is a finite float [N, D] matrix with N = the number of labels", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def cmd_embed(args) -> int:
    import numpy as np

    from .embed import embed_texts

    texts = read_lines(args.texts, "texts")
    blocks = embed_texts(texts, args.embedders or None, cache=False if args.no_cache else "default")
    L = max(b.shape[1] for b in blocks)
    out = np.zeros((len(texts), L, len(blocks)), dtype=np.float32)
    for k, b in enumerate(blocks):
        out[:, :b.shape[1], k] = b.numpy()
    np.save(args.out, out)
    if not args.quiet:
        print(f"{len(texts)} texts x K={len(blocks)} models (widths {[b.shape[1] for b in blocks]}, zero-padded "
              f"to {L}) -> {args.out} [N, L, K]")
    return EXIT_OK


def agreement(scores: dict, truth: dict, top_k=(1, 3)) -> dict:
    """tau_w (scipy.stats.weightedtau, defaults), Kendall tau, Pearson and Rel@k of scores vs truth over
    the models both name (Rel@k: best truth among the top-k by score / best truth overall)."""
    try:
        from .evaluate import evaluate  # the project's evaluation module, when present
    except ImportError:
        evaluate = None
    if evaluate is not None:
        try:
            return evaluate(scores, truth, ks=top_k)
        except ValueError as exc:
            raise UsageError(f"{exc}; check that the model names in --scores and --truth match") from exc
    import numpy as np
    from scipy.stats import kendalltau, pearsonr, weightedtau

    names = [n for n in scores if n in truth]
    if len(names) < 2:
        raise UsageError(f"need at least 2 models present in both --scores and --truth (got {len(names)}: "
                         f"{names}); check that the model names match")
    s = np.array([float(scores[n]) for n in names])
    t = np.array([float(truth[n]) for n in names])
    out = {"weighted_tau": float(weightedtau(s, t)[0]),
           "kendall_tau": float(kendalltau(s, t)[0]), "pearson": float(pearsonr(s, t)[0])}
    order = np.argsort(-s)
    for k in top_k:
        if k <= len(names) and t.max() > 0:
            out[f"rel@{k}"] = float(t[order[:k]].max() / t.max())
    out["models"] = len(names)
    return out


def cmd_evaluate(args) -> int:
    data = read_json(args.scores, "scores")
    scores = data["scores"] if isinstance(data.get("scores"), dict) else data
    truth = read_json(args.truth, "truth")
    try:
        scores = {k: float(v) for k, v in scores.items()}
        truth = {k: float(v) for k, v in truth.items()}
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--scores / --truth must map model names to numbers ({exc})") from exc
    res = agreement(scores, truth, tuple(args.top_k))
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:>14}: {v:.4f}" if isinstance(v, float) else f"{k:>14}: {v}")
    return EXIT_OK


DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def cmd_demo(args) -> int:
    """A small version of benchmarks/demo_digits.py: scikit-learn digits, a zoo of six feature extractors,
    F-labels from the offline text models, EMMS vs a logistic-regression probe's held-out accuracy."""
    import numpy as np

    try:
        from sklearn.datasets import load_digits
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        raise ImportError("emms demo needs scikit-learn: pip install scikit-learn scipy") from exc
    from .ranker import rank

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    rng = np.random.default_rng(0)
    zoo = {"pixels-64": (Xtr, Xte)}
    for k in (4, 16):
        pca = PCA(k, random_state=0).fit(Xtr)
        zoo[f"PCA-{k}"] = (pca.transform(Xtr), pca.transform(Xte))
    pool = lambda A: A.reshape(-1, 4, 2, 4, 2).mean((2, 4)).reshape(len(A), 16)  # noqa: E731
    zoo["2x2-pool-16"] = (pool(Xtr), pool(Xte))
    P = rng.standard_normal((64, 6))
    zoo["random-proj-6"] = (Xtr @ P, Xte @ P)
    zoo["noisy-pixels"] = (Xtr + 6 * rng.standard_normal(Xtr.shape), Xte + 6 * rng.standard_normal(Xte.shape))

    def probe(a, b):
        sc = StandardScaler().fit(a)
        return float(LogisticRegression(max_iter=2000).fit(sc.transform(a), ytr).score(sc.transform(b), yte))

    truth = {n: probe(a, b) for n, (a, b) in zoo.items()}
    result = rank({n: a for n, (a, _) in zoo.items()}, ytr, "emms", class_names=DIGITS,
                  embedders=args.embedders or None, templates=("a photo of the handwritten digit {}.",),
                  progress=False if args.quiet else None)
    print(f"EMMS on scikit-learn digits (N={len(ytr)} training images, {len(zoo)} feature extractors)")
    print(result)
    print("\nground truth: held-out accuracy of a logistic-regression probe")
    for n in result.order:
        print(f"  {n:<16} {truth[n]:.3f}")
    res = agreement(result.scores, truth)
    print(f"\nweighted Kendall tau {res['weighted_tau']:+.3f}   Kendall tau {res['kendall_tau']:+.3f}")
    if args.plot:
        result.plot(args.plot, truth=truth)
        print(f"plot written to {args.plot}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line with what to fix, exit 2 (argparse's convention)
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="emms", description="EMMS model selection: rank pre-trained models for a target task "
                "without fine-tuning them.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on failure")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("rank", help="rank a directory of feature files", description=(
        "Rank every model whose features are stored in DIR (one .npy / .pt / .safetensors file [N, D] per "
        "model, named after the file) on the labels in FILE."))
    r.add_argument("--features", required=True, metavar="DIR", help="directory of feature files, one per model")
    r.add_argument("--labels", metavar="FILE", help=".npy / .txt / .csv labels: class indices or names, or "
                   "regression targets")
    r.add_argument("--task", default="classification", choices=["classification", "regression"],
                   help="how to read the labels (default: classification)")
    r.add_argument("--class-names", metavar="FILE", help="class names, one per line, in class-index order")
    r.add_argument("--label-embeddings", metavar="FILE", help="ready F-labels .npy: [N, L, K], or a class table "
                   "[C, L, K] indexed by --labels (skips the text models)")
    r.add_argument("--metric", default="emms", help="metric name (default: emms; emms_alternating, "
                   "emms_reference, and the baselines' names)")
    r.add_argument("--embedders", nargs="+", metavar="NAME", help="text models for the F-labels (default: the "
                   "offline defaults, e.g. all-MiniLM-L6-v2 paraphrase-MiniLM-L3-v2)")
    r.add_argument("--templates", nargs="+", metavar="TEXT", help="prompt templates with one {} for the class name")
    r.add_argument("--ridge", type=float, help="EMMS ridge lambda (for D >= N features)")
    r.add_argument("--device", help="torch device for the scores (default: cpu)")
    r.add_argument("--out", metavar="FILE.json", help="write the ranking as JSON")
    r.add_argument("--csv", metavar="FILE.csv", help="write the ranking as CSV")
    r.add_argument("--plot", metavar="FILE.png", help="write a bar chart of the scores (needs matplotlib)")
    r.add_argument("--truth", metavar="FILE.json", help="ground truth {model: value} for the plot's scatter")
    r.add_argument("--quiet", action="store_true", help="no table, no progress bars")
    r.set_defaults(func=cmd_rank)

    e = sub.add_parser("embed", help="embed texts with the offline text models", description=(
        "Embed each line of FILE with K text models; writes [T, L, K] float32 (narrower models zero-padded)."))
    e.add_argument("--texts", required=True, metavar="FILE", help="texts, one per line")
    e.add_argument("--out", required=True, metavar="FILE.npy", help="output .npy file")
    e.add_argument("--embedders", nargs="+", metavar="NAME", help="text models (default: the offline defaults)")
    e.add_argument("--no-cache", action="store_true", help="do not use the on-disk embedding cache")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_embed)

    v = sub.add_parser("evaluate", help="compare a ranking with ground truth", description=(
        "Weighted Kendall tau (scipy.stats.weightedtau), Kendall tau, Pearson and Rel@k of the scores "
        "against ground-truth values (e.g. fine-tuned accuracies)."))
    v.add_argument("--scores", required=True, metavar="FILE.json", help="emms rank --out output, or {model: score}")
    v.add_argument("--truth", required=True, metavar="FILE.json", help="{model: ground-truth value}")
    v.add_argument("--top-k", type=int, nargs="+", default=[1, 3], help="k values for Rel@k (default: 1 3)")
    v.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", help="rank a small zoo on scikit-learn digits", description=(
        "Six feature extractors on scikit-learn's digits, ranked by EMMS with F-labels from the offline text "
        "models, next to a probe's held-out accuracy."))
    d.add_argument("--embedders", nargs="+", metavar="NAME", help="text models (default: the offline defaults)")
    d.add_argument("--plot", metavar="FILE.png", help="also write the plot with the ground-truth scatter")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    import warnings

    before = warnings.formatwarning
    warnings.formatwarning = lambda msg, category, *a, **k: f"warning: {msg}\n"  # no source lines in a CLI
    try:
        return _run(argv)
    finally:
        warnings.formatwarning = before


def _run(argv) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except (UsageError, ValueError, FileNotFoundError) as exc:
        if args.debug:
            raise
        print(f"emms {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:
        if args.debug:
            raise
        print(f"emms {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI never shows a traceback unless --debug
        if args.debug:
            raise
        print(f"emms {args.command}: failed: {type(exc).__name__}: {exc} (rerun with emms --debug {args.command} "
              "... for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
