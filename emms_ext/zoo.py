"""The scoring pipeline behind ``emms_score`` / ``emms_scores``: statistics per batch of models, Gram
factorizations (with the automatic float64 fallback), one fused K x K solve for the whole zoo, results."""
from __future__ import annotations

import warnings

import torch

from .factor import make_factor
from .ingest import (
    batch_stats,
    compute_precision,
    in_memory_features,
    model_groups,
    stream_stats,
)
from .labels import LabelBasis
from .ops import wlsr_simplex
from .out_of_sample import OUT_OF_SAMPLE_MODES, make_out_of_sample
from .results import EMMSDegeneracyWarning, EMMSResult, ZooScores
from .stats import StandardizedStats, kernel_stats


def degeneracy_message(name: str, D: int, N: int) -> str:
    return (f"{name}: {D} varying feature columns >= N - 1 = {N - 1} samples. Least squares then fits every "
            "label embedding exactly, so this model scores a perfect 0 and ties with every other such model "
            "(a known EMMS degeneracy). Use mode='gcv' (the out-of-sample score: ridge fit judged by generalized "
            "cross-validation), or ridge='gcv' / ridge=<lambda> (sklearn Ridge's alpha on the standardized "
            "features) to get scores that discriminate, or use more samples.")


def score_zoo(items, basis: LabelBasis, mode: str, ridge, return_W: bool, max_iter: int, tol: float,
               precision, device, chunk_size: int, errors: str, progress) -> ZooScores:
    failures, tensors, streams, precisions = {}, {}, {}, {}

    def fail(name, exc):
        if errors == "raise":
            raise exc
        failures[name] = str(exc)
        warnings.warn(f"model {name!r} skipped: {exc}", stacklevel=4)

    for name, features in items:
        label = "features" if name is None else f"features[{name!r}]"
        try:
            x = in_memory_features(features, label, basis.N)
            if x is None:
                streams[name] = features
            else:
                precisions[name] = compute_precision(x, precision, label, basis.N)
                tensors[name] = x
        except ValueError as exc:
            fail(name, exc)

    oos = mode in OUT_OF_SAMPLE_MODES

    def factorize(st, names):
        """(factor, B) of a batch of models; B [M, K, K], or [M * G, K, K] over an out-of-sample ridge grid."""
        if oos:
            xs = None if names is None else [tensors[n] for n in names]
            factor = make_out_of_sample(mode, st, basis, ridge, xs)
            return factor, factor.grid_B(basis).reshape(-1, basis.K, basis.K)
        factor = make_factor(st, ridge, basis)
        return factor, basis.to(st.G.device).B_from_half(factor.half(st.F))

    prepared = []  # (names, stats, factor, B on the solve device)
    bar = _progress(len(tensors) + len(streams), progress)
    for names, dtype, tf32, dev in model_groups(tensors, precisions, device, chunk_size, basis.r):
        if tensors[names[0]].shape[1] > basis.N:  # more columns than samples: the N x N kernel form
            st = kernel_stats([tensors[n] for n in names], basis, dev)
            prepared.append((names, st, *factorize(st, names)))
            bar.update(len(names))
            continue
        st = batch_stats([tensors[n] for n in names], basis, dtype, tf32, dev, chunk_size)
        factor, B = factorize(st, names)
        if precision is None and dtype != torch.float64:
            # Automatic precision: models whose float32 Gram is too ill-conditioned are redone in float64.
            bad = factor.ill_conditioned(st.eps)
            if bool(bad.any()):
                redo = [n for n, b in zip(names, bad.tolist()) if b]
                names = [n for n, b in zip(names, bad.tolist()) if not b]
                st64 = batch_stats([tensors[n] for n in redo], basis, torch.float64, False, dev, chunk_size)
                prepared.append((redo, st64, *factorize(st64, redo)))
                bar.update(len(redo))
                if names:
                    keep = ~bad
                    st = StandardizedStats(N=st.N, D=st.D, keep=st.keep[keep], G=st.G[keep], F=st.F[keep], eps=st.eps)
                    factor, B = factorize(st, names)
        if names:
            prepared.append((names, st, factor, B))
        bar.update(len(names))
    for name, features in streams.items():
        label = "features" if name is None else f"features[{name!r}]"
        try:
            st = stream_stats(features, basis, label, precision, device, chunk_size)
            factor, B = factorize(st, None)
        except ValueError as exc:
            fail(name, exc)
            continue
        if precision is None and st.eps > torch.finfo(torch.float64).eps and bool(factor.ill_conditioned(st.eps)[0]):
            warnings.warn(f"{label}: the float32 Gram of these streamed features is ill-conditioned "
                          f"(condition >= {float(factor.cond[0]):.1e}); its score may be off in the leading "
                          "digits. Pass precision='float64' (streams cannot be re-read automatically).",
                          stacklevel=3)
        prepared.append(([name], st, factor, B))
        bar.update(1)
    bar.close()

    results = {}
    if not prepared:
        return ZooScores({}, failures)
    # One fused solve for the whole zoo, on the device of the first batch.
    solve_dev = prepared[0][3].device
    B_all = torch.cat([B.to(solve_dev) for *_, B in prepared])
    t_all, obj_all, its_all = wlsr_simplex(basis.A.to(solve_dev), B_all, "exact" if oos else mode, max_iter, tol)
    offset = 0
    for names, st, factor, B in prepared:
        sl = slice(offset, offset + B.shape[0])
        offset += B.shape[0]
        t, obj, its = t_all[sl], obj_all[sl], its_all[sl]
        if oos:  # each model's best ridge of the grid, by estimated out-of-sample error
            G = B.shape[0] // len(names)
            t, obj, its, oos_score = factor.pick(t.view(len(names), G, -1), obj.view(len(names), G),
                                                 its.view(len(names), G), basis.L)
            oos_score = oos_score.cpu()
        obj, its = obj.cpu(), its.cpu()
        Ws = None
        if return_W:
            t_fit = torch.full_like(t, 1.0 / basis.K) if mode == "reference" else t
            Ws = factor.solve(basis.to(B.device).mix(st.F, t_fit.to(B.device)))
            if st.back is not None:  # principal-component weights -> standardized-feature weights
                Ws = st.back @ Ws
            Ws = Ws.cpu()
        t = t.cpu()
        for i, name in enumerate(names):
            f = float(obj[i])
            if oos:
                score = float(oos_score[i])
            else:
                score = -f / st.N * basis.L if mode == "reference" else -f / (st.N * basis.L)
            notes = []
            D_used = int(st.used_columns()[i])
            if ridge is None and not oos and int(st.keep[i].sum()) >= st.N - 1:  # rank: columns, or components
                notes.append(degeneracy_message("features" if name is None else f"model {name!r}", D_used, st.N))
                warnings.warn(notes[-1], EMMSDegeneracyWarning, stacklevel=3)
            results[name] = EMMSResult(
                score=score, t=t[i].clone(), mode=mode, iterations=int(its[i]), objective=f, n_samples=st.N,
                n_features=st.D, n_used_features=D_used, label_dim=basis.L, n_embedders=basis.K,
                ridge=factor.ridges()[i],
                solver=factor.methods[i] if st.back is None else f"kernel/{factor.methods[i]}",
                W=None if Ws is None else Ws[i].clone(), warnings=notes, **factor.extras(i),
                gram_precision="float64" if st.eps <= torch.finfo(torch.float64).eps else "float32")
    order = [name for name, _ in items if name in results]
    return ZooScores({name: results[name] for name in order}, failures)


def _progress(total: int, progress):
    """A tqdm bar over models when asked (progress=True) or when the zoo is large (progress=None)."""
    show = progress if progress is not None else total >= 32
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are optional
        tqdm = None
    if not show or tqdm is None:
        return _NoBar()
    return tqdm(total=total, desc="EMMS", unit="model")


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass
