"""Typed Python wrappers over ``torch.ops.emms.*`` (docs/design.md §5): shapes in every signature, mode
names instead of integer codes. The schemas live in ``csrc/ops.cpp``; fake kernels and autograd in
``fake.py``.
"""

from __future__ import annotations

import torch

MODES = {"exact": 0, "alternating": 1, "reference": 2}


def mode_code(mode: str | int) -> int:
    """Map a mode name ("exact" | "alternating" | "reference") to the op's integer code."""
    if isinstance(mode, str):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)} (got {mode!r})")
        return MODES[mode]
    if int(mode) not in MODES.values():
        raise ValueError(f"mode code must be 0, 1 or 2 (got {mode!r})")
    return int(mode)


def simplex_project(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of every row of ``v [..., K]`` onto the probability simplex.

    Returns a new ``[..., K]`` tensor whose rows are >= 0 and sum to 1 (sparsemax). Rows holding NaN or
    Inf come back as NaN. Differentiable: on the support S the Jacobian is ``I_S - 1 1' / |S|``.
    """
    return torch.ops.emms.simplex_project(v)


def wlsr_simplex(
    A: torch.Tensor,
    B: torch.Tensor,
    mode: str | int = "exact",
    max_iter: int = 10_000,
    tol: float = 1e-12,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solve EMMS's weighted least squares over the simplex for a batch of models, in one call.

    Args:
        A: ``[K, K]`` shared (or ``[M, K, K]``) label Gram ``A_kl = <Z_k, Z_l>``.
        B: ``[M, K, K]`` per-model ``B_kl = <Z_k, P Z_l>`` (P: projector onto the model's features).
        mode: ``"exact"`` (min over the simplex of ``t'(A-B)t``), ``"alternating"`` (the paper's
            Algorithm 1 to convergence) or ``"reference"`` (the released code's single step).
        max_iter, tol: alternating only; stop after ``max_iter`` alternations or when the objective's
            relative decrease is ``<= tol``.

    Returns:
        ``t [M, K]`` (on the simplex), ``objective [M]`` (unnormalized ``||XW - Zt||^2``; the score is
        ``-objective / (N L)``, or ``-objective * L / N`` in reference mode) and ``iterations [M]`` int64.
    """
    return torch.ops.emms.wlsr_simplex(A, B, mode_code(mode), int(max_iter), float(tol))


def class_sums(x: torch.Tensor, order: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Per-class sums of the rows of ``x [N, D]`` (or ``[B, N, D]``) -> ``[C, D]`` (or ``[B, C, D]``).

    ``order [N]`` (int64) lists the samples sorted by class and class ``c`` owns
    ``order[offsets[c]:offsets[c+1]]`` (``offsets [C + 1]``, int64); ``class_order`` builds both from class
    indices. Sums run in float64 in a fixed order, so results are deterministic on every device.
    Invalid index values raise a ValueError on the CPU; on CUDA they are checked inside the kernels (no
    host copy, no sync) and give NaN sums: the whole output for bad offsets, the class for a bad order value.
    """
    return torch.ops.emms.class_sums(x, order, offsets)


def class_order(classes: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(order [N], offsets [C + 1]) for ``class_sums`` from class indices ``classes [N]`` in [0, C)."""
    order = torch.argsort(classes, stable=True)
    counts = torch.bincount(classes, minlength=num_classes)
    offsets = torch.zeros(num_classes + 1, dtype=torch.int64, device=classes.device)
    offsets[1:] = torch.cumsum(counts, 0)
    return order, offsets


def logme_evidence(
    sigma: torch.Tensor,
    proj: torch.Tensor,
    ynorm2: torch.Tensor,
    N: int,
    D: int,
    max_iter: int = 11,
    tol: float = 1e-3,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """LogME's per-target evidence maximization for all targets of one model, in one call.

    Args:
        sigma: ``[k]`` eigenvalues of ``F'F`` kept (rank k <= min(N, D)), F the ``[N, D]`` features.
        proj: ``[T, k]`` every target ``y_t [N]`` projected on the matching left singular vectors of F.
        ynorm2: ``[T]`` ``|y_t|^2`` (the part of y outside F's span enters through ``|y|^2 - |proj|^2``).
        N, D: samples and feature width (the ``D - k`` zero eigenvalues still count in ``log|A|``).
        max_iter, tol, eps: MacKay fixed point from alpha = beta = 1, stopped after ``max_iter`` updates or
            when ``|t_new - t| / t <= tol`` (t = alpha / beta); ``eps`` is added to the denominators of
            the updates. The defaults are the released LogME code's (11, 1e-3, 1e-5).

    Returns:
        ``evidence [T]`` (log evidence divided by N), ``alpha [T]``, ``beta [T]`` (in sigma's dtype, computed
        in float64) and ``iterations [T]`` int64.
    """
    return torch.ops.emms.logme_evidence(sigma, proj, ynorm2, int(N), int(D), int(max_iter), float(tol), float(eps))


def cholesky_(G: torch.Tensor) -> torch.Tensor:
    """Cholesky factorization of the symmetric ``G [D, D]`` (or ``[M, D, D]``) in place, on the CPU, with the
    same bits for any thread count.

    G's lower triangle is read and overwritten by the factor L (``G = L L'``); the strict upper triangle
    keeps G's values, so G can be rebuilt from it and its diagonal. Fixed tiles, each a single-threaded
    LAPACK / BLAS call of the library torch links (docs/design.md §5). ``torch.linalg.cholesky_ex`` computes
    the same factor but first copies G, zeroes the upper triangle after, and (MKL's threaded potrf) rounds
    differently with another thread count.

    Args:
        G: float32 / float64, contiguous, on the CPU.

    Returns:
        ``info [] / [M]`` int32: 0, or the order of the first leading minor that is not positive definite
        (the factor is then incomplete), as ``cholesky_ex``'s. G's lower triangle is L, its strict upper
        triangle is not zero: read L through routines that use the lower triangle only
        (``cholesky_solve`` here, ``solve_triangular(..., upper=False)``), or ``G.tril()``.
    """
    return torch.ops.emms.cholesky_(G)


def cholesky_solve(L: torch.Tensor, Y: torch.Tensor, half: bool = False) -> torch.Tensor:
    """``L^-1 Y`` (``half``) or ``(L L')^-1 Y`` for a Cholesky factor ``L [D, D]`` (or ``[M, D, D]``), on the
    CPU, with the same bits for any thread count (MKL's threaded TRSM rounds differently with 1 and 2
    threads, so ``solve_triangular`` / ``cholesky_solve`` do not promise that).

    Args:
        L: float32 / float64, contiguous; only its lower triangle is read (``cholesky_``'s output as it is).
        Y: ``[D, c]`` (or ``[M, D, c]``) of L's dtype, any strides; not modified.
        half: solve with L only.

    Returns:
        ``X`` of Y's shape, a new contiguous tensor.
    """
    return torch.ops.emms.cholesky_solve(L, Y, bool(half))


def tridiagonal_solve(
    d: torch.Tensor, e: torch.Tensor, shifts: torch.Tensor, Y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(T + s I)^-1 Y`` for every shift s of ``shifts [g]``, T the symmetric tridiagonal matrix with diagonal
    ``d [D]`` and off-diagonal ``e [D - 1]``, on the CPU, with the same bits for any thread count.

    Per shift an ``L D L'`` factorization and its substitutions (LAPACK's ``pttrf`` / ``pttrs``), the shifts and
    chunks of 64 right-hand sides spread over torch's threads: a ridge path's solves in one call (``gcv``'s
    grid, docs/design.md §3).

    Args:
        d, e, shifts, Y: one dtype, float32 or float64; ``Y [D, c]`` any strides, not modified.

    Returns:
        ``X [g, D, c]`` and ``info [g]`` int32: 0, or where ``T + s I`` is not positive definite the 1-based
        index of the first non-positive pivot (X is then NaN for that shift).
    """
    return torch.ops.emms.tridiagonal_solve(d, e, shifts, Y)
