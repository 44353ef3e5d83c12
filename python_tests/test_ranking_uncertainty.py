"""rank(..., uncertainty=True): error bars, paired comparisons, the top set, ties reported as ties, and the
same ranking whatever the thread count."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import emms_ext
from emms_ext import rank
from emms_ext.core.folds import assign_folds, fold_subsets, jackknife_stderr, leave_one_fold_out
from emms_ext.selection import Ranking, get_metric
from emms_ext.selection.consensus import aggregate
from emms_ext.selection.targets import Target

N, C = 240, 6


def task(seed: int = 0):
    """Class labels, F-labels and a zoo: four models of growing signal and two wide (D >= N) ones."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (N,), generator=g)
    signal = torch.randn(C, 16, generator=g)
    zoo = {f"q{q}": q * signal[y] + torch.randn(N, 16, generator=g) for q in (0.3, 0.6, 0.62, 1.5)}
    zoo["wide_b"] = torch.randn(N, 300, generator=g)
    zoo["wide_a"] = torch.randn(N, 260, generator=g)
    labels = emms_ext.ClassLabels(torch.randn(C, 8, 2, generator=g, dtype=torch.float64), y)
    return zoo, y, labels


def quiet_rank(*args, **kw) -> Ranking:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rank(*args, **kw)


@pytest.mark.parametrize("metric", ["emms_gcv", "emms_evidence", "logme"])
def test_stderr_is_the_jackknife_of_the_leave_one_fold_out_scores(metric):
    zoo, y, labels = task()
    r = quiet_rank(zoo, y if metric == "logme" else labels, metric, uncertainty=True, folds=5, seed=3)
    subsets = fold_subsets(assign_folds(N, 5, seed=3, classes=y))
    spec = get_metric(metric)
    for name in ["q0.3", "q1.5", "wide_a"]:
        if metric == "logme":
            ref = leave_one_fold_out(lambda x, t: spec.fn(x, Target(labels=t)), zoo[name], y, subsets)
        else:
            mode = {"emms_gcv": "gcv", "emms_evidence": "evidence"}[metric]
            ref = leave_one_fold_out(
                lambda x, lab, mode=mode: emms_ext.emms_score(x, lab, mode=mode).score, zoo[name], labels, subsets
            )
        if metric == "emms_gcv":
            # GCV's fold scores hold the full data's ridge choice (core/jackknife.py): the same numbers as
            # emms_score's; within a few % of re-scoring's SE (first-order equal: the score is a minimum
            # over the ridge), where a subset picking another ridge moves a fold's score by ~1e-3
            assert r.stderr[name] == pytest.approx(jackknife_stderr(ref), rel=0.1)
            own = emms_ext.emms_score(zoo[name], labels, "gcv", folds=5, seed=3).fold_scores
            assert (own <= ref + 1e-7).all()
            ref = own
        assert torch.allclose(torch.tensor(r.fold_scores[name], dtype=torch.float64), ref, rtol=1e-8, atol=1e-12)
        assert r.stderr[name] == pytest.approx(jackknife_stderr(ref), rel=1e-7)
    # The clearly better model leads with certainty; the two near-equal ones are not told apart.
    assert r.best == "q1.5" and r.top_set() == ["q1.5"] and r.prob_better("q1.5", "q0.62") > 0.99
    assert 0.0 <= r.prob_better("q0.62", "q0.6") <= 1.0
    assert r.prob_better("q0.6", "q0.62") == pytest.approx(1 - r.prob_better("q0.62", "q0.6"), abs=1e-12)


def test_degenerate_models_tie_at_zero_in_name_order_and_the_table_says_why():
    zoo, _, labels = task()
    r = quiet_rank(zoo, labels, "emms", uncertainty=True, folds=4)
    assert r.scores["wide_a"] == r.scores["wide_b"] == 0.0
    assert r.details["wide_a"].degenerate and r.details["wide_b"].degenerate and not r.details["q1.5"].degenerate
    assert r.order[:2] == ["wide_a", "wide_b"] and r.ties == [["wide_a", "wide_b"]]
    assert r.stderr["wide_a"] == 0.0 and r.prob_better("wide_a", "wide_b") == 0.5
    text = str(r)
    assert "(tie 1)" in text and "tie 1: wide_a, wide_b" in text and "mode='gcv'" in text
    # Without error bars the table and the exports still carry the ties
    plain = quiet_rank(zoo, labels, "emms")
    assert plain.ties == [["wide_a", "wide_b"]] and plain.to_dict()["ties"] == [["wide_a", "wide_b"]]
    with pytest.raises(ValueError, match=r"uncertainty=True"):
        plain.prob_better("q1.5", "q0.3")
    with pytest.raises(ValueError, match=r"uncertainty=True"):
        plain.top_set()


@pytest.mark.parametrize("metric", ["emms", "emms_alternating", "emms_reference", "emms_gcv", "emms_loo", "logme"])
def test_same_ranking_with_one_and_two_threads(metric):
    zoo, y, labels = task(5)
    before, runs = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs.append(quiet_rank(zoo, y if metric == "logme" else labels, metric, uncertainty=True, folds=4))
    finally:
        torch.set_num_threads(before)
    a, b = runs
    assert a.scores == b.scores and a.order == b.order and a.fold_scores == b.fold_scores
    assert a.top_set() == b.top_set() and a.ties == b.ties


def test_consensus_error_bars_aggregate_the_members_fold_by_fold():
    zoo, y, labels = task(2)
    members = ["emms_gcv", "logme"]
    r = quiet_rank(
        zoo, Target(labels=y, label_embeddings=labels), "consensus", metrics=members, uncertainty=True, folds=4
    )
    runs = {
        m: quiet_rank(zoo, Target(labels=y, label_embeddings=labels), m, uncertainty=True, folds=4) for m in members
    }
    for f in range(4):
        ref = aggregate({m: {n: runs[m].fold_scores[n][f] for n in zoo} for m in members})
        assert all(r.fold_scores[n][f] == pytest.approx(ref[n], abs=1e-9) for n in zoo)
    assert r.stderr and r.top_set()[0] == r.best


def test_exports_carry_the_error_bars(tmp_path):
    zoo, y, _ = task()
    r = quiet_rank(zoo, y, "logme", uncertainty=True, folds=5)
    back = Ranking.from_json(r.to_json(tmp_path / "r.json"))
    assert back.fold_scores == r.fold_scores and back.stderr == r.stderr and back.top_set() == r.top_set()
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["top_set"] == r.top_set() and d["stderr"]["q1.5"] == pytest.approx(r.stderr["q1.5"])
    rows = {row.split(",")[1]: row.split(",") for row in r.to_csv().splitlines()[1:]}
    assert float(rows["q1.5"][3]) == pytest.approx(r.stderr["q1.5"]) and rows["q1.5"][4] == "yes"
    assert rows["q0.3"][4] == "no"
    container = pytest.importorskip("matplotlib.container")
    fig = r.plot(tmp_path / "r.png")
    assert any(isinstance(c, container.ErrorbarContainer) for c in fig.axes[0].containers)
    assert (tmp_path / "r.png").stat().st_size > 0
    plain = quiet_rank(zoo, y, "logme").plot()
    assert not any(isinstance(c, container.ErrorbarContainer) for c in plain.axes[0].containers)


def test_bad_fold_assignments_are_named():
    zoo, _, labels = task()
    x = zoo["q0.3"]
    with pytest.raises(ValueError, match=r"folds must be an int F >= 2 or an \[N\] int"):
        emms_ext.emms_score(x, labels, folds=torch.zeros(N - 1, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"none empty"):
        emms_ext.emms_score(x, labels, folds=torch.zeros(N, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"folds must be an int >= 2"):
        quiet_rank(zoo, labels, "emms", uncertainty=True, folds=1)


def test_a_saturated_metric_warns_once_and_the_ranking_records_it():
    zoo, _, labels = task(4)
    g = torch.Generator().manual_seed(9)
    wide = {**zoo, "wide_c": torch.randn(N, 280, generator=g), "wide_d": torch.randn(N, 400, generator=g)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = rank({k: v for k, v in wide.items() if k.startswith("wide") or k == "q1.5"}, labels, "emms")
    sat = [w for w in caught if issubclass(w.category, emms_ext.baselines.SaturationWarning)]
    assert len(sat) == 1 and r.saturation == str(sat[0].message) and r.saturation in r.warnings
    assert "emms saturates: 4 of 5 candidates" in r.saturation and "D >= N = 240" in r.saturation
    assert "mode='gcv'" in r.saturation and r.to_dict()["saturation"] == r.saturation
    assert Ranking.from_dict(r.to_dict()).saturation == r.saturation
    assert quiet_rank(wide, labels, "emms_gcv").saturation is None


@pytest.mark.parametrize("uncertainty", [False, True])
def test_sfda_saturation_is_one_message_per_metric(uncertainty):
    """SFDA warns for each saturated model (and again on each fold subset); rank() turns those into one
    SaturationWarning for the metric: the zoo's tie when most candidates tie, else the first model's."""
    n, classes = 150, 15
    g = torch.Generator().manual_seed(3)
    y = torch.arange(n) % classes
    wide = {f"wide{i}": torch.randn(n, 384, generator=g, dtype=torch.float64) for i in range(3)}
    narrow = {
        f"narrow{i}": 0.5 * torch.randn(classes, 8, generator=g)[y] + torch.randn(n, 8, generator=g) for i in (0, 1)
    }

    def ranked(zoo):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = rank(zoo, y, "sfda", uncertainty=uncertainty, folds=3)
        sat = [str(w.message) for w in caught if issubclass(w.category, emms_ext.SaturationWarning)]
        return r, sat

    r, sat = ranked(wide)
    assert set(r.scores.values()) == {1.0}
    assert len(sat) == 1 and sat[0] == r.saturation and "sfda saturates: all 3 candidates" in r.saturation
    assert [m for m in r.warnings if "saturates" in m] == [r.saturation]
    r, sat = ranked({"wide0": wide["wide0"], **narrow})
    assert r.scores["wide0"] == 1.0 and max(r.scores["narrow0"], r.scores["narrow1"]) < 1.0
    assert r.saturation is None and len(sat) == 1 and "N = 150 samples with D = 384" in sat[0]
    assert [m for m in r.warnings if "saturates" in m] == sat
