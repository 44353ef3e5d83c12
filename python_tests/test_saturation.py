"""selection.saturation.saturated on hand-made score tables: all equal, half equal, distinct, near-equal inside
and outside the tolerance, two candidates, the named cause and cure."""

from __future__ import annotations

import math

import pytest

from emms_ext.selection import saturated
from emms_ext.selection.saturation import TIE_RTOL


def test_all_equal():
    msg = saturated({"a": 5.0, "b": 5.0, "c": 5.0, "d": 5.0}, "hscore")
    assert msg is not None and "\n" not in msg
    assert msg.startswith("hscore saturates: all 4 candidates score 5 ")
    assert "more samples" in msg


def test_more_than_half_equal():
    msg = saturated({"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.4, "e": 0.9}, "sfda", n_samples=150)
    assert msg is not None and "3 of 5 candidates score 1 " in msg and "N = 150" in msg


def test_half_equal_is_not_saturation():
    assert saturated({"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.4, "e": 0.9, "f": 0.2}, "sfda") is None
    assert saturated({"a": 1.0, "b": 1.0, "c": 0.5, "d": 0.2}, "sfda") is None


def test_two_of_three_is_not_saturation():
    """A pair that ties (e.g. one model listed twice) is not a saturated metric: a group needs 3."""
    assert saturated({"a": 2.0, "b": 2.0, "c": 1.0}, "logme") is None


def test_distinct():
    assert saturated({"a": -1.0, "b": -2.0, "c": -3.0, "d": -1.5}, "logme") is None


@pytest.mark.parametrize("scale", [1.0, 1e-6, 1e6, -3e3])
def test_near_equal_inside_and_outside_the_tolerance(scale):
    inside = {k: scale * (1 + i * 0.3 * TIE_RTOL) for i, k in enumerate("abc")}  # spans 0.6 TIE_RTOL
    assert saturated(inside, "gbc") is not None
    outside = {k: scale * (1 + i * 3 * TIE_RTOL) for i, k in enumerate("abc")}  # neighbours 3 TIE_RTOL apart
    assert saturated(outside, "gbc") is None


def test_tie_window_does_not_chain():
    """Values each within the tolerance of the next but spanning more than it are not one tie."""
    step = 0.6 * TIE_RTOL
    scores = {k: 1 + i * step for i, k in enumerate("abcde")}  # span 2.4 TIE_RTOL: at most 2 within one window
    assert saturated(scores, "gbc") is None


def test_two_candidates():
    assert saturated({"a": 0.0, "b": 0.0}, "emms") is not None
    assert saturated({"a": 0.0, "b": -0.5}, "emms") is None
    assert saturated({"a": 3.0}, "emms") is None and saturated({}, "emms") is None


def test_undefined_scores_are_left_out():
    scores = {"a": 1.0, "b": 1.0, "c": math.nan, "d": math.inf}
    msg = saturated(scores, "sfda")
    assert msg is not None and "all 2 candidates" in msg
    assert saturated({"a": math.nan, "b": math.nan, "c": 2.0}, "sfda") is None


def test_cause_and_cure():
    scores = {"narrow": 0.0, "wide": 0.0, "wider": 0.0, "other": -0.2}
    widths = {"narrow": 100, "wide": 384, "wider": 1280, "other": 16}
    msg = saturated(scores, "emms", n_samples=200, widths=widths)
    assert "D >= N = 200 for 2 of the 3 tied candidates" in msg and "D = 384..1280" in msg
    assert "mode='gcv' or 'loo'" in msg and "ridge" in msg
    msg = saturated(scores, "hscore", n_samples=200, widths=widths)
    assert "more samples" in msg and "gcv' or" not in msg
    msg = saturated(scores, "emms_one", n_samples=1000, widths=widths)
    assert "D >= N = 1000 for 1 of the 3 tied candidates (D = 1280)" in msg and "mode='gcv'" in msg
    msg = saturated(scores, "emms_one", n_samples=2000, widths=widths)
    assert "few samples (N = 2000)" in msg and "D >=" not in msg
