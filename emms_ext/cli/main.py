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
import sys

from ..selection.metrics import DEFAULT_METRIC
from ..selection.targets import TASKS
from .commands import cmd_demo, cmd_embed, cmd_evaluate, cmd_rank
from .inputs import EXIT_FAILURE, EXIT_USAGE, UsageError


# ------------------------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """Usage errors: one line with what to fix, exit 2 (argparse's convention)."""
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``emms`` argument parser with its subcommands (``rank``, ``embed``, ``evaluate``, ``demo``); each
    subparser sets ``func`` to the command it runs."""
    p = _Parser(
        prog="emms",
        description="EMMS model selection: rank pre-trained models for a target task without fine-tuning them.",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on failure")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser(
        "rank",
        help="rank a directory of feature files",
        description=(
            "Rank every model whose features are stored in DIR (one .npy / .pt / .safetensors file [N, D] per "
            "model, named after the file) on the labels in FILE."
        ),
    )
    r.add_argument("--features", metavar="DIR", help="directory of feature files, one per model")
    r.add_argument(
        "--models",
        metavar="A,B,...",
        help="model folders or cached hub ids (comma-separated), run over --dataset's input column",
    )
    r.add_argument(
        "--dataset",
        metavar="PATH",
        help="a dataset saved with save_to_disk, a .csv / .json / .jsonl / .parquet file, or a hub name (online)",
    )
    r.add_argument("--text-column", metavar="NAME", help="--dataset: the column of input texts")
    r.add_argument("--image-column", metavar="NAME", help="--dataset: the column of input images")
    r.add_argument("--label-column", metavar="NAME", help="--dataset: the column to predict")
    r.add_argument(
        "--layers", default="last", help="--models: last (default), all, mean, or comma-separated layer indices"
    )
    r.add_argument("--sample", type=float, help="--dataset: keep this many rows (>= 1) or this fraction (< 1)")
    r.add_argument(
        "--labels", metavar="FILE", help=".npy / .txt / .csv labels: class indices or names, or regression targets"
    )
    r.add_argument(
        "--task",
        default="classification",
        choices=list(TASKS),
        help="the target task (default: classification). classification: --labels (indices with --class-names, "
        "or names); multilabel: --labels .npy [N, C] 0/1 with --class-names; regression: --labels numbers; "
        "captioning / free_text: --texts; vqa / text_qa: --answers; referring: --texts, --boxes, --image-sizes",
    )
    r.add_argument(
        "--texts",
        metavar="FILE.jsonl",
        help="per-sample texts, one JSON value per line: a string or a list of strings (several captions)",
    )
    r.add_argument(
        "--reduce",
        choices=["repeat", "mean"],
        help="several texts per sample: one label row per text, the features repeated (default), or their mean",
    )
    r.add_argument(
        "--answers", metavar="FILE.jsonl", help="per-sample answers (vqa: a string or a list; text_qa: a string)"
    )
    r.add_argument("--boxes", metavar="FILE.npy", help="referring: boxes [N, 4] in pixels (x0, y0, x1, y1)")
    r.add_argument("--image-sizes", metavar="FILE.npy", help="referring: image sizes [N, 2] (width, height)")
    r.add_argument("--class-names", metavar="FILE", help="class names, one per line, in class-index order")
    r.add_argument(
        "--label-embeddings",
        metavar="FILE",
        help="ready F-labels .npy: [N, L, K], or a class table [C, L, K] indexed by --labels (skips the text models)",
    )
    r.add_argument(
        "--metric",
        default=None,
        help=f"metric name (default: {DEFAULT_METRIC}, chosen by the regimes benchmark; emms = the paper's EMMS, "
        "emms_alternating, emms_reference, the out-of-sample emms_gcv and emms_loo, emms_evidence, consensus, "
        "and the baselines' names)",
    )
    r.add_argument(
        "--embedders",
        nargs="+",
        metavar="NAME",
        help="text models for the F-labels (default: the "
        "offline defaults, e.g. all-MiniLM-L6-v2 paraphrase-MiniLM-L3-v2)",
    )
    r.add_argument("--templates", nargs="+", metavar="TEXT", help="prompt templates with one {} for the class name")
    r.add_argument("--ridge", type=float, help="EMMS ridge lambda (for D >= N features)")
    r.add_argument(
        "--uncertainty",
        action="store_true",
        help="error bars: re-score on leave-one-fold-out subsets; the table shows score ± SE and the 95%% top set",
    )
    r.add_argument("--folds", type=int, help="--uncertainty: number of folds (default 10)")
    r.add_argument("--seed", type=int, help="--uncertainty: seed of the fold assignment (default 0)")
    r.add_argument("--device", help="torch device for the scores (default: cpu)")
    r.add_argument("--out", metavar="FILE.json", help="write the ranking as JSON")
    r.add_argument("--csv", metavar="FILE.csv", help="write the ranking as CSV")
    r.add_argument("--plot", metavar="FILE.png", help="write a bar chart of the scores (needs matplotlib)")
    r.add_argument("--truth", metavar="FILE.json", help="ground truth {model: value} for the plot's scatter")
    r.add_argument("--quiet", action="store_true", help="no table, no progress bars")
    r.set_defaults(func=cmd_rank)

    e = sub.add_parser(
        "embed",
        help="embed texts with the offline text models",
        description=(
            "Embed each line of FILE with K text models; writes [T, L, K] float32 (narrower models zero-padded)."
        ),
    )
    e.add_argument("--texts", required=True, metavar="FILE", help="texts, one per line")
    e.add_argument("--out", required=True, metavar="FILE.npy", help="output .npy file")
    e.add_argument("--embedders", nargs="+", metavar="NAME", help="text models (default: the offline defaults)")
    e.add_argument("--no-cache", action="store_true", help="do not use the on-disk embedding cache")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_embed)

    v = sub.add_parser(
        "evaluate",
        help="compare a ranking with ground truth",
        description=(
            "Weighted Kendall tau (scipy.stats.weightedtau), Kendall tau, Pearson and Rel@k of the scores "
            "against ground-truth values (e.g. fine-tuned accuracies)."
        ),
    )
    v.add_argument("--scores", required=True, metavar="FILE.json", help="emms rank --out output, or {model: score}")
    v.add_argument("--truth", required=True, metavar="FILE.json", help="{model: ground-truth value}")
    v.add_argument("--top-k", type=int, nargs="+", default=[1, 3], help="k values for Rel@k (default: 1 3)")
    v.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(func=cmd_evaluate)

    d = sub.add_parser(
        "demo",
        help="rank a small zoo on scikit-learn digits",
        description=(
            "Six feature extractors on scikit-learn's digits, ranked by EMMS with F-labels from the offline text "
            "models, next to a probe's held-out accuracy."
        ),
    )
    d.add_argument("--embedders", nargs="+", metavar="NAME", help="text models (default: the offline defaults)")
    d.add_argument("--plot", metavar="FILE.png", help="also write the plot with the ground-truth scatter")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    """Entry point of the ``emms`` command: parse ``argv`` (default ``sys.argv[1:]``), run the subcommand and
    return its exit code (0 ok, 2 usage or input error, 1 other failure, 130 interrupted)."""
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
    except Exception as exc:  # the CLI never shows a traceback unless --debug
        if args.debug:
            raise
        print(
            f"emms {args.command}: failed: {type(exc).__name__}: {exc} (rerun with emms --debug {args.command} "
            "... for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
