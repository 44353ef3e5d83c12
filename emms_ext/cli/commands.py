"""The ``emms`` subcommands: ``rank``, ``embed``, ``evaluate`` (with ``agreement``) and ``demo``; each takes
the parsed arguments and returns an exit code (``emms_ext.cli`` builds the parser and runs them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..selection.evaluate import evaluate
from ..selection.features import feature_files
from ..selection.rank import rank
from .inputs import (
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    _need_file,
    read_array,
    read_json,
    read_jsonl,
    read_labels,
    read_lines,
)


# -------------------------------------------------------------------------------------- subcommands
def cmd_rank(args) -> int:
    """``emms rank``: score every feature file in ``--features`` on the labels (or ready F-labels), print the
    ranking and write the requested JSON / CSV / plot; exit code 2 when no model could be scored."""
    if args.models or args.dataset:
        return _rank_dataset(args)
    if not args.features:
        raise UsageError("rank needs --features DIR (feature files), or --models with --dataset")
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
            from ..core.labels import ClassLabels

            target = ClassLabels(arr, np.asarray(y, dtype=np.int64)) if len(arr) != len(y) else arr
        else:
            target = arr
    else:
        target = _task_target(args, class_names)
    options = {}
    if args.ridge is not None:
        options["ridge"] = args.ridge
    if args.templates:
        options["templates"] = tuple(args.templates)
    if args.reduce is not None:
        options["reduce"] = args.reduce
    options.update(_error_bar_options(args))
    progress = False if args.quiet else None
    result = rank(
        {name: str(path) for name, path in files.items()},
        target,
        args.metric,
        task=args.task,
        class_names=class_names,
        embedders=args.embedders or None,
        device=args.device,
        progress=progress,
        **options,
    )
    return _report(result, args)


def _load_dataset(path: str):
    """A dataset from disk (save_to_disk folder, or a CSV / JSON / Parquet file) or, online, the hub."""
    try:
        import datasets
    except ImportError as exc:
        raise UsageError("--dataset needs the datasets package: pip install 'emms_ext[hf]'") from exc
    p = Path(path)
    if p.is_dir():
        return datasets.load_from_disk(str(p))
    kinds = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
    if p.is_file():
        if p.suffix not in kinds:
            raise UsageError(f"--dataset {path}: expected a save_to_disk folder or {sorted(kinds)} (got {p.suffix})")
        return datasets.load_dataset(kinds[p.suffix], data_files=str(p), split="train")
    return datasets.load_dataset(path, split="train")


def _rank_dataset(args) -> int:
    """``emms rank --models ... --dataset ...``: model folders run over a dataset's input column."""
    if not (args.models and args.dataset):
        raise UsageError("--models and --dataset go together (model folders run over the dataset's inputs)")
    if not args.label_column or not (args.text_column or args.image_column):
        raise UsageError("--dataset needs --label-column and one of --text-column / --image-column")
    layers = args.layers
    if layers not in ("last", "all", "mean"):
        try:
            layers = [int(v) for v in layers.split(",")]
        except ValueError as exc:
            raise UsageError(f"--layers: last, all, mean or comma-separated integers (got {layers!r})") from exc
    sample = None if args.sample is None else (int(args.sample) if args.sample >= 1 else float(args.sample))
    result = rank(
        [m for m in args.models.split(",") if m],
        _load_dataset(args.dataset),
        args.metric,
        task=args.task,
        embedders=args.embedders or None,
        device=args.device,
        progress=False if args.quiet else None,
        text_column=args.text_column,
        image_column=args.image_column,
        label_column=args.label_column,
        layers=layers,
        sample=sample,
        **_error_bar_options(args),
    )
    return _report(result, args)


def _error_bar_options(args) -> dict:
    """rank()'s uncertainty options from ``--uncertainty [--folds F] [--seed S]``."""
    if not args.uncertainty:
        if args.folds is not None or args.seed is not None:
            raise UsageError("--folds / --seed set the error bars: add --uncertainty")
        return {}
    return {"uncertainty": True, "folds": 10 if args.folds is None else args.folds, "seed": args.seed or 0}


def _report(result, args) -> int:
    """Print / write the ranking as asked; the exit code."""
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
        print(
            f"error: no model could be scored ({len(result.failures)} failed; reasons above); fix the feature "
            "files so that each is a finite float [N, D] matrix with N = the number of labels",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return EXIT_OK


_TEXT_TASKS = {"captioning": "texts", "free_text": "texts", "vqa": "answers", "text_qa": "answers"}


def _task_target(args, class_names):
    """What ``rank`` takes as the target of ``args.task``, read from the files that task needs."""
    task = args.task
    if task in _TEXT_TASKS:
        flag = _TEXT_TASKS[task]
        if getattr(args, flag) is None:
            raise UsageError(f"--task {task} needs --{flag} FILE.jsonl (one JSON string or list of strings per sample)")
        values = read_jsonl(getattr(args, flag), flag)
        if task == "text_qa" and not all(isinstance(v, str) for v in values):
            raise UsageError("--answers: text_qa takes one answer string per sample")
        return values
    if task == "referring":
        missing = [f for f in ("texts", "boxes", "image_sizes") if getattr(args, f) is None]
        if missing:
            raise UsageError(f"--task referring needs {', '.join('--' + m.replace('_', '-') for m in missing)}")
        expressions = read_jsonl(args.texts, "texts")
        if not all(isinstance(e, str) for e in expressions):
            raise UsageError("--texts: referring takes one expression string per sample")
        boxes = read_array(args.boxes, "boxes", "[N, 4]")
        sizes = read_array(args.image_sizes, "image-sizes", "[N, 2]")
        n = len(expressions)
        if boxes.shape != (n, 4) or sizes.shape != (n, 2):
            raise UsageError(
                f"--boxes must be [N, 4] and --image-sizes [N, 2] with N = {n} expressions "
                f"(got {list(boxes.shape)} and {list(sizes.shape)})"
            )
        from ..embed import referring_expression_labels

        return referring_expression_labels(expressions, boxes, sizes, args.embedders or None)
    if not args.labels:
        raise UsageError("give --labels FILE (or --label-embeddings FILE.npy with ready F-labels)")
    if task == "multilabel":
        y = read_array(args.labels, "labels", "[N, C] of 0/1")
        if y.ndim != 2 or class_names is None or y.shape[1] != len(class_names):
            raise UsageError(
                "--task multilabel needs --labels .npy [N, C] of 0/1 and --class-names with C names "
                f"(got labels {list(y.shape)} and {0 if class_names is None else len(class_names)} names)"
            )
        return y
    target = read_labels(args.labels, regression=task == "regression")
    if task == "classification" and class_names is None and not isinstance(target, list):
        raise UsageError(
            "--labels holds class indices: give --class-names FILE (one class name per line, "
            "in index order) so the names can be embedded as F-labels"
        )
    return target


def cmd_embed(args) -> int:
    """``emms embed``: embed each line of ``--texts`` with K text models and save them as one float32
    ``[T, L, K]`` .npy (narrower models zero-padded to the widest L)."""

    from ..embed import embed_texts

    texts = read_lines(args.texts, "texts")
    blocks = embed_texts(texts, args.embedders or None, cache=False if args.no_cache else "default")
    L = max(b.shape[1] for b in blocks)
    out = np.zeros((len(texts), L, len(blocks)), dtype=np.float32)
    for k, b in enumerate(blocks):
        out[:, : b.shape[1], k] = b.numpy()
    np.save(args.out, out)
    if not args.quiet:
        print(
            f"{len(texts)} texts x K={len(blocks)} models (widths {[b.shape[1] for b in blocks]}, zero-padded "
            f"to {L}) -> {args.out} [N, L, K]"
        )
    return EXIT_OK


def agreement(scores: dict, truth: dict, top_k=(1, 3)) -> dict:
    """``evaluate(scores, truth)`` (tau_w, Kendall tau, Pearson, Rel@k over the models both name), with a
    mismatch of model names reported as a usage error."""
    try:
        return evaluate(scores, truth, ks=top_k)
    except ValueError as exc:
        raise UsageError(f"{exc}; check that the model names in --scores and --truth match") from exc


def cmd_evaluate(args) -> int:
    """``emms evaluate``: print (or, with ``--json``, dump) how well ``--scores`` rank the models against
    ``--truth`` (tau_w, Kendall tau, Pearson, Rel@k)."""
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
    """A self-contained demo of the installed package: scikit-learn digits, a zoo of six feature extractors,
    F-labels from the offline text models, EMMS vs a logistic-regression probe's held-out accuracy."""

    try:
        from sklearn.datasets import load_digits
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        raise ImportError("emms demo needs scikit-learn: pip install scikit-learn scipy") from exc

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    rng = np.random.default_rng(0)
    zoo = {"pixels-64": (Xtr, Xte)}
    for k in (4, 16):
        pca = PCA(k, random_state=0).fit(Xtr)
        zoo[f"PCA-{k}"] = (pca.transform(Xtr), pca.transform(Xte))
    pool = lambda A: A.reshape(-1, 4, 2, 4, 2).mean((2, 4)).reshape(len(A), 16)
    zoo["2x2-pool-16"] = (pool(Xtr), pool(Xte))
    P = rng.standard_normal((64, 6))
    zoo["random-proj-6"] = (Xtr @ P, Xte @ P)
    zoo["noisy-pixels"] = (Xtr + 6 * rng.standard_normal(Xtr.shape), Xte + 6 * rng.standard_normal(Xte.shape))

    def probe(a, b):
        sc = StandardScaler().fit(a)
        return float(LogisticRegression(max_iter=2000).fit(sc.transform(a), ytr).score(sc.transform(b), yte))

    truth = {n: probe(a, b) for n, (a, b) in zoo.items()}
    result = rank(
        {n: a for n, (a, _) in zoo.items()},
        ytr,
        "emms",
        class_names=DIGITS,
        embedders=args.embedders or None,
        templates=("a photo of the handwritten digit {}.",),
        progress=False if args.quiet else None,
    )
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
