"""The EMMS score API: one model (``emms_score``) or a whole zoo (``emms_scores``).

Per model the work is: stream the features once into sufficient statistics (stats.py), factor the
standardized Gram, and reduce everything to the K x K matrix ``B``; the per-task label statistics (``A``,
the label basis) are computed once (labels.py); all models' K x K problems then go to one call of the
fused op ``emms::wlsr_simplex`` (pipeline.py). Nothing of size N x L is formed per model
(docs/design.md §2).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping

import numpy as np
import torch

from ..common.validate import describe
from ..ops.operators import MODES
from .evidence import EVIDENCE_MODE, evidence_scores
from .folds import (
    assign_folds,
    check_fold_assignment,
    fold_subsets,
    jackknife_stderr,
    label_classes,
    subset_labels,
    take_rows,
)
from .jackknife import FOLD_STAT_MODES, fold_labels, fold_scores
from .labels import prepare_labels
from .out_of_sample import OUT_OF_SAMPLE_MODES
from .pipeline import ScoreOptions, score_zoo
from .results import EMMSDegeneracyWarning, EMMSResult, ZooScores

__all__ = ["EMMSDegeneracyWarning", "EMMSResult", "ZooScores", "emms_score", "emms_scores"]


# The modes that take features as an iterable of chunks: their sufficient statistics are all they need
# ("loo" and "evidence" need the rows themselves).
STREAMING_MODES = (*MODES, "gcv")


def _ridge_grid(ridge, mode: str) -> torch.Tensor | None:
    """The out-of-sample modes' ridge grid: None (the default relative grid) or positive finite ridges."""
    if ridge is None:
        return None
    try:
        grid = torch.as_tensor(ridge if not isinstance(ridge, (int, float)) else [ridge], dtype=torch.float64)
    except (TypeError, ValueError):
        grid = None
    if grid is None or grid.dim() != 1 or grid.numel() == 0 or not bool((torch.isfinite(grid) & (grid > 0)).all()):
        raise ValueError(
            f"with mode={mode!r}, ridge must be None (a default grid) or a sequence of finite ridges "
            f"> 0 to choose from (got {ridge!r})"
        )
    return grid


def _check_options(mode: str, ridge, max_iter: int, tol: float):
    """The validated ridge for ``mode`` (None, a number > 0, "gcv", or an out-of-sample grid)."""
    if mode not in MODES and mode not in OUT_OF_SAMPLE_MODES and mode != EVIDENCE_MODE:
        known = sorted(MODES) + list(OUT_OF_SAMPLE_MODES) + [EVIDENCE_MODE]
        raise ValueError(f"mode must be one of {known} (got {mode!r})")
    if mode == EVIDENCE_MODE:
        if ridge is not None:
            raise ValueError("mode='evidence' chooses its regularization by the evidence: ridge must be None")
        return None
    if mode in OUT_OF_SAMPLE_MODES:
        return _ridge_grid(ridge, mode)
    if isinstance(ridge, str):
        if ridge != "gcv":
            raise ValueError(f"ridge must be None, a finite number >= 0 or 'gcv' (got {ridge!r})")
        if mode == "reference":
            raise ValueError(
                "ridge is not part of the released algorithm that mode='reference' reproduces; "
                "use mode='exact' or 'alternating' with ridge"
            )
    elif ridge is not None:
        if not (isinstance(ridge, (int, float)) and math.isfinite(ridge) and ridge >= 0):
            raise ValueError(f"ridge must be None, a finite number >= 0 or 'gcv' (got {ridge!r})")
        if mode == "reference" and ridge > 0:
            raise ValueError(
                "ridge is not part of the released algorithm that mode='reference' reproduces; "
                "use mode='exact' or 'alternating' with ridge"
            )
        ridge = float(ridge) or None
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1 (got {max_iter})")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0 (got {tol})")
    return ridge


_COMMON_ARGS = """
        mode: ``"exact"`` (the WLSR optimum), ``"alternating"`` (the paper's Algorithm 1 to convergence) or
            ``"reference"`` (the released code's single step and scaling): the paper's in-sample score.
            Out of sample: ``"gcv"`` (minus the generalized cross-validation error of the ridge fit of the
            label mixture, minimized jointly over t and a ridge grid) or ``"loo"`` (the same with exact
            leave-one-out residuals; in-memory features only). ``"evidence"``: the mixture t that maximizes
            LogME's Bayesian evidence of ``Z t`` (alpha, beta per label dimension by MacKay's fixed point),
            scored by that evidence per sample and label dimension; features used as given, like LogME;
            in-memory features only. See docs/design.md §3.
        ridge: None for the paper's least squares; lambda > 0 to minimize ``||XW - Zt||^2 + lambda ||W||^2``
            (sklearn Ridge's alpha on the standardized features), which keeps D >= N models apart; or
            ``"gcv"`` to choose lambda per model by generalized cross-validation (reported in ``.ridge``).
            With mode "gcv" / "loo": None (29 ridges from 1e-6 to 10 times the mean eigenvalue of the
            standardized Gram) or the sequence of ridges to choose from.
        return_W: also return the regression weights ``W [D, L]`` acting on the standardized features.
        max_iter, tol: stopping rule of ``mode="alternating"``.
        precision: the Gram GEMMs' precision: ``"float64"``, ``"float32"`` or ``"tf32"`` (TF32 tensor cores
            on CUDA; float32 elsewhere). Default: float64 for float64 features, float32 otherwise.
            Factorizations and the K x K solves are always float64.
        device: where the statistics are computed (e.g. ``"cuda"``); default: the features' device
            (CPU for numpy arrays and iterables).
        chunk_size: rows per chunk for in-memory features.
        progress: show a progress bar (default: for zoos of 32 models or more, if tqdm is installed).
        folds: None (default, no extra cost) or F >= 2: also score each model on the F leave-one-fold-out
            subsets and fill
            ``EMMSResult.fold_scores [F]`` and ``EMMSResult.stderr`` (delete-a-group jackknife). Folds are
            stratified by class for class labels and identical for every model of the zoo, so fold scores
            are paired across models. Or a ready ``[N]`` int fold of each sample (``folds.assign_folds``),
            to pair the scores with another metric's. Cost: ``exact`` / ``alternating`` / ``reference``
            without a ridge downdate the full fit (about 2x a plain score at any F, docs/design.md §3);
            ``gcv``, ``loo`` and a ridge refit each subset's statistics at the model's ridge (the full
            data's GCV / LOO choice held; one Cholesky factorization per fold, about 3x); ``evidence``
            re-scores the zoo on each subset (F extra scorings, batched; in-memory features only). A stream
            accumulates its folds' statistics in its one pass (up to ``ingest.STREAM_FOLD_BUDGET`` = 2 GiB
            of them per model, else a ValueError) and refits each subset from them.
        seed: the seed of the fold assignment."""


def emms_score(
    features,
    label_embeddings,
    mode: str = "exact",
    ridge: float | None = None,
    *,
    return_W: bool = False,
    max_iter: int = 10_000,
    tol: float = 1e-12,
    precision=None,
    device=None,
    chunk_size: int = 16384,
    progress: bool | None = False,
    folds: int | torch.Tensor | None = None,
    seed: int = 0,
) -> EMMSResult:
    """EMMS transferability of one model: higher is better.

    Features alone do not say which model made them, so a candidate that is (part of) one of the F-label
    embedders goes unseen here, and on free-text labels it scores too high: take F-labels from models that
    are not candidates. ``rank()``, which sees the models, finds such overlaps and can use only embedders
    outside the zoo (``embedders="outside"``).

    Args:
        features: ``[N, D]`` torch tensor or numpy array (any float dtype, any strides), or an iterable of
            ``[n_i, D]`` chunks (streamed; O(D^2) memory).
        label_embeddings: F-labels: ``[N, L, K]``; a list of K arrays ``[N, L_k]`` (each standardized, then
            zero-padded to the widest); or ``ClassLabels(table, indices)`` / ``(table, indices)`` with
            ``table [C, L, K]`` class embeddings and ``indices [N]``. Dense labels whose rows take at most
            N/2 distinct values are detected and handled in the class basis automatically. Several label
            rows per sample: ``FreeTextLabels`` (the features ``[N, D]`` are repeated once per row).{common}
    """
    # One model is a zoo of one, named None so that messages say "features".
    return emms_scores(
        {None: features},
        label_embeddings,
        mode,
        ridge,
        return_W=return_W,
        max_iter=max_iter,
        tol=tol,
        precision=precision,
        device=device,
        chunk_size=chunk_size,
        errors="raise",
        progress=progress,
        folds=folds,
        seed=seed,
    )[None]


def emms_scores(
    zoo,
    label_embeddings,
    mode: str = "exact",
    ridge: float | None = None,
    *,
    return_W: bool = False,
    max_iter: int = 10_000,
    tol: float = 1e-12,
    precision=None,
    device=None,
    chunk_size: int = 16384,
    errors: str = "raise",
    progress: bool | None = None,
    folds: int | torch.Tensor | None = None,
    seed: int = 0,
) -> ZooScores:
    """EMMS for a zoo: ``zoo`` is a dict name -> features or a list of features (keys 0, 1, ...).

    The label statistics are computed once and shared; in-memory models of equal width are batched (every
    GEMM and Cholesky runs over the batch); all K x K problems are solved in one op call. As with
    ``emms_score``, a candidate that is (part of) an F-label embedder cannot be seen from its features.

    Args:
        zoo: dict name -> features (or a list); features as in ``emms_score``.
        label_embeddings: as in ``emms_score``.
        errors: ``"raise"`` (default) stops at the first model with bad features; ``"skip"`` scores the
            others and records the reason in ``result.failures``.{common}

    Returns a ``ZooScores`` dict (name -> EMMSResult) with ``.scores``, ``.order`` and ``.failures``.
    """
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip' (got {errors!r})")
    opts = ScoreOptions(
        mode=mode,
        ridge=_check_options(mode, ridge, max_iter, tol),
        return_W=return_W,
        max_iter=int(max_iter),
        tol=float(tol),
        precision=precision,
        device=device,
        chunk_size=chunk_size,
        errors=errors,
        progress=progress,
    )
    if isinstance(zoo, Mapping):
        items = list(zoo.items())
    elif isinstance(zoo, (list, tuple)):
        items = list(enumerate(zoo))
    else:
        raise ValueError(f"zoo must be a dict name -> features or a list of features (got {describe(zoo)})")
    basis, batches = prepare_labels(label_embeddings), []
    fold_of = None
    if folds is not None:
        if torch.is_tensor(folds) or isinstance(folds, np.ndarray):
            fold_of = check_fold_assignment(folds, basis.n_samples)
        else:
            fold_of = assign_folds(basis.n_samples, folds, seed=seed, classes=label_classes(label_embeddings))
    if mode == EVIDENCE_MODE:
        scores = evidence_scores(items, basis, errors, progress)
    else:
        # Streams accumulate their folds' statistics in the same pass where the fold scores come from them.
        stream_folds = fold_of if mode in FOLD_STAT_MODES and basis.rows_per_sample is None else None
        scores = score_zoo(items, basis, opts, batches if folds is not None else None, stream_folds)
    if folds is not None:
        _add_jackknife(scores, dict(items), label_embeddings, opts, fold_of, basis, batches)
    return scores


def _add_jackknife(
    scores: ZooScores, features: dict, label_embeddings, opts: ScoreOptions, fold_of: torch.Tensor, basis, batches: list
):
    """Fill ``fold_scores`` / ``stderr`` of every scored model on the F leave-one-fold-out subsets (one fold
    assignment for the whole zoo, so the models' fold scores are paired). The in-sample modes without a ridge
    take them from the full data's statistics by exact downdates, ``gcv``, ``loo`` and ridges by refits at the
    model's ridge (jackknife.py); every other model is re-scored on each subset (one batched zoo call per fold, so the
    label work and the fused solve are shared)."""
    if not scores:
        return
    subsets = fold_subsets(fold_of)
    sub_opts = dataclasses.replace(opts, return_W=False, errors="skip", progress=False)
    done = {}
    if opts.mode in FOLD_STAT_MODES and basis.rows_per_sample is None:
        fl = fold_labels(label_embeddings, basis, fold_of)
        if fl is not None:
            done = fold_scores(batches, basis, fl, opts)
    for name, values in done.items():
        scores[name].fold_scores = values
        scores[name].stderr = jackknife_stderr(values)
    in_memory, why = {}, {}
    stream_folds = {name: b.fold_stats for b in batches if b.xs is None for name in b.names}
    for name in scores:
        if name in done:
            continue
        x = features[name]
        if torch.is_tensor(x) or isinstance(x, np.ndarray):
            in_memory[name] = x
        elif isinstance(stream_folds.get(name), str):
            why[name] = stream_folds[name]
        elif isinstance(stream_folds.get(name), list):
            why[name] = (
                "a leave-one-fold-out subset of this stream loses a varying column or has a singular Gram; "
                "re-scoring the subsets needs in-memory features [N, D]"
            )
        else:
            why[name] = (
                f"folds on a stream need mode 'exact', 'alternating', 'reference' or 'gcv' (got {opts.mode!r}) and "
                f"one label row per sample; else in-memory features [N, D] (tensor or array); got {describe(x)}"
            )
    per_fold = {name: [] for name in in_memory}
    for keep in subsets if in_memory else []:
        labels = prepare_labels(subset_labels(label_embeddings, keep))
        items = [(name, take_rows(x, keep)) for name, x in in_memory.items()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the full-data call already warned; F repeats add nothing
            res = (
                evidence_scores(items, labels, "skip", False)
                if opts.mode == EVIDENCE_MODE
                else score_zoo(items, labels, sub_opts)
            )
        for name in list(per_fold):
            if name in res:
                per_fold[name].append(res[name].score)
            else:
                why[name] = f"a leave-one-fold-out subset failed: {res.failures.get(name, 'not scored')}"
                del per_fold[name]
    if why and opts.errors == "raise":
        name, reason = next(iter(why.items()))
        raise ValueError(f"model {name!r}: {reason}")
    for name, reason in why.items():
        scores[name].warnings.append(f"no standard error: {reason}")  # the score itself stands
    for name, values in per_fold.items():
        scores[name].fold_scores = torch.tensor(values, dtype=torch.float64)
        scores[name].stderr = jackknife_stderr(scores[name].fold_scores)


emms_score.__doc__ = emms_score.__doc__.format(common=_COMMON_ARGS)
emms_scores.__doc__ = emms_scores.__doc__.format(common=_COMMON_ARGS)
