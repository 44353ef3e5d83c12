"""``mode="evidence"``: EMMS judged by Bayesian evidence (docs/design.md §3).

Per model, the label mixture ``t`` on the simplex maximizes LogME's evidence of the mixed target ``Z t``:
each of its L columns is a LogME regression target with its own ``alpha_l, beta_l`` (MacKay's fixed point,
the ``emms::logme_evidence`` op); the score is the mean evidence per sample over the L columns. Features are
used as given, like LogME.

Everything stays K x K. With the features' thin SVD ``F = U S V'``, the projections of column l of ``Z t``
on ``U`` are ``sum_k t_k P[:, k, l]`` and its squared norm is ``t' A_l t``. For fixed ``alpha, beta`` the
evidence is a concave quadratic in t, ``-1/2 sum_l beta_l t' M_l t`` with
``M_l = A_l - sum_i w_il P_il P_il'`` and ``w_il = beta_l s_i / (alpha_l + beta_l s_i)``; so the fit
alternates the fixed point for ``alpha, beta`` at t with the simplex QP for t at ``alpha, beta`` (the fused
``emms::wlsr_simplex`` op), keeping the best evidence seen. In-memory features only; a zoo's models run side by
side, one per torch thread (one eigendecomposition each dominates; each runs on one thread, core/linalg.py).
"""

from __future__ import annotations

import threading

import torch

from ..common.progress import progress_bar
from ..common.warn import warn
from ..ops.operators import class_order, class_sums, logme_evidence, wlsr_simplex
from .ingest import in_memory_features
from .labels import LabelBasis
from .linalg import eigh, run_tasks, symmetric_gram
from .results import EMMSResult, ZooScores

EVIDENCE_MODE = "evidence"
_EPS64 = 2.220446049250313e-16
_OUTER_ITERATIONS = 100


def spectral_projections(F: torch.Tensor, left_times) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues s [k] of F'F above the rounding, projections [k, T] of the targets on the unit left
    singular vectors) for F [N, D] float64; ``left_times(R [N, r]) -> R' Y [r, T]`` applies the targets.
    The smaller of the D x D and N x N Grams is decomposed."""
    N, D = F.shape
    if N >= D:
        s, V = eigh(symmetric_gram(F))  # the Gram's lower blocks only (docs/design.md §2)
        keep = s > s.max().clamp_min(0) * _EPS64 * max(N, D)
        s, V = s[keep], V[:, keep]
        return s, (V.T @ left_times(F)) / s.sqrt()[:, None]
    s, U = eigh(symmetric_gram(F.T))
    keep = s > s.max().clamp_min(0) * _EPS64 * max(N, D)
    return s[keep], left_times(U[:, keep])


def _label_products(basis: LabelBasis):
    """(left_times: R [N, r] -> R' Z [r, K*L], A_cols [L, K, K]: the per-column Grams of the standardized Z)."""
    K, L = basis.K, basis.L
    if basis.is_vocabulary:
        table = basis.table  # [C, K, L]
        order, offsets = class_order(basis.classes, table.shape[0])

        def left_times(R):
            return class_sums(R[None].contiguous(), order, offsets)[0].T @ table.reshape(table.shape[0], K * L)

        A_cols = torch.einsum("c,ckl,cjl->lkj", basis.counts, table, table)
    else:
        Z = basis.dense.reshape(-1, K, L)

        def left_times(R):
            return R.T @ basis.dense

        A_cols = torch.einsum("nkl,njl->lkj", Z, Z)
    return left_times, A_cols


def _fit(s, P, A_cols, N: int, D: int, max_iter: int, tol: float):
    """(evidence per sample [L] at the best t, t [K], outer iterations) for one model: P [k, K, L]."""
    K = P.shape[1]
    t = torch.full((K,), 1.0 / K, dtype=torch.float64, device=P.device)

    def at(t):
        proj = torch.einsum("ikl,k->li", P, t).contiguous()  # [L, k]
        ynorm2 = torch.einsum("lkj,k,j->l", A_cols, t, t)
        ev, alpha, beta, _ = logme_evidence(s, proj, ynorm2, N, D, max_iter, tol, 1e-5)
        return ev, alpha, beta

    best_ev, best_t, its = None, t, 0
    while its < _OUTER_ITERATIONS:
        its += 1
        ev, alpha, beta = at(t)
        if best_ev is None or float(ev.mean()) > float(best_ev.mean()):
            best_ev, best_t = ev, t
        w = beta[:, None] * s[None, :] / (alpha[:, None] + beta[:, None] * s[None, :])  # [L, k]
        Q = torch.einsum("l,lkj->kj", beta, A_cols) - torch.einsum("li,ikl,ijl->kj", beta[:, None] * w, P, P)
        Q = (Q + Q.T) / 2
        t_new = wlsr_simplex(Q[None], torch.zeros_like(Q)[None], "exact", 1, 0.0)[0][0]
        if float((t_new - t).abs().max()) <= 1e-10:
            break
        t = t_new
    return best_ev, best_t, its


def evidence_at(features: torch.Tensor, basis: LabelBasis, t: torch.Tensor) -> torch.Tensor:
    """Evidence per sample [L] of the columns of ``Z t`` for features [N, D] (float64, rows matching the basis)."""
    left_times, A_cols = _label_products(basis)
    s, proj = spectral_projections(features, left_times)
    P = proj.reshape(-1, basis.K, basis.L)
    N, D = features.shape
    t = t.to(torch.float64)
    ev, _, _, _ = logme_evidence(
        s, torch.einsum("ikl,k->li", P, t).contiguous(), torch.einsum("lkj,k,j->l", A_cols, t, t), N, D, 11, 1e-3, 1e-5
    )
    return ev


def evidence_scores(items: list, basis: LabelBasis, errors: str = "raise", progress=None) -> ZooScores:
    """``mode="evidence"`` for every ``(name, features [S, D])`` of ``items`` (in-memory only). The models run
    side by side, one per torch thread: each one's eigendecomposition runs on one thread (for its bits,
    core/linalg.py), so a zoo fills the cores with models instead."""
    basis = basis.to("cpu")
    left_times, A_cols = _label_products(basis)
    failures, ready = {}, []
    for name, features in items:
        label = "features" if name is None else f"features[{name!r}]"
        try:
            x = in_memory_features(features, label, basis.n_samples)
            if x is None:
                raise ValueError(f"{label}: mode='evidence' needs in-memory [N, D] features (got an iterable)")
        except ValueError as exc:
            if errors == "raise":
                raise
            failures[name] = str(exc)
            warn(f"model {name!r} skipped: {exc}")
            continue
        ready.append((name, x))

    bar = progress_bar(len(items), "EMMS evidence", "model", progress, auto=len(items) >= 32)
    bar.update(len(failures))
    lock = threading.Lock()  # the models finish on the workers

    def score(x: torch.Tensor) -> EMMSResult:
        F = basis.repeat_rows(x.to("cpu", torch.float64))
        N, D = F.shape
        s, proj = spectral_projections(F, left_times)
        ev, t, its = _fit(s, proj.reshape(-1, basis.K, basis.L), A_cols, N, D, 11, 1e-3)
        value = float(ev.mean())
        with lock:
            bar.update(1)
        return EMMSResult(
            score=value,
            t=t.cpu(),
            mode=EVIDENCE_MODE,
            iterations=its,
            objective=-value * N * basis.L,
            n_samples=N,
            n_features=D,
            n_used_features=int(s.shape[0]),
            label_dim=basis.L,
            n_embedders=basis.K,
            ridge=None,
            solver="logme-evidence",
        )

    results = dict(zip([name for name, _ in ready], run_tasks(score, [x for _, x in ready])))
    bar.close()
    return ZooScores({n: results[n] for n, _ in items if n in results}, failures)
