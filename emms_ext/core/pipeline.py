"""The scoring pipeline behind ``emms_score`` / ``emms_scores`` (docs/design.md §2, §3).

    features -> statistics per batch of equal-width models (ingest.py, stats.py)
             -> a Gram factorization per batch (factor.py; the automatic float64 fallback)
             -> the K x K matrices B of every model (or every (model, ridge) pair out of sample)
             -> one fused ``emms::wlsr_simplex`` call for the whole zoo
             -> one ``EMMSResult`` per model.

What differs between the in-sample modes and the out-of-sample ones lives in two small strategies
(``_InSample``, ``_OutOfSample``); the pipeline itself does not branch on the mode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import compress

import torch

from ..common.progress import progress_bar
from ..common.validate import check_features, check_finite
from ..common.warn import warn
from ..ops.operators import wlsr_simplex
from .factor import ExactFitFactor, Factor, kernel_exact_fit, make_factor
from .ingest import (
    batch_stats,
    compute_precision,
    in_memory_features,
    model_groups,
    recheck,
    resolve_precision,
    stream_stats,
    weighted_rows,
)
from .labels import LabelBasis
from .out_of_sample import OUT_OF_SAMPLE_MODES, make_out_of_sample
from .results import EMMSDegeneracyWarning, EMMSResult, ZooScores
from .stats import StandardizedStats, kernel_gram, kernel_stats


@dataclass(frozen=True)
class ScoreOptions:
    """The validated options of one ``emms_score`` / ``emms_scores`` call (see their docstrings).

    ``ridge``: None or a number for the in-sample modes, ``"gcv"`` for a GCV-chosen ridge, or a ``[G]``
    float64 grid (None: the default grid) for the out-of-sample modes.
    """

    mode: str = "exact"
    ridge: object = None
    return_W: bool = False
    max_iter: int = 10_000
    tol: float = 1e-12
    precision: str | None = None
    device: object = None
    chunk_size: int = 16384
    errors: str = "raise"
    progress: bool | None = None


def degeneracy_message(name: str, D: int, N: int) -> str:
    """The warning for a model whose in-sample fit is exact (D >= N - 1 varying columns, or a residual
    below ``DEGENERATE_RTOL``)."""
    why = (
        f"{D} varying feature columns >= N - 1 = {N - 1} samples, so least squares fits every label embedding exactly"
        if D >= N - 1
        else "the features fit the label embeddings exactly (residual at rounding level)"
    )
    return (
        f"{name}: {why}. Its score is set to exactly 0 (degenerate = True) and ties with every other such "
        "model (a known EMMS degeneracy). Use mode='gcv' (the out-of-sample score: ridge fit judged by "
        "generalized cross-validation), or ridge='gcv' / ridge=<lambda> (sklearn Ridge's alpha on the "
        "standardized features) to get scores that discriminate, or use more samples."
    )


def degenerate_fits(st: StandardizedStats, obj: torch.Tensor, L: int) -> torch.Tensor:
    """[M] bool: the unregularized in-sample fit is exact — numerical rank (varying columns, or kernel
    components) >= N - 1, or a residual per sample and label dimension ``obj / (N L)`` at most
    ``sqrt(eps)`` of the Gram's precision (the label columns are z-scored: ``||Z t||^2 <= N L``). Such a
    residual is rounding noise whose sign and order follow the BLAS's summation order (docs/design.md §3)."""
    full_rank = st.keep.sum(1).to(obj.device) >= st.N - 1
    return full_rank | (obj <= st.eps**0.5 * st.N * L)


class _InSample:
    """``exact`` / ``alternating`` / ``reference``: one K x K problem per model; the score is the residual."""

    def __init__(self, opts: ScoreOptions, basis: LabelBasis):
        self.opts, self.basis = opts, basis
        self.solver_mode = opts.mode
        # Whether a model whose fit is exact may skip its factorization (it scores 0 whatever B); not with a
        # ridge (no exact fit) nor when the weights W are asked for (they need the factor).
        self.exact_fits_tie = opts.ridge is None and not opts.return_W

    def factorize(self, st: StandardizedStats, xs: list[torch.Tensor] | None) -> tuple[Factor, torch.Tensor]:
        """(factor, B [M, K, K]) of a batch."""
        basis = self.basis.to(st.G.device)  # ridge="gcv": GCVFactor multiplies by the class table there
        factor = make_factor(st, self.opts.ridge, basis)
        return factor, basis.B_from_half(factor.half(st.F))

    def finish(self, factor: Factor, st: StandardizedStats, t, obj, its):
        """(t [M, K], objective [M], iterations [M], score [M], degenerate [M] bool) from the batch's
        solutions. An exact unregularized fit scores exactly 0 with the uniform t (any t fits) and 0
        iterations: the same value and order whatever the thread count, instead of rounding noise of either
        sign."""
        L, N = self.basis.L, st.N
        if self.opts.ridge is None:
            degenerate = degenerate_fits(st, obj, L)
            obj = torch.where(degenerate, torch.zeros_like(obj), obj)
            t = torch.where(degenerate[:, None], torch.full_like(t, 1.0 / t.shape[1]), t)
            its = torch.where(degenerate, torch.zeros_like(its), its)  # t is not the solver's
        else:
            degenerate = torch.zeros_like(obj, dtype=torch.bool)
        score = -obj / N * L if self.opts.mode == "reference" else -obj / (N * L)
        return t, obj, its, score + 0.0, degenerate  # + 0.0: no -0.0

    def notes(self, name, st: StandardizedStats, degenerate: bool, D_used: int) -> list[str]:
        """The degeneracy warning when the model's unregularized fit is exact."""
        if degenerate:
            return [degeneracy_message("features" if name is None else f"model {name!r}", D_used, st.N)]
        return []


class _OutOfSample(_InSample):
    """``gcv`` / ``loo``: one K x K problem per (model, ridge); each model keeps its best ridge."""

    def __init__(self, opts: ScoreOptions, basis: LabelBasis):
        super().__init__(opts, basis)
        self.solver_mode = "exact"  # per ridge, the minimization over t is EMMS's exact simplex QP
        self.exact_fits_tie = False  # out-of-sample scores do not degenerate

    def factorize(self, st, xs):
        """(factor, B [M, K, K]) at each model's ridge: the batch's ridge grid is solved here (one K x K problem
        per (model, ridge)), each model picks its ridge, and B is that ridge's (recomputed from a Cholesky
        factor where the factor allows, so that its bits do not follow the thread count)."""
        basis = self.basis.to(st.G.device)  # GCVFactor multiplies by the class table on the statistics' device
        factor = make_out_of_sample(self.opts.mode, st, basis, self.opts.ridge, xs)
        grid_B = factor.grid_B(basis)
        M, G, K = grid_B.shape[0], grid_B.shape[1], basis.K
        _, obj, _ = wlsr_simplex(basis.A, grid_B.reshape(M * G, K, K), "exact", self.opts.max_iter, self.opts.tol)
        factor.pick(obj.view(M, G), basis.L)
        return factor, factor.B_at_choice(basis, grid_B)

    def finish(self, factor, st, t, obj, its):
        """The score at each model's ridge: minus its estimated out-of-sample error per label dimension."""
        score = factor.score(obj.to(factor.lam.device), self.basis.L).to(obj.device)
        return t, obj, its, score, torch.zeros(len(factor.methods), dtype=torch.bool)

    def notes(self, name, st, degenerate, D_used):
        """Out-of-sample scores do not degenerate."""
        return []


def strategy_for(opts: ScoreOptions, basis: LabelBasis) -> _InSample:
    """The strategy of ``opts.mode``: ``_OutOfSample`` for gcv / loo, else ``_InSample``."""
    return (_OutOfSample if opts.mode in OUT_OF_SAMPLE_MODES else _InSample)(opts, basis)


@dataclass
class Batch:
    """Models scored together: their names, statistics, factor and K x K problems ``B``, and their
    in-memory features ``xs`` (None for a stream)."""

    names: list
    st: StandardizedStats
    factor: Factor
    B: torch.Tensor
    xs: list | None = None
    # A stream's per-fold accumulators (``ingest.stream_stats`` with a fold assignment), or why it has none.
    fold_stats: list | str | None = None


def exact_fit_batch(names: list, used: torch.Tensor, D: int, basis: LabelBasis) -> Batch:
    """The batch of kernel-form models found of rank N - 1 (``kernel_exact_fit``): statistics that say only
    that (N - 1 kept directions, ``used [M]`` varying columns of ``D``), a factor that keeps nothing, and B = 0. The
    in-sample strategy's ``finish`` scores them exactly 0 (``degenerate_fits``), as the eigendecomposition path
    would."""
    M, N = len(names), basis.N
    keep = torch.ones(M, N - 1, dtype=torch.bool, device=used.device)
    st = StandardizedStats(N=N, D=D, keep=keep, G=None, F=None, eps=torch.finfo(torch.float64).eps, used=used)
    return Batch(
        names, st, ExactFitFactor(M), torch.zeros(M, basis.K, basis.K, dtype=torch.float64, device=used.device)
    )


def _label(name) -> str:
    return "features" if name is None else f"features[{name!r}]"


def score_zoo(
    items: list,
    basis: LabelBasis,
    opts: ScoreOptions,
    batches_out: list | None = None,
    fold_of: torch.Tensor | None = None,
) -> ZooScores:
    """Score every ``(name, features)`` of ``items`` against one task's label ``basis``.

    Features are ``[N, D]`` tensors / arrays (batched by width) or iterables of chunks (streamed one by
    one). With ``opts.errors == "skip"`` a model with bad features is recorded in ``failures`` and the
    others are scored; the result keeps the order of ``items``. ``batches_out``: a list that receives the
    ``Batch``es (statistics and factors), for the jackknife (jackknife.py); ``fold_of [N]``: the jackknife's
    fold of each sample, whose per-fold statistics streams then also accumulate.
    """
    strategy = strategy_for(opts, basis)
    failures: dict = {}

    def fail(name, exc):
        if opts.errors == "raise":
            raise exc
        failures[name] = str(exc)
        warn(f"model {name!r} skipped: {exc}")

    tensors, streams, precisions = {}, {}, {}
    for name, features in items:
        try:
            # No pass over the values here: non-finite or too large features show in their batch's
            # statistics (StandardizedStats.overflow) and only those models are re-read (ingest.recheck).
            x = in_memory_features(features, _label(name), basis.n_samples, finite=False)
            if x is None:
                streams[name] = features if basis.rows_per_sample is None else _repeated(features, basis, name)
            else:
                if x.shape[1] > basis.N:  # the kernel form (float64, no overflow flag): checked up front
                    check_finite(x, _label(name), f" in rows 0..{x.shape[0] - 1}")
                    precisions[name] = compute_precision(x, opts.precision, _label(name), basis.N)
                else:
                    precisions[name] = resolve_precision(opts.precision, x.dtype)
                # Several label rows per sample: weighted statistics where they apply, else one row each.
                weighted = weighted_rows(basis, x.shape[1], opts.mode in OUT_OF_SAMPLE_MODES)
                tensors[name] = x if weighted else basis.repeat_rows(x)
        except ValueError as exc:
            fail(name, exc)

    bar = progress_bar(
        len(tensors) + len(streams), "EMMS", "model", opts.progress, auto=len(tensors) + len(streams) >= 32
    )
    batches = _in_memory_batches(
        tensors, precisions, basis, strategy, opts, bar, fail, dict(items), compact=batches_out is None
    )
    for name, features in streams.items():
        try:
            st, fold_stats = stream_stats(
                features, basis, _label(name), opts.precision, opts.device, opts.chunk_size, fold_of
            )
            factor, B = strategy.factorize(st, None)
        except ValueError as exc:
            fail(name, exc)
            continue
        if (
            opts.precision is None
            and st.eps > torch.finfo(torch.float64).eps
            and bool(factor.ill_conditioned(st.eps)[0])
        ):
            warn(
                f"{_label(name)}: the float32 Gram of these streamed features is ill-conditioned "
                f"(condition >= {float(factor.cond[0]):.1e}); its score may be off in the leading "
                "digits. Pass precision='float64' (streams cannot be re-read automatically)."
            )
        batches.append(Batch([name], st, factor, B, fold_stats=fold_stats))
        bar.update(1)
    bar.close()
    if batches_out is not None:
        batches_out.extend(batches)
    if not batches:
        return ZooScores({}, failures)

    # One fused solve for the whole zoo, on the device of the first batch.
    solve_dev = batches[0].B.device
    t_all, obj_all, its_all = wlsr_simplex(
        basis.A.to(solve_dev),
        torch.cat([b.B.to(solve_dev) for b in batches]),
        strategy.solver_mode,
        opts.max_iter,
        opts.tol,
    )
    results, offset = {}, 0
    for b in batches:
        sl = slice(offset, offset + b.B.shape[0])
        offset += b.B.shape[0]
        t, obj, its, score, degenerate = strategy.finish(b.factor, b.st, t_all[sl], obj_all[sl], its_all[sl])
        results.update(_results(b, t, obj, its, score, degenerate, basis, strategy, opts))
    return ZooScores({name: results[name] for name, _ in items if name in results}, failures)


def _repeated(chunks, basis: LabelBasis, name):
    """A stream of ``[n_i, D]`` feature chunks, checked against the S samples, each sample's row repeated
    once per label row (FreeTextLabels with several rows per sample)."""
    seen, width = 0, None
    for i, chunk in enumerate(chunks):
        x = check_features(chunk, f"{_label(name)} chunk {i}", N=basis.n_samples, width=width, seen=seen)
        yield basis.repeat_rows(x, seen)
        seen, width = seen + x.shape[0], x.shape[1]
    if seen != basis.n_samples:
        raise ValueError(
            f"{_label(name)} must be [N, D] with N == {basis.n_samples} (the label embeddings' samples); "
            f"got {seen} rows"
        )


def _in_memory_batches(
    tensors: dict,
    precisions: dict,
    basis: LabelBasis,
    strategy: _InSample,
    opts: ScoreOptions,
    bar,
    fail,
    originals: dict,
    compact: bool = True,
) -> list[Batch]:
    """Statistics and factors of the in-memory models, batched by width and precision. A model whose
    statistics overflowed (or met a non-finite value) fails with a clear error, or with automatic precision
    is redone in float64, like models whose float32 Gram is too ill-conditioned. Host syncs: a few per
    batch, none per model (the flags come back as one list each). ``compact=False`` keeps every batch's
    statistics and factor (the jackknife's downdates need them)."""

    def done(b: Batch) -> Batch:
        return _compact(b, opts) if compact else b

    batches = []
    for names, dtype, tf32, dev in model_groups(tensors, precisions, opts.device, opts.chunk_size, basis.r):
        xs = [tensors[n] for n in names]
        if xs[0].shape[1] > basis.N:  # more columns than samples: the N x N kernel form
            bar_total, gram = len(names), kernel_gram(xs, dev)
            if strategy.exact_fits_tie:
                # Models surely of rank N - 1 fit exactly and score 0: no eigendecomposition for them.
                exact = kernel_exact_fit(gram[2], xs[0].shape[1])
                flags = exact.tolist()
                if any(flags):
                    batches.append(exact_fit_batch(list(compress(names, flags)), gram[1][exact], xs[0].shape[1], basis))
                    rest = [not f for f in flags]
                    names, xs, gram = (
                        list(compress(names, rest)),
                        list(compress(xs, rest)),
                        tuple(g[~exact] for g in gram),
                    )
            if names:
                st = kernel_stats(xs, basis, dev, gram)
                batches.append(done(Batch(names, st, *strategy.factorize(st, xs), xs)))
            bar.update(bar_total)
            continue
        st = batch_stats(xs, basis, dtype, tf32, dev, opts.chunk_size)
        redo = []
        overflow = st.overflow.tolist()
        if any(overflow):
            for n, bad in zip(names, overflow):
                if bad:
                    try:
                        x = in_memory_features(originals[n], _label(n), basis.n_samples)  # the finite check
                        if recheck(x, opts.precision, dtype, _label(n), basis.N)[0] == torch.float64:
                            redo.append(n)
                    except ValueError as exc:
                        bar.update(1)
                        fail(n, exc)
            names = [n for n, bad in zip(names, overflow) if not bad]
            st = st.rows(~st.overflow) if names else None
        factor = B = None
        if names:
            factor, B = strategy.factorize(st, [tensors[n] for n in names])
            if opts.precision is None and dtype != torch.float64:
                bad = factor.ill_conditioned(st.eps).tolist()
                if any(bad):
                    redo += [n for n, b in zip(names, bad) if b]
                    names = [n for n, b in zip(names, bad) if not b]
                    if names:
                        keep = ~torch.tensor(bad, device=st.G.device)
                        st = st.rows(keep)
                        # A factor that overwrote its Grams keeps the survivors' factors (GramFactor.rows): a
                        # Gram rebuilt from one triangle could round apart from the original.
                        if hasattr(factor, "rows"):
                            factor, B = factor.rows(keep), B[keep]
                        else:
                            factor, B = strategy.factorize(st, [tensors[n] for n in names])
        if redo:
            redo_xs = [tensors[n] for n in redo]
            st64 = batch_stats(redo_xs, basis, torch.float64, False, dev, opts.chunk_size)
            batches.append(done(Batch(redo, st64, *strategy.factorize(st64, redo_xs), redo_xs)))
            bar.update(len(redo))
        if names:
            batches.append(done(Batch(names, st, factor, B, [tensors[n] for n in names])))
        bar.update(len(names))
    return batches


def _compact(b: Batch, opts: ScoreOptions) -> Batch:
    """The batch without its D x D matrices once B is formed (unless the weights W are asked for): a zoo's
    memory then holds one batch's statistics at a time, not every model's."""
    if opts.return_W:
        return b
    b.factor.release()
    b.st = replace(b.st, G=None, G_diag=None, F=None, used=b.st.used_columns())
    return b


def _results(
    b: Batch, t, obj, its, score, degenerate, basis: LabelBasis, strategy: _InSample, opts: ScoreOptions
) -> dict:
    """name -> EMMSResult for one batch's solutions (t [M, K], obj, its, score, degenerate [M])."""
    st, factor = b.st, b.factor
    Ws = None
    if opts.return_W:
        t_fit = torch.full_like(t, 1.0 / basis.K) if opts.mode == "reference" else t
        Ws = factor.solve(basis.to(b.B.device).mix(st.F, t_fit.to(b.B.device)))
        if st.back is not None:  # principal-component weights -> standardized-feature weights
            Ws = st.back @ Ws
        Ws = Ws.cpu()
    # Python numbers through one tolist() per batch, not one conversion per model (on CUDA each would be a
    # host sync).
    t = t.cpu()
    obj, its, score, degenerate = obj.tolist(), its.tolist(), score.tolist(), degenerate.tolist()
    ridges, used = factor.ridges(), st.used_columns().tolist()
    precision = "float64" if st.eps <= torch.finfo(torch.float64).eps else "float32"
    out = {}
    for i, name in enumerate(b.names):
        D_used = used[i]
        notes = strategy.notes(name, st, degenerate[i], D_used)
        for note in notes:
            warn(note, EMMSDegeneracyWarning)
        out[name] = EMMSResult(
            score=score[i],
            t=t[i].clone(),
            mode=opts.mode,
            iterations=its[i],
            objective=obj[i],
            n_samples=st.N,
            n_features=st.D,
            n_used_features=D_used,
            label_dim=basis.L,
            n_embedders=basis.K,
            ridge=ridges[i],
            solver=factor.methods[i] if st.back is None else f"kernel/{factor.methods[i]}",
            W=None if Ws is None else Ws[i].clone(),
            warnings=notes,
            gram_precision=precision,
            degenerate=degenerate[i],
            **factor.extras(i),
        )
    return out
