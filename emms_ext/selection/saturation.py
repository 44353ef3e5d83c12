"""Saturation: a metric that gives (numerically) the same score to most candidates of a zoo cannot rank them.

Scores tie when they lie within ``TIE_RTOL`` of the scores' scale (the largest absolute finite score): far
above the rounding of a float64 score (about 1e-15 relative), far below any difference a metric means.
``saturated`` names the metric, how many candidates tie and the likely cause, in one line.
"""

from __future__ import annotations

import math

from .metrics import EMMS_METRICS

TIE_RTOL = 1e-9  # scores within this fraction of max |score| are the same score

# EMMS fits scored on their own samples: exact (tied at 0) once D >= N - 1; the cure is a held-out score.
_IN_SAMPLE_EMMS = {name for name, mode in EMMS_METRICS.items() if mode in ("exact", "alternating", "reference")}
_IN_SAMPLE_EMMS.add("emms_one")


def _largest_tie(values: list[float], tol: float) -> tuple[int, float]:
    """(size, value) of the largest group of values spanning at most ``tol`` (values sorted: a sliding window)."""
    best, at, lo = 0, math.nan, 0
    for hi, v in enumerate(values):
        while v - values[lo] > tol:
            lo += 1
        if hi - lo + 1 > best:
            best, at = hi - lo + 1, values[lo]
    return best, at


def saturated(
    scores: dict[str, float], metric: str, n_samples: int | None = None, widths: dict | None = None
) -> str | None:
    """A one-line message when ``metric`` gives the same score (within ``TIE_RTOL`` of max |score|) to every
    candidate (two or more), or to more than half of them with at least 3 tied; None otherwise.

    Args:
        scores: candidate -> score (higher is better). Non-finite scores (a metric undefined for that
            candidate) are left out of the comparison.
        metric: the metric's registry name, named in the message; the suggested cure depends on it.
        n_samples: N, the number of samples scored, if known.
        widths: candidate -> feature width D, if known: tied candidates with D >= N point at the cause.

    The message names the metric, how many candidates tie and at what value, and the likely cause: D >= N
    (when ``widths`` and ``n_samples`` show it) or few samples; the cure suggested is ``mode="gcv"`` /
    ``"loo"`` or a ridge for the in-sample EMMS scores, more samples otherwise.
    """
    finite = sorted((float(s), name) for name, s in scores.items() if math.isfinite(float(s)))
    n = len(finite)
    if n < 2:
        return None
    values = [v for v, _ in finite]
    scale = max(abs(values[0]), abs(values[-1]))
    size, value = _largest_tie(values, TIE_RTOL * scale)
    if not (size == n or (size >= 3 and 2 * size > n)):
        return None
    tied = [name for v, name in finite if value <= v <= value + TIE_RTOL * scale]
    who = f"all {n} candidates score" if size == n else f"{size} of {n} candidates score"
    causes = []
    if n_samples is not None and widths:
        wide = [name for name in tied if name in widths and int(widths[name]) >= n_samples]
        if wide:
            lo, hi = min(int(widths[k]) for k in wide), max(int(widths[k]) for k in wide)
            causes.append(
                f"D >= N = {n_samples} for {len(wide)} of the {size} tied candidates "
                f"(D = {lo if lo == hi else f'{lo}..{hi}'}): features enough to fit the samples exactly"
            )
    if not causes:
        causes.append(f"few samples (N = {n_samples})" if n_samples is not None else "few samples")
    if metric in _IN_SAMPLE_EMMS:
        cure = "use mode='gcv' or 'loo' (metric emms_gcv / emms_loo) or a ridge"
    else:
        cure = "use more samples, or a score that holds samples out (emms_gcv, emms_loo)"
    return (
        f"{metric} saturates: {who} {value:.6g} (tied within {TIE_RTOL:g} relative), so it cannot rank "
        f"them; likely cause: {'; '.join(causes)}; {cure}."
    )
