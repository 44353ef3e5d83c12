"""Benchmark logic that CI can check: the GPU benchmark script run small on the CPU (no GPU in CI), to keep
it from rotting between the sessions that have a GPU; the statistics of regimes.py on synthetic units; the
several-words truth's retrieval and loss on hand-made cases; the error-bar cost benchmark run small."""

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_smoke_run_on_cpu(tmp_path):
    out = tmp_path / "bench.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_gpu.py"),
            "--device",
            "cpu",
            "--models",
            "2,4",
            "--dims",
            "32",
            "--N",
            "600",
            "--L",
            "16",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    for section in (
        "Agreement with float64",
        "Zoo throughput",
        "Fused solve inside the pipeline",
        "Against per-model loops",
    ):
        assert section in text
    # every target is reported with its verdict (scripts/gpu_check.sh collects these lines)
    targets = re.findall(r"^TARGET .*: .* \(goal .*\) (PASS|FAIL)$", text, flags=re.M)
    assert len(targets) == 6, text
    # the agreement table: "| precision | max rel. score error | Kendall tau vs float64 |", one row each
    rows = dict(re.findall(r"^\| (float64|float32|tf32) \| (\S+ \| \S+) \|$", text, flags=re.M))
    assert set(rows) == {"float64", "float32", "tf32"}, text
    err, tau = (float(v) for v in rows["float64"].split(" | "))
    assert err <= 1e-9 and tau == 1.0, rows["float64"]  # float64 against itself: the same scores, same order
    for precision in ("float32", "tf32"):
        err, tau = (float(v) for v in rows[precision].split(" | "))
        assert 0 <= err < 1e-2 and tau > 0.9, (precision, rows[precision])


# --------------------------------------------------------------------------- regimes.py statistics
def _regimes():
    sys.path.insert(0, str(ROOT))
    from benchmarks import regimes

    return regimes


def test_regimes_tau_conventions():
    from emms_ext.selection.evaluate import weighted_tau

    r = _regimes()
    truth = {"a": 0.9, "b": 0.5, "c": 0.1, "d": 0.3}
    assert r.tau({"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}, truth) == 0.0  # ranks nothing
    assert math.isnan(r.tau({"a": 1.0, "b": 2.0, "c": 3.0}, truth))  # a candidate without a score
    s = {"a": 3.0, "b": 1.0, "c": 2.0, "d": 0.0}
    names = sorted(truth)
    assert r.tau(s, truth) == weighted_tau([s[n] for n in names], [truth[n] for n in names])
    pick = np.array([0, 0, 1, 3])  # a resample of the sorted candidates
    want = weighted_tau([s[names[i]] for i in pick], [truth[names[i]] for i in pick])
    assert r.tau(s, truth, pick) == want


def test_regimes_statistics_separate_a_good_method_from_a_bad_one():
    r = _regimes()
    rng = np.random.default_rng(0)
    truths = {t: {f"m{i}": float(v) for i, v in enumerate(rng.random(12))} for t in ("t1", "t2")}
    units = []
    for t, truth in truths.items():
        for regime in r.REGIMES:
            noise = rng.normal(0, 0.05, 12)
            methods = {
                r.DEFAULT: {c: -v + n for (c, v), n in zip(truth.items(), noise)},  # reversed
                "EMMS (gcv)": {c: v + n for (c, v), n in zip(truth.items(), noise)},  # right
                "LogME": {c: 0.0 for c in truth},  # saturated: ties everything
            }
            units.append((t, regime, 0, methods))
    taus = r.bootstrap(units, truths, boot=200)
    assert set(taus) == {r.DEFAULT, "EMMS (gcv)", "LogME"} and taus["LogME"].shape == (len(units), 201)
    assert np.all(taus["LogME"] == 0)
    d = r.paired(taus["EMMS (gcv)"], taus[r.DEFAULT], np.ones(len(units), dtype=bool))
    assert d[0] > 1.5 and r.verdict(d) == "better" and r.verdict(-d) == "worse"
    text, pick = r.report(taus, units, 200)
    assert pick == "EMMS (gcv)" and "| EMMS (gcv) | +" in text


# ------------------------------------------------------------------- several words per sample (truth)
def test_any_word_retrieval_and_the_multi_positive_loss():
    sys.path.insert(0, str(ROOT))
    import torch

    from benchmarks.zoo.text_truth import WordSets, _loss, any_word_retrieval

    vectors = torch.eye(4)[[0, 1, 2, 3, 3]].float()  # words 0..4; sample 0 owns words 0, 1; sample 1 owns 2, 3, 4
    words = WordSets(vectors, torch.tensor([0, 0, 1, 1, 1]))
    pred = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.1]])  # sample 0 -> word 1 (its own); 1 -> word 0
    assert any_word_retrieval(pred, words) == 0.5
    sub = words[torch.tensor([1])]
    assert sub.owner.tolist() == [0, 0, 0] and torch.equal(sub.vectors, vectors[2:])
    # -log(softmax mass on the sample's own words), by hand, at temperature 0.05
    z = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    logits = torch.nn.functional.normalize(z, dim=1) @ vectors.T / 0.05
    p = logits.softmax(1)
    want = -(torch.log(p[0, :2].sum()) + torch.log(p[1, 2:].sum())) / 2
    assert float(_loss(z, words)) == pytest.approx(float(want), rel=1e-6)


def test_bench_uncertainty_quick_run_checks_then_tabulates(capsys):
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench_uncertainty

    rows = bench_uncertainty.main(["--quick", "--repeat", "1", "--folds", "3"])
    assert len(rows) == 14 and all(plain > 0 and jack > 0 for _, _, plain, jack in rows)
    out = capsys.readouterr().out
    assert "| EMMS (gcv, refits), zoo of 4 |" in out and "| EMMS (exact, downdates), 1 model |" in out
    assert "folds = 3" in out
