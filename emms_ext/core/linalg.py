"""Dense linear algebra whose bits do not depend on the thread count (docs/design.md §6).

torch's CPU drivers (MKL's potrf, trsm, syevd, gesdd) split one factorization across threads and round
differently with 1, 2 or 8 of them. Here each factorization runs on one thread: Cholesky factors and their
solves through the project's ops (``emms::cholesky_``, ``emms::cholesky_solve``), eigendecompositions and SVDs
through torch's drivers with MKL held to one thread for the call (``serial_lapack``); the matrices of a batch
are spread over torch's threads instead, so a zoo keeps every core busy. On a GPU, torch's routines.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..common import workspace
from ..ops.operators import cholesky_, cholesky_solve


@functools.cache
def _mkl_threads_local():
    """MKL's ``mkl_set_num_threads_local_`` in the library torch links (Fortran interface: the count by
    pointer; returns the previous local count, 0 = the global one), or None when torch's BLAS is not MKL."""
    if not torch.backends.mkl.is_available():
        return None
    for lib in sorted(Path(torch.__file__).parent.joinpath("lib").glob("*torch_cpu*")):
        try:
            fn = ctypes.CDLL(str(lib)).mkl_set_num_threads_local_
        except (OSError, AttributeError):
            continue
        fn.restype, fn.argtypes = ctypes.c_int, [ctypes.POINTER(ctypes.c_int)]
        return fn
    return None


def thread_independent_lapack() -> bool:
    """True when torch's CPU LAPACK calls can be held to one thread (MKL builds of torch: x86 Linux and
    Windows). Elsewhere eigendecompositions and SVDs agree across thread counts to rounding only."""
    return _mkl_threads_local() is not None


@contextlib.contextmanager
def serial_lapack():
    """MKL runs the LAPACK / BLAS calls made by this thread inside the block on one thread (thread-local;
    torch's own thread count and other threads are untouched). A no-op without MKL."""
    fn = _mkl_threads_local()
    if fn is None:
        yield
        return
    # torch initializes a thread's counts lazily, MKL's local one included, on its first parallel call: a
    # fresh worker thread would do so inside the block and run that first call threaded (measured).
    torch.get_num_threads()
    before = fn(ctypes.byref(ctypes.c_int(1)))
    try:
        yield
    finally:
        fn(ctypes.byref(ctypes.c_int(before)))


_POOL: dict = {}  # (process id, worker count) -> the executor kept for it
_IN_WORKER = threading.local()


def run_tasks(fn: Callable, tasks: list) -> list:
    """[fn(t) for t in tasks], the tasks spread over torch's thread count of workers (kept between calls; a
    task that itself runs tasks runs them inline). Each task should hold MKL to one thread (``serial_lapack``)
    so that its bits do not depend on which worker, or how many, there are."""
    workers = min(torch.get_num_threads(), len(tasks))
    if workers <= 1 or getattr(_IN_WORKER, "on", False):
        return [fn(t) for t in tasks]
    key = (os.getpid(), workers)  # a forked child inherits the executor but not its threads
    pool = _POOL.get(key)
    if pool is None:
        pool = _POOL[key] = ThreadPoolExecutor(workers, initializer=_mark_worker)
    # Grad and inference mode are thread-local: the workers take the caller's (a tensor made under
    # inference_mode cannot be written outside it).
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def in_caller_mode(t):
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return fn(t)

    return list(pool.map(in_caller_mode, tasks))


def _mark_worker() -> None:
    _IN_WORKER.on = True


def _per_matrix(fn: Callable, A: torch.Tensor):
    """fn (a torch.linalg driver) on each matrix of A [..., m, n] with MKL on one thread, the matrices spread
    over torch's threads; the outputs stacked back into A's batch shape. Each matrix gets the same call
    whichever worker takes it, so the bits do not depend on the thread count."""

    def one(a):
        with serial_lapack():
            return fn(a)

    batch = A.shape[:-2]
    flat = A.reshape(-1, *A.shape[-2:])
    outs = run_tasks(one, list(flat))
    if A.dim() == 2:
        return outs[0]
    if not outs:  # an empty batch: torch's driver gives the shapes
        return fn(A)
    return tuple(torch.stack(parts).reshape(*batch, *parts[0].shape) for parts in zip(*outs))


def eigh(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues [..., D] ascending, eigenvectors [..., D, D]) of symmetric G [..., D, D] (lower triangle
    read), as ``torch.linalg.eigh``; on the CPU the same bits for any thread count."""
    if G.device.type != "cpu":
        return torch.linalg.eigh(G)
    return _per_matrix(torch.linalg.eigh, G)


def svd(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD (U [..., m, k], S [..., k], Vh [..., k, n]) of x [..., m, n], k = min(m, n), as
    ``torch.linalg.svd(x, full_matrices=False)``; on the CPU the same bits for any thread count."""
    thin = functools.partial(torch.linalg.svd, full_matrices=False)
    if x.device.type != "cpu":
        return thin(x)
    return _per_matrix(thin, x)


def cholesky(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L [M, D, D], info [M]) of Grams G [M, D, D]. On the CPU in place (``emms::cholesky_``: L is G itself,
    its lower triangle the factor, its strict upper triangle still G's), which saves cholesky_ex's copy of G
    and its zeroing of a triangle (0.15x a Gram at D = 2048, docs/design.md §5). Elsewhere ``cholesky_ex``."""
    if G.device.type != "cpu" or not G.is_contiguous():
        return torch.linalg.cholesky_ex(G)
    return G, cholesky_(G)


def triangular_solve(L: torch.Tensor, Y: torch.Tensor, half: bool) -> torch.Tensor:
    """``L^-1 Y`` (half) or ``(L L')^-1 Y`` for factors L [M, D, D] (lower triangle read) and Y [M, D, c], in L's
    precision (a float32 factor of a float32-formed Gram), returned in Y's dtype. On the CPU
    ``emms::cholesky_solve`` (the same bits for any thread count, docs/design.md §5), elsewhere torch's solves."""
    Yc = Y.to(L.dtype)
    if L.device.type == "cpu" and L.is_contiguous():
        return cholesky_solve(L, Yc, half).to(Y.dtype)
    X = torch.linalg.solve_triangular(L, Yc, upper=False) if half else torch.cholesky_solve(Yc, L)
    return X.to(Y.dtype)


def inverse_trace(L: torch.Tensor) -> torch.Tensor:
    """[M] float64 ``||L^-1||_F^2 = tr (L L')^-1`` of factors L [M, D, D] (lower triangle read): L^-1 from the
    identity in L's precision (leading zero tiles skipped: D^3/3), then float64 row sums and their sum, each a
    sequential reduction (one torch sum over everything would split across threads and round with their
    count)."""
    M, D = L.shape[0], L.shape[1]
    eye = torch.eye(D, dtype=L.dtype, device=L.device).expand(M, D, D)
    return triangular_solve(L, eye, True).to(torch.float64).square_().sum(2).sum(1)


def tridiagonalize(
    G: torch.Tensor, Y: torch.Tensor, single: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(d [D], e [D-1] float64, Q'Y [D, c] in Y's dtype) with ``G = Q T Q'``, T symmetric tridiagonal with
    diagonal d and off-diagonal e, for one symmetric float64 G [D, D] on the CPU and Y [D, c]: LAPACK's
    ``dsytrd`` (SciPy's), ``ssytrd`` on G in float32 if ``single`` (for a Gram formed in float32: 0.55x the
    time at D = 2048, and no less accurate than G itself), then Q's Householder reflectors applied to Y in
    that precision, 64 at a time (compact WY, ``T_b^-1 = diag(1/tau) + striu(V'V)``).

    Half the flops of an eigendecomposition's and no eigenvectors: what a ridge path needs of G in
    ``T``'s basis (docs/design.md §3, "gcv"). SciPy's BLAS threads the reduction: its last bits follow that
    BLAS's own thread count (not torch's)."""
    from scipy.linalg import lapack

    D = G.shape[0]
    if D < 2:
        return G.diagonal().clone(), G.new_zeros(0), Y.clone()
    sytrd, lwork = (lapack.ssytrd, lapack.ssytrd_lwork) if single else (lapack.dsytrd, lapack.dsytrd_lwork)
    # G is symmetric: its row-major buffer read column-major is G itself. sytrd copies G; the float32 copy
    # made here it may overwrite instead.
    G_in = workspace.converted(G, torch.float32) if single else G
    c, d, e, tau, info = sytrd(G_in.numpy().T, lower=1, lwork=int(lwork(D, lower=1)[0]), overwrite_a=int(single))
    if info != 0:
        raise RuntimeError(f"sytrd failed (info={info})")
    # A[i, j] = c(i, j): reflector j below row j + 1. The reflectors are applied in sytrd's precision.
    A, tau = torch.from_numpy(c), torch.from_numpy(tau)
    out = Y.to(A.dtype, copy=True)
    for j0 in range(0, D - 1, _REFLECTOR_BLOCK):
        j1 = min(j0 + _REFLECTOR_BLOCK, D - 1)
        V = A[j0 + 1 :, j0:j1].tril(-1)  # reflector q of the block: 1 at row q, its stored tail below
        V.diagonal().fill_(1.0)
        t = tau[j0:j1].clone()
        none = t == 0  # H = I (a column already reduced): v = 0 with tau = 1 keeps the formula valid
        if bool(none.any()):
            V[:, none], t[none] = 0.0, 1.0
        Tinv = (V.T @ V).triu_(1)
        Tinv.diagonal().copy_(1.0 / t)
        sub = out[j0 + 1 :]  # (H_j0 ... H_j1-1)' = I - V T' V' on rows j0 + 1 ..
        sub -= V @ torch.linalg.solve_triangular(Tinv.T, V.T @ sub, upper=False)
    f64 = torch.float64
    return torch.from_numpy(d).to(f64), torch.from_numpy(e).to(f64), out.to(Y.dtype)


_REFLECTOR_BLOCK = 64  # Householder reflectors applied per GEMM pair in ``tridiagonalize``


def tridiagonal_eigvalsh(d: torch.Tensor, e: torch.Tensor, single: bool = False) -> torch.Tensor:
    """[D] float64 eigenvalues, ascending, of the symmetric tridiagonal matrix with diagonal d [D] and
    off-diagonal e [D-1] (LAPACK's ``dsterf``, O(D^2), sequential; ``ssterf`` if ``single``)."""
    from scipy.linalg import lapack

    if d.numel() < 2:  # (SciPy's wrapper refuses an empty off-diagonal)
        return d.to(torch.float64, copy=True)
    sterf, dtype = (lapack.ssterf, torch.float32) if single else (lapack.dsterf, torch.float64)
    w, info = sterf(d.to(dtype).numpy(), e.to(dtype).numpy())
    if info != 0:
        raise RuntimeError(f"sterf failed (info={info})")
    return torch.from_numpy(w).to(torch.float64)


_SUM_ROW = 4096  # elements summed in one sequential pass


def ordered_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of every element of x (a 0-d tensor) in an order fixed by x's size alone: rows of 4096
    elements summed one per thread, then their sums the same way. ``x.sum()`` over more than about 1e5
    elements splits the work by the thread count and rounds with it (docs/design.md §6)."""
    x = x.reshape(-1)
    while x.numel() > _SUM_ROW:
        pad = -x.numel() % _SUM_ROW
        if pad:
            x = torch.cat([x, x.new_zeros(pad)])
        x = x.view(-1, _SUM_ROW).sum(1)
    return x.sum()


_GRAM_BLOCK = 256  # columns per block of a CPU Gram: GEMMs big enough for full speed, most of a triangle skipped
_MODEL_CHUNK = 8  # narrow models (one block) per task: fixed, so a model's product never depends on the threads


def _col_blocks(D: int, block: int) -> list[slice]:
    nb = max(1, round(D / block))
    edges = [round(D * i / nb) for i in range(nb + 1)]
    return [slice(edges[i], edges[i + 1]) for i in range(nb)]


def symmetric_gram(x: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """x' x for x [..., n, D] as float64 [..., D, D], computing only the blocks on and below the diagonal.

    torch exposes no SYRK; column blocks of ~256 skip most of the upper triangle (D = 768: 6 of 9 block
    products; 2048: 36 of 64), then mirror it. On the CPU each block row up to its diagonal block is one panel
    GEMM and one task on one thread (``run_tasks``; MKL's threaded GEMM splits a small product's inner sum by
    the thread count: other bits), widest first; panels run 0.87-0.96x the time of separate block products
    and 0.62x one threaded ``x' x`` at D = 2048 (benchmarks/README.md). A GPU gets 512-column blocks.
    """
    D = x.shape[-1]
    if x.device.type != "cpu":
        return _gram_blocks(x, _col_blocks(D, block or 512))
    blocks = _col_blocks(D, block or _GRAM_BLOCK)
    flat = x.reshape(math.prod(x.shape[:-2]), *x.shape[-2:])  # (not -1: ambiguous with no rows)
    G = workspace.empty((flat.shape[0], D, D), torch.float64)
    M = flat.shape[0]
    if len(blocks) == 1:  # narrow: fixed chunks of models per task
        chunks = [slice(m, min(m + _MODEL_CHUNK, M)) for m in range(0, M, _MODEL_CHUNK)]

        def narrow(ms: slice):
            with serial_lapack():
                G[ms] = flat[ms].transpose(1, 2) @ flat[ms]

        run_tasks(narrow, chunks)
    else:

        def task(t):
            m, i = t
            rows = blocks[i]
            with serial_lapack():  # block row i, up to its diagonal block: one panel GEMM
                panel = flat[m, :, rows].T @ flat[m, :, : rows.stop]
            G[m, rows, : rows.stop] = panel
            G[m, : rows.start, rows] = panel[:, : rows.start].T

        # Widest panels first, so that the workers finish together.
        run_tasks(task, [(m, i) for i in reversed(range(len(blocks))) for m in range(M)])
    return G.reshape(*x.shape[:-2], D, D)


def _gram_blocks(x: torch.Tensor, blocks: list[slice]) -> torch.Tensor:
    """The lower block products of x' x [..., D, D] in float64, torch's batched GEMMs (a GPU's)."""
    if len(blocks) == 1:
        return (x.transpose(-1, -2) @ x).to(torch.float64)
    D = x.shape[-1]
    G = torch.empty(*x.shape[:-2], D, D, dtype=torch.float64, device=x.device)
    for i, rows in enumerate(blocks):
        xi_t = x[..., rows].transpose(-1, -2)
        for cols in blocks[: i + 1]:
            blk = (xi_t @ x[..., cols]).to(torch.float64)
            G[..., rows, cols] = blk
            if rows != cols:
                G[..., cols, rows] = blk.transpose(-1, -2)
    return G


def cross_product(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x' y for x [M, n, D] and y [n, r] (shared) as float64 [M, D, r]; on the CPU column blocks of x as tasks
    on one thread each (``symmetric_gram``'s reason)."""
    if x.device.type != "cpu":
        return (x.transpose(1, 2) @ y).to(torch.float64)
    M, _, D = x.shape
    out = torch.empty(M, D, y.shape[1], dtype=torch.float64)
    blocks = _col_blocks(D, _GRAM_BLOCK)

    def task(t):
        m, rows = t
        with serial_lapack():
            out[m, rows] = x[m, :, rows].T @ y

    run_tasks(task, [(m, b) for m in range(M) for b in blocks])
    return out
