"""Fake (meta) kernels and autograd of the ``emms::*`` ops, so that ``torch.compile`` and ``opcheck`` can
trace them. Each fake kernel checks what the C++ glue checks (``csrc/include/emms/checks.h``) that depends
only on shapes and dtypes, then allocates the outputs; docs/design.md §5 states the ABI.
"""

from __future__ import annotations

import torch


def _check_same(a: torch.Tensor, b: torch.Tensor, op: str, names: str) -> None:
    torch._check(a.dtype == b.dtype, lambda: f"{op}: {names} must share a dtype (got {a.dtype} and {b.dtype})")
    torch._check(a.device == b.device, lambda: f"{op}: {names} must be on one device (got {a.device}, {b.device})")


@torch.library.register_fake("emms::simplex_project")
def _simplex_project_fake(v):
    torch._check(v.is_floating_point(), lambda: f"simplex_project: v must be floating-point (got {v.dtype})")
    torch._check(v.dim() >= 1, lambda: "simplex_project: v must be [..., K] with at least one dimension")
    return v.new_empty(v.shape)


@torch.library.register_fake("emms::wlsr_simplex")
def _wlsr_simplex_fake(A, B, mode, max_iter, tol):
    op = "wlsr_simplex"
    torch._check(B.is_floating_point(), lambda: f"{op}: B must be floating-point (got {B.dtype})")
    torch._check(
        B.dim() == 3 and B.shape[1] == B.shape[2] and B.shape[1] >= 1,
        lambda: f"{op}: B must be [M, K, K] with K >= 1 (got {list(B.shape)})",
    )
    M, K = B.shape[0], B.shape[-1]
    torch._check(
        tuple(A.shape) in ((K, K), (M, K, K)),
        lambda: f"{op}: A must be [K, K] or [M, K, K] with M = {M}, K = {K} (got {list(A.shape)})",
    )
    _check_same(A, B, op, "A and B")
    torch._check(0 <= mode <= 2, lambda: f"{op}: mode must be 0, 1 or 2 (got {mode})")
    torch._check(1 <= max_iter <= 1 << 30, lambda: f"{op}: max_iter must be in [1, 2^30] (got {max_iter})")
    torch._check(tol >= 0, lambda: f"{op}: tol must be >= 0 (got {tol})")
    return B.new_empty(M, K), B.new_empty(M), B.new_empty(M, dtype=torch.int64)


@torch.library.register_fake("emms::class_sums")
def _class_sums_fake(x, order, offsets):
    op = "class_sums"
    torch._check(x.is_floating_point(), lambda: f"{op}: x must be floating-point (got {x.dtype})")
    torch._check(x.dim() in (2, 3), lambda: f"{op}: x must be [N, D] or [B, N, D] (got {list(x.shape)})")
    torch._check(
        order.dtype == torch.int64 and offsets.dtype == torch.int64,
        lambda: f"{op}: order and offsets must be int64 (got {order.dtype} and {offsets.dtype})",
    )
    torch._check(
        order.dim() == 1 and order.shape[0] == x.shape[-2],
        lambda: f"{op}: order must be [N] with N = {x.shape[-2]} from x (got {list(order.shape)})",
    )
    torch._check(
        offsets.dim() == 1 and offsets.shape[0] >= 1,
        lambda: f"{op}: offsets must be [C + 1] (got {list(offsets.shape)})",
    )
    C = offsets.shape[0] - 1
    return x.new_empty((*x.shape[:-2], C, x.shape[-1]))


@torch.library.register_fake("emms::logme_evidence")
def _logme_evidence_fake(sigma, proj, ynorm2, N, D, max_iter, tol, eps):
    op = "logme_evidence"
    torch._check(
        sigma.dtype in (torch.float32, torch.float64),
        lambda: f"{op}: sigma must be float32 or float64 (got {sigma.dtype})",
    )
    torch._check(sigma.dim() == 1, lambda: f"{op}: sigma must be [k] (got {list(sigma.shape)})")
    k = sigma.shape[0]
    torch._check(
        proj.dim() == 2 and proj.shape[1] == k,
        lambda: f"{op}: proj must be [T, k] with k = {k} from sigma (got {list(proj.shape)})",
    )
    T = proj.shape[0]
    torch._check(
        ynorm2.dim() == 1 and ynorm2.shape[0] == T,
        lambda: f"{op}: ynorm2 must be [T] with T = {T} from proj (got {list(ynorm2.shape)})",
    )
    _check_same(sigma, proj, op, "sigma and proj")
    _check_same(sigma, ynorm2, op, "sigma and ynorm2")
    torch._check(
        N >= 1 and D >= k and N >= k, lambda: f"{op}: need 1 <= N and k = {k} <= min(N, D) (got N = {N}, D = {D})"
    )
    torch._check(1 <= max_iter <= 1 << 30, lambda: f"{op}: max_iter must be in [1, 2^30] (got {max_iter})")
    torch._check(tol >= 0 and eps >= 0, lambda: f"{op}: tol and eps must be >= 0 (got {tol}, {eps})")
    return (sigma.new_empty(T), sigma.new_empty(T), sigma.new_empty(T), sigma.new_empty(T, dtype=torch.int64))


def _simplex_project_setup(ctx, inputs, output):
    ctx.save_for_backward(output)


def _simplex_project_backward(ctx, grad):
    # On the support S of the projection the Jacobian is I_S - 1 1' / |S|; zero off it.
    (out,) = ctx.saved_tensors
    support = (out > 0).to(grad.dtype)
    size = support.sum(-1, keepdim=True).clamp_min(1)
    mean = (grad * support).sum(-1, keepdim=True) / size
    return support * (grad - mean)


def _class_sums_setup(ctx, inputs, output):
    x, order, offsets = inputs
    ctx.save_for_backward(order, offsets)


def _class_sums_backward(ctx, grad):
    # d out[c] / d x[n] = 1 when sample n belongs to class c: gather each sample's class row of grad.
    order, offsets = ctx.saved_tensors
    counts = offsets[1:] - offsets[:-1]
    cls_sorted = torch.repeat_interleave(torch.arange(counts.shape[0], device=grad.device), counts)
    cls = torch.empty_like(cls_sorted).scatter_(0, order, cls_sorted)
    return grad.index_select(-2, cls), None, None


torch.library.register_autograd(
    "emms::simplex_project", _simplex_project_backward, setup_context=_simplex_project_setup
)
torch.library.register_autograd("emms::class_sums", _class_sums_backward, setup_context=_class_sums_setup)


def _check_square_factor(op: str, name: str, T) -> None:
    """What checks.h checks of the cholesky ops' square operand: float32 / float64, [D, D] or [M, D, D]."""
    torch._check(
        T.dtype in (torch.float32, torch.float64), lambda: f"{op}: {name} must be float32 or float64 (got {T.dtype})"
    )
    torch._check(
        T.dim() in (2, 3) and T.shape[-1] == T.shape[-2],
        lambda: f"{op}: {name} must be [D, D] or [M, D, D] (got {list(T.shape)})",
    )


@torch.library.register_fake("emms::cholesky_")
def _cholesky_fake(G):
    _check_square_factor("cholesky_", "G", G)
    return G.new_empty(G.shape[:-2], dtype=torch.int32)


@torch.library.register_fake("emms::cholesky_solve")
def _cholesky_solve_fake(L, Y, half):
    op = "cholesky_solve"
    _check_square_factor(op, "L", L)
    torch._check(Y.dtype == L.dtype, lambda: f"{op}: Y must have L's dtype {L.dtype} (got {Y.dtype})")
    torch._check(
        Y.dim() == L.dim() and Y.shape[-2] == L.shape[-1] and Y.shape[:-2] == L.shape[:-2],
        lambda: f"{op}: Y must match L's batch and D (L is {list(L.shape)}, got Y {list(Y.shape)})",
    )
    return torch.empty(Y.shape, dtype=Y.dtype, device=Y.device)


@torch.library.register_fake("emms::tridiagonal_solve")
def _tridiagonal_solve_fake(d, e, shifts, Y):
    op = "tridiagonal_solve"
    torch._check(
        d.dtype in (torch.float32, torch.float64), lambda: f"{op}: d must be float32 or float64 (got {d.dtype})"
    )
    for name, t in (("e", e), ("shifts", shifts), ("Y", Y)):
        torch._check(t.dtype == d.dtype, lambda n=name, t=t: f"{op}: {n} must have d's dtype {d.dtype} (got {t.dtype})")
    torch._check(d.dim() == 1 and d.shape[0] >= 1, lambda: f"{op}: d must be [D] with D >= 1 (got {list(d.shape)})")
    torch._check(
        e.dim() == 1 and e.shape[0] == d.shape[0] - 1, lambda: f"{op}: e must be [D - 1] (got {list(e.shape)})"
    )
    torch._check(shifts.dim() == 1, lambda: f"{op}: shifts must be [g] (got {list(shifts.shape)})")
    torch._check(Y.dim() == 2 and Y.shape[0] == d.shape[0], lambda: f"{op}: Y must be [D, c] (got {list(Y.shape)})")
    g, D, c = shifts.shape[0], d.shape[0], Y.shape[1]
    return Y.new_empty((g, D, c)), Y.new_empty((g,), dtype=torch.int32)
