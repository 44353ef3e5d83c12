"""emms_ext.evaluate against scipy / numpy and hand cases; the table printer."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from emms_ext.selection.evaluate import evaluate, format_table, kendall_tau, pearson, rel_at_k, weighted_tau


@pytest.mark.parametrize("seed", range(4))
def test_against_scipy(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(12), rng.standard_normal(12)
    assert weighted_tau(a, b) == pytest.approx(scipy.stats.weightedtau(a, b)[0], abs=1e-15)
    assert kendall_tau(list(a), b) == pytest.approx(scipy.stats.kendalltau(a, b)[0], abs=1e-15)
    assert pearson(a, b) == pytest.approx(scipy.stats.pearsonr(a, b)[0], abs=1e-12)


def test_hand_cases():
    truth = [0.9, 0.8, 0.7, 0.6]
    assert weighted_tau([4, 3, 2, 1], truth) == pytest.approx(1.0)
    assert weighted_tau([1, 2, 3, 4], truth) == pytest.approx(-1.0)
    assert kendall_tau([4, 3, 1, 2], truth) == pytest.approx(4 / 6)  # one discordant pair of six
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert rel_at_k([1, 5, 2, 0], [0.5, 0.6, 0.8, 0.4], 1) == pytest.approx(0.6 / 0.8)
    assert rel_at_k([1, 5, 2, 0], [0.5, 0.6, 0.8, 0.4], 2) == pytest.approx(1.0)
    # weighted tau weighs the top: swapping the top pair costs more than swapping the bottom pair
    assert weighted_tau([3, 4, 2, 1], truth) < weighted_tau([4, 3, 1, 2], truth)


def test_evaluate_common_models():
    out = evaluate({"a": 3.0, "b": 2.0, "c": 1.0, "x": 9.0}, {"a": 0.9, "b": 0.7, "c": 0.8, "y": 1.0})
    assert out["models"] == 3
    assert out["kendall_tau"] == pytest.approx(1 / 3)
    assert out["rel@1"] == pytest.approx(1.0) and out["rel@3"] == pytest.approx(1.0)
    assert out["weighted_tau"] == pytest.approx(scipy.stats.weightedtau([3, 2, 1], [0.9, 0.7, 0.8])[0])


def test_errors():
    with pytest.raises(ValueError, match="one length"):
        weighted_tau([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="M >= 2"):
        kendall_tau([1], [1])
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, M = 3\]"):
        rel_at_k([1, 2, 3], [1, 2, 3], 4)
    with pytest.raises(ValueError, match="share at least 2 models"):
        evaluate({"a": 1}, {"a": 1, "b": 2})
    with pytest.raises(ValueError, match="finite"):
        pearson([1, float("nan")], [1, 2])


def test_format_table():
    table = format_table({"emms": {"cifar": 0.5, "dtd": 0.7}, "logme": {"cifar": 0.25}}, fmt=".2f")
    lines = table.splitlines()
    assert lines[0] == "| method | cifar | dtd | mean |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2] == "| emms | **0.50** | **0.70** | 0.60 |"
    assert lines[3] == "| logme | 0.25 | - | 0.25 |"
    assert "**" not in format_table({"m": {"d": 1.0}})


def test_weighted_tau_of_tied_scores_is_zero_not_nan():
    # every candidate tied (e.g. all fit exactly in sample): nothing is ranked
    assert weighted_tau([0.0, 0.0, 0.0], [0.1, 0.5, 0.3]) == 0.0
    assert weighted_tau([0.0, 0.0, 1.0], [0.1, 0.5, 0.3]) != 0.0
