"""Readable float64 references: the test oracle for every op and for the whole score.

Everything here is written the slow, obvious way on purpose — sorting instead of a fixed point,
enumerating supports instead of an active set, full least squares on N x L matrices instead of the K x K
reduction — so that agreement with the fast path means something. Also the CPU fallback of last resort.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

EPS_STD = 1e-8  # the released code's z-score: (x - mean) / (std + 1e-8), population std


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).detach().to(torch.float64).cpu()


# ----------------------------------------------------------------------------------------------- ops
def simplex_project(v: torch.Tensor) -> torch.Tensor:
    """Sort-based projection of every row of v [..., K] onto the simplex (Held et al. / Duchi et al.).

    Rows with a non-finite entry come back as NaN, like the op.
    """
    x = _f64(v)
    K = x.shape[-1]
    if K == 0 or x.numel() == 0:
        return x.clone()
    x = x - x.max(-1, keepdim=True).values.nan_to_num(0.0, 0.0, 0.0)  # shift-invariant; keeps "+1" exact
    u, _ = torch.sort(x, dim=-1, descending=True)
    css = torch.cumsum(u, dim=-1) - 1.0
    j = torch.arange(1, K + 1, dtype=torch.float64)
    rho = (((u - css / j) > 0).sum(-1, keepdim=True) - 1).clamp_min(0)  # last index of the support
    theta = css.gather(-1, rho) / (rho + 1).to(torch.float64)
    out = (x - theta).clamp_min(0)
    bad = ~torch.isfinite(x).all(-1, keepdim=True)
    return torch.where(bad, torch.full_like(out, float("nan")), out)


def class_sums(x: torch.Tensor, order: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Reference of emms::class_sums: x [..., N, D] -> [..., C, D], a float64 loop over classes."""
    x64 = _f64(x)
    order, offsets = order.cpu(), offsets.cpu()
    C = offsets.shape[0] - 1
    out = torch.zeros(*x64.shape[:-2], C, x64.shape[-1], dtype=torch.float64)
    for c in range(C):
        members = order[offsets[c] : offsets[c + 1]]
        out[..., c, :] = x64[..., members, :].sum(-2)
    return out


def logme_evidence(
    sigma,
    proj,
    ynorm2,
    N: int,
    D: int,
    max_iter: int = 11,
    tol: float = 1e-3,
    eps: float = 1e-5,
    dtype: torch.dtype = torch.float64,
):
    """Reference of emms::logme_evidence: sigma [k], proj [T, k], ynorm2 [T] -> (evidence, alpha, beta, it) [T].

    One target at a time, written with the posterior mean m and A = alpha I + beta diag(sigma) in the
    eigenbasis (not the op's closed-form sums). dtype: precision of the arithmetic (float32 gives 'ref32').
    """
    s = _f64(sigma).to(dtype)
    X = _f64(proj).to(dtype)
    y2 = _f64(ynorm2).to(dtype)
    k = s.shape[0]
    out = []
    for t in range(X.shape[0]):
        x = X[t]
        outside = torch.clamp(y2[t] - (x * x).sum(), min=0)
        alpha = torch.tensor(1.0, dtype=dtype)
        beta = torch.tensor(1.0, dtype=dtype)
        it = 0
        while it < max_iter:
            it += 1
            lam = alpha / beta
            A = alpha + beta * s  # eigenvalues of A = alpha I + beta F'F
            m = beta * s.sqrt() * x / A  # posterior mean in the eigenbasis: beta A^-1 F'y
            fitted = s.sqrt() * m  # F m in the left singular basis
            gamma = (beta * s / A).sum()
            m2 = (m * m).sum()
            res2 = ((x - fitted) ** 2).sum() + outside
            alpha = gamma / (m2 + eps)
            beta = (N - gamma) / (res2 + eps)
            if not bool(torch.abs(alpha / beta - lam) / lam > tol):  # NaN stops too
                break
        # log p(y) = D/2 log alpha + ... - 1/2 log|A|, log|A| = sum log(alpha + beta s) + (D - k) log alpha
        logdet = torch.log(alpha + beta * s).sum() + ((D - k) * torch.log(alpha) if k < D else 0.0)
        prior = D / 2 * torch.log(alpha) if k > 0 else 0.0  # k = 0: the two log(alpha -> 0) terms cancel
        if k == 0:
            logdet = torch.log(alpha + beta * s).sum()
        ev = (
            prior + N / 2 * torch.log(beta) - logdet / 2 - beta / 2 * res2 - alpha / 2 * m2 - N / 2 * np.log(2 * np.pi)
        ) / N
        out.append((float(ev), float(alpha), float(beta), it))
    ev, al, be, its = zip(*out) if out else ((), (), (), ())
    f = torch.float64
    return (
        torch.tensor(ev, dtype=f),
        torch.tensor(al, dtype=f),
        torch.tensor(be, dtype=f),
        torch.tensor(its, dtype=torch.int64),
    )


def simplex_qp(H: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """argmin over the simplex of t'Ht - 2b't by enumerating every support (K <= 14).

    For each support S the equality-constrained minimizer solves the KKT system
    [2H_SS 1; 1' 0][t; -nu] = [2b_S; 1] (least squares, so singular H is fine); the best feasible one wins.
    """
    H = _f64(H)
    K = H.shape[0]
    if K > 14:
        raise ValueError(f"reference simplex_qp enumerates 2^K supports; K must be <= 14 (got {K})")
    b = torch.zeros(K, dtype=torch.float64) if b is None else _f64(b)
    best, best_t = float("inf"), None
    for size in range(1, K + 1):
        for S in itertools.combinations(range(K), size):
            idx = torch.tensor(S)
            kkt = torch.zeros(size + 1, size + 1, dtype=torch.float64)
            kkt[:size, :size] = 2 * H[idx][:, idx]
            kkt[:size, size] = 1
            kkt[size, :size] = 1
            rhs = torch.cat([2 * b[idx], torch.ones(1, dtype=torch.float64)])
            sol = torch.linalg.lstsq(kkt, rhs[:, None], driver="gelsd").solution[:, 0]
            ts = sol[:size]
            if (ts < -1e-12).any() or abs(float(ts.sum()) - 1) > 1e-9:
                continue
            t = torch.zeros(K, dtype=torch.float64)
            t[idx] = ts.clamp_min(0)
            t = t / t.sum()
            val = float(t @ H @ t - 2 * b @ t)
            if best_t is None or val < best - 1e-15 * max(1.0, abs(best)):
                best, best_t = val, t
    return best_t


def wlsr_simplex(A, B, mode: str = "exact", max_iter: int = 10_000, tol: float = 1e-12):
    """Reference of emms::wlsr_simplex: A [K, K] or [M, K, K], B [M, K, K] -> (t [M, K], objective [M], it [M])."""
    B = _f64(B)
    A = _f64(A)
    M, K = B.shape[0], B.shape[-1]
    A = A.expand(M, K, K) if A.dim() == 2 else A
    ts, fs, its = [], [], []
    for m in range(M):
        a, b = A[m], B[m]
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            ts.append(torch.full((K,), float("nan"), dtype=torch.float64))
            fs.append(float("nan"))
            its.append(0)
            continue
        if mode == "exact":
            t = simplex_qp(a - b)
            f, it = float(t @ (a - b) @ t), 1
        elif mode == "alternating":
            t = torch.full((K,), 1.0 / K, dtype=torch.float64)
            f = float(t @ (a - b) @ t)
            it = 0
            for _ in range(max_iter):
                tn = simplex_qp(a, b @ t)
                fn = float(tn @ (a - b) @ tn)
                if not fn <= f:
                    break
                t, it = tn, it + 1
                dec, f = f - fn, fn
                if dec <= tol * abs(fn):
                    break
        elif mode == "reference":
            t0 = torch.full((K,), 1.0 / K, dtype=torch.float64)
            lam = torch.linalg.pinv(a, hermitian=True, rtol=K * 2.220446049250313e-16) @ (b @ t0)
            t = simplex_project(lam)
            f, it = float(t0 @ b @ t0 - 2 * t @ b @ t0 + t @ a @ t), 1
        else:
            raise ValueError(f"unknown mode {mode!r}")
        ts.append(t)
        fs.append(f)
        its.append(it)
    return torch.stack(ts), torch.tensor(fs, dtype=torch.float64), torch.tensor(its, dtype=torch.int64)


# --------------------------------------------------------------------------------------- whole score
def standardize(x: torch.Tensor, dim: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The released code's z-score along dim: (x - mean) / (population std + 1e-8)."""
    x = _f64(x).to(dtype)
    return (x - x.mean(dim, keepdim=True)) / (x.std(dim, unbiased=False, keepdim=True) + EPS_STD)


def label_stack(label_embeddings, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """[N, L, K] tensor, or a list of K arrays [N, L_k] (standardized, then zero-padded to max L_k)."""
    if isinstance(label_embeddings, (list, tuple)):
        zs = [standardize(z, dtype=dtype) for z in label_embeddings]
        L = max(z.shape[1] for z in zs)
        return torch.stack([torch.nn.functional.pad(z, (0, L - z.shape[1])) for z in zs], dim=-1)
    return standardize(label_embeddings, dtype=dtype)


def emms_score(
    features,
    label_embeddings,
    mode: str = "exact",
    ridge: float | None = None,
    max_iter: int = 10_000,
    tol: float = 1e-12,
    dtype: torch.dtype = torch.float64,
) -> dict:
    """EMMS by full least squares on the standardized N x D and N x L matrices, float64.

    exact: residual matrices E_k = (I - H) Z_k from torch.linalg.lstsq (or the ridge solve), then the K x K
    QP by support enumeration. alternating: Algorithm 1 with explicit W = argmin ||XW - Zt||^2 (+ ridge).
    reference: the released algorithm step by step (see released_emms).
    dtype: precision of every N-sized computation (float32 gives the 'ref32' of the tolerance rule).
    Returns {"score", "t", "objective", "W", "iterations"}.
    """
    X = standardize(features, dtype=dtype)
    Z = label_stack(label_embeddings, dtype=dtype)
    N, L, K = Z.shape
    if mode == "reference":
        if ridge is not None:
            raise ValueError("ridge is not part of the released algorithm")
        return released_emms(features, label_embeddings, dtype=dtype)

    def fit(T):  # [N, L] -> W [D, L] minimizing ||XW - T||^2 + ridge ||W||^2
        if ridge is None:
            return torch.linalg.lstsq(X, T, driver="gelsd").solution
        G = X.T @ X + ridge * torch.eye(X.shape[1], dtype=dtype)
        return torch.linalg.solve(G, X.T @ T)

    def objective(W, t):
        r = X @ W - torch.einsum("nlk,k->nl", Z, t.to(dtype))
        return float((r**2).sum() + (0.0 if ridge is None else ridge * (W**2).sum()))

    if mode == "exact":
        # Profile over W: min_W f(W, t) = t'Mt with M_kl = <Z_k, Z_l - X W_l> (+ ridge), W_l the fit of Z_l.
        Ws = [fit(Z[:, :, k]) for k in range(K)]
        Mmat = torch.empty(K, K, dtype=torch.float64)
        for k in range(K):
            for j in range(K):
                Mmat[k, j] = float((Z[:, :, k] * (Z[:, :, j] - X @ Ws[j])).sum())
        Mmat = (Mmat + Mmat.T) / 2
        t = simplex_qp(Mmat)
        W = sum(float(t[k]) * Ws[k] for k in range(K))
        it = 1
    elif mode == "alternating":
        t = torch.full((K,), 1.0 / K, dtype=torch.float64)
        W = fit(torch.einsum("nlk,k->nl", Z, t.to(dtype)))
        f = objective(W, t)
        A = torch.einsum("nlk,nlj->kj", Z, Z)
        it = 0
        for _ in range(max_iter):
            XW = X @ W
            tn = simplex_qp(A, torch.einsum("nlk,nl->k", Z, XW))  # t-step: min ||XW - Zt||^2 on the simplex
            Wn = fit(torch.einsum("nlk,k->nl", Z, tn.to(dtype)))  # W-step
            fn = objective(Wn, tn)
            if not fn <= f:
                break
            dec, f, t, W, it = f - fn, fn, tn, Wn, it + 1
            if dec <= tol * abs(fn):
                break
    else:
        raise ValueError(f"unknown mode {mode!r}")
    f = objective(W, t)
    return {"score": -f / (N * L), "t": t, "objective": f, "W": W, "iterations": it}


def out_of_sample_score(features, label_embeddings, mode: str, grid) -> dict:
    """mode="gcv" / "loo" the slow way: for every ridge of `grid`, the K x K Gram of the out-of-sample
    residuals of the K label embeddings, from explicit N x N hat matrices (gcv) or from N explicit refits
    that each leave one sample out (loo); then t by support enumeration, and the best (ridge, t).
    Ridge regression with an unpenalized intercept on the standardized features. Returns {"score", "t",
    "ridge", "df", "path"} (path: estimated error per label dimension at each ridge, min over t)."""
    X = standardize(features)
    Z = label_stack(label_embeddings)
    N, L, K = Z.shape
    ones = torch.ones(N, 1, dtype=torch.float64)
    path, best = [], None
    for lam in [float(v) for v in grid]:
        if mode == "gcv":
            Xc = X - X.mean(0)
            G = Xc.T @ Xc + lam * torch.eye(X.shape[1], dtype=torch.float64)
            H = ones @ ones.T / N + Xc @ torch.linalg.solve(G, Xc.T)
            R = torch.einsum("nm,mlk->nlk", torch.eye(N, dtype=torch.float64) - H, Z)
            df = float(torch.trace(H))
            denom = N * (1 - df / N) ** 2 if df < N else 0.0
        elif mode == "loo":
            R = torch.empty_like(Z)
            for n in range(N):
                rest = torch.arange(N) != n
                Xr = torch.cat([ones[rest], X[rest]], 1)
                pen = lam * torch.eye(Xr.shape[1], dtype=torch.float64)
                pen[0, 0] = 0.0  # the intercept is not shrunk
                coef = torch.linalg.solve(Xr.T @ Xr + pen, Xr.T @ Z[rest].reshape(N - 1, L * K))
                R[n] = Z[n] - (torch.cat([ones[n], X[n]]) @ coef).reshape(L, K)
            df, denom = None, float(N)
        else:
            raise ValueError(f"unknown mode {mode!r}")
        Mmat = torch.einsum("nlk,nlj->kj", R, R)
        t = simplex_qp((Mmat + Mmat.T) / 2)
        err = float(t @ Mmat @ t) / denom / L if denom > 0 else float("inf")
        path.append(err)
        if best is None or err < best[0]:
            best = (err, t, lam, df)
    return {"score": -best[0], "t": best[1], "ridge": best[2], "df": best[3], "path": path}


def released_emms(features, label_embeddings, dtype: torch.dtype = torch.float64) -> dict:
    """The released research algorithm, step by step in torch (one alternation, released scaling)."""
    X = standardize(features, dtype=dtype)
    Z = label_stack(label_embeddings, dtype=dtype)
    N, L, K = Z.shape
    t0 = torch.full((K,), 1.0 / K, dtype=dtype)
    W = torch.linalg.lstsq(X, torch.einsum("nlk,k->nl", Z, t0), driver="gelsd").solution
    lam = torch.linalg.lstsq(Z.reshape(N * L, K), (X @ W).reshape(-1, 1), driver="gelsd").solution[:, 0]
    t1 = simplex_project(lam)
    res = float(((X @ W - torch.einsum("nlk,k->nl", Z, t1.to(dtype))) ** 2).sum())
    return {"score": -res / N * L, "t": t1, "objective": res, "W": W, "iterations": 1}


def released_emms_torch(X: torch.Tensor, Z: torch.Tensor) -> float:
    """The released algorithm ported naively to torch, in the inputs' dtype and on their device (CPU or
    GPU): X [N, D], Z [N, L, K] -> the released score. The per-model loop baseline of the speed
    benchmarks (torch.linalg.lstsq's default driver, so it also runs on CUDA)."""
    N, L, K = Z.shape
    x = (X - X.mean(0)) / (X.std(0, unbiased=False) + EPS_STD)
    z = (Z - Z.mean(0)) / (Z.std(0, unbiased=False) + EPS_STD)
    w = torch.linalg.lstsq(x, z.mean(2)).solution
    lam = torch.linalg.lstsq(z.reshape(N * L, K), (x @ w).reshape(-1, 1)).solution[:, 0]
    t1 = simplex_project(lam).to(z)
    return -float(((x @ w - (z * t1).sum(2)) ** 2).sum()) / N * L


def released_emms_numpy(X: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """A numpy port of the released EMMS code: X [N, D], Y [N, L, K] -> (score, t).

    Same steps and dtype handling as the research prototype (numpy lstsq with rcond=None, sparsemax,
    score -sum(res^2) / N * L), except that it copies instead of standardizing the caller's Y in place.
    Used as the baseline of benchmarks/bench_emms.py and as an oracle in the tests.
    """
    x = np.array(X, copy=True)
    y = np.array(Y, copy=True)
    N, L, K = y.shape
    eps = 1e-8
    for k in range(K):
        y[:, :, k] = (y[:, :, k] - y[:, :, k].mean(0)) / (y[:, :, k].std(0) + eps)
    x = (x - x.mean(0)) / (x.std(0) + eps)
    lam = np.full(K, 1.0 / K, dtype=y.dtype)
    T = (lam * y).sum(axis=2)
    w = np.linalg.lstsq(x, T, rcond=None)[0]
    b = (x @ w).reshape(-1)
    lam = np.linalg.lstsq(y.reshape(N * L, K), b, rcond=None)[0]
    lam = _sparsemax_numpy(lam)
    T = (lam * y).sum(axis=2)
    res = float(((x @ w - T) ** 2).sum()) / N * L
    return -res, lam


def _sparsemax_numpy(z: np.ndarray) -> np.ndarray:
    zs = np.sort(z)[::-1]
    k = np.arange(1, z.size + 1)
    support = 1 + k * zs > np.cumsum(zs)
    kz = k[support][-1]
    tau = (np.cumsum(zs)[kz - 1] - 1) / kz
    return np.maximum(z - tau, 0)
