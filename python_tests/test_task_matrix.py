"""Every task adapter x every entry point: the same model gets the same score everywhere.

Entry points: ``emms_score`` and ``emms_scores`` with the adapter's F-labels, ``rank`` with those F-labels,
``rank`` with the raw labels and ``task=`` (it calls the adapter itself), and ``emms rank`` from files in a
subprocess. Several texts per sample with ``reduce="repeat"`` must also equal the float64 reference on
explicitly repeated features.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from embed_models import defaults_installed  # sets HF offline flags before transformers loads

import emms_ext
from emms_ext import FreeTextLabels
from emms_ext.ops import reference
from emms_ext.selection.ranking import SCORE_DIGITS

pytestmark = pytest.mark.skipif(
    not defaults_installed(), reason="the offline text models (emms_ext[embed]) are not installed"
)

N = 60
NAMES = ["cat", "dog", "bird", "horse"]
MODELS = ("good", "medium", "noise")


@pytest.fixture(autouse=True)
def _private_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("EMMS_EXT_CACHE", str(tmp_path / "cache"))  # never the user's home


@pytest.fixture(scope="module")
def problem():
    """Class structure y [N], three models' features (informative, weaker, noise) and every task's labels."""
    rng = np.random.default_rng(11)
    y = np.arange(N) % len(NAMES)
    rng.shuffle(y)
    code = np.eye(len(NAMES))[y] @ rng.standard_normal((len(NAMES), 6))
    feats = {
        "good": code + 0.3 * rng.standard_normal((N, 6)),
        "medium": code[:, :3] + 1.5 * rng.standard_normal((N, 3)),
        "noise": rng.standard_normal((N, 5)),
    }
    captions_one = [f"a photo of a {NAMES[c]}" for c in y]
    several = [
        [f"a {NAMES[c]}", f"a photo of one {NAMES[c]}", f"the {NAMES[c]} again"][: 1 + i % 3] for i, c in enumerate(y)
    ]
    multi = np.eye(len(NAMES))[y] + np.eye(len(NAMES))[(y + 1) % len(NAMES)] * (rng.random(N) < 0.5)[:, None]
    boxes = np.stack(
        [rng.uniform(0, 50, N), rng.uniform(0, 50, N), rng.uniform(60, 100, N), rng.uniform(60, 100, N)], 1
    )
    return {
        "y": y,
        "feats": {k: torch.from_numpy(v) for k, v in feats.items()},
        "captions_one": captions_one,
        "several": several,
        "answers": [NAMES[c] for c in y],
        "multi": multi,
        "targets": y.astype(np.float64) + 0.1 * rng.standard_normal(N),
        "expressions": [f"the {NAMES[c]} on the left" for c in y],
        "boxes": boxes,
        "sizes": np.full((N, 2), 100.0),
    }


# case -> (task, adapter call, raw target for rank(task=...) or None, rank/CLI options, CLI files and args)
def _case(case: str, p: dict):
    import emms_ext.embed as E

    if case == "classification":
        return (
            "classification",
            E.classification_labels(torch.from_numpy(p["y"]), NAMES),
            [NAMES[c] for c in p["y"]],
            {"class_names": NAMES},
            {"labels.txt": [NAMES[c] for c in p["y"]], "classes.txt": NAMES},
            ["--labels", "labels.txt", "--class-names", "classes.txt"],
        )
    if case == "multilabel":
        return (
            "multilabel",
            E.multilabel_labels(torch.from_numpy(p["multi"]), NAMES),
            p["multi"],
            {"class_names": NAMES},
            {"multi.npy": p["multi"], "classes.txt": NAMES},
            ["--labels", "multi.npy", "--class-names", "classes.txt"],
        )
    if case == "regression":
        return (
            "regression",
            E.regression_labels(p["targets"]),
            p["targets"],
            {},
            {"targets.npy": p["targets"]},
            ["--labels", "targets.npy"],
        )
    if case.startswith("captioning") or case.startswith("free_text"):
        task, _, rest = case.partition("-")
        texts = p["several"] if rest.endswith("several") else p["captions_one"]
        reduce = "mean" if rest.startswith("mean") else "repeat"
        return (
            task,
            E.free_text_labels(texts, reduce=reduce),
            texts,
            {"reduce": reduce},
            {"texts.jsonl": texts},
            ["--texts", "texts.jsonl", "--reduce", reduce],
        )
    if case == "vqa":
        return (
            "vqa",
            E.vqa_labels(p["answers"]),
            p["answers"],
            {},
            {"answers.jsonl": p["answers"]},
            ["--answers", "answers.jsonl"],
        )
    if case == "text_qa":
        return (
            "text_qa",
            E.text_qa_labels(p["answers"]),
            p["answers"],
            {},
            {"answers.jsonl": p["answers"]},
            ["--answers", "answers.jsonl"],
        )
    assert case == "referring"
    return (
        "referring",
        E.referring_expression_labels(p["expressions"], p["boxes"], p["sizes"]),
        None,  # rank(task="referring") takes the F-labels: boxes have no place in a raw target
        {},
        {"expressions.jsonl": p["expressions"], "boxes.npy": p["boxes"], "sizes.npy": p["sizes"]},
        ["--texts", "expressions.jsonl", "--boxes", "boxes.npy", "--image-sizes", "sizes.npy"],
    )


CASES = [
    "classification",
    "multilabel",
    "regression",
    "captioning-repeat-one",
    "captioning-repeat-several",
    "free_text-mean-one",
    "free_text-mean-several",
    "vqa",
    "text_qa",
    "referring",
]


def _write(folder, files: dict) -> None:
    for name, value in files.items():
        if name.endswith(".npy"):
            np.save(folder / name, value)
        elif name.endswith(".jsonl"):
            (folder / name).write_text("".join(json.dumps(v) + "\n" for v in value))
        else:
            (folder / name).write_text("\n".join(value) + "\n")


@pytest.mark.parametrize("case", CASES)
def test_every_entry_point_gives_the_same_scores(case, problem, tmp_path):
    task, fl, raw, options, files, cli_args = _case(case, problem)
    feats = problem["feats"]
    want = {m: emms_ext.emms_score(x, fl).score for m, x in feats.items()}
    assert len(set(want.values())) == len(want), "the three models must score apart for the test to mean anything"
    tol = dict(rel=1e-10, abs=1e-12)
    ranked_tol = dict(rel=10.0 ** (1 - SCORE_DIGITS), abs=1e-12)  # a Ranking keeps SCORE_DIGITS digits

    zoo = emms_ext.emms_scores(feats, fl)
    ranked = emms_ext.rank(feats, fl, task=task, progress=False, metric="emms")
    for m in MODELS:
        assert zoo[m].score == pytest.approx(want[m], **tol), ("emms_scores", m)
        assert ranked.scores[m] == pytest.approx(want[m], **ranked_tol), ("rank(F-labels)", m)
    if raw is not None:
        from_raw = emms_ext.rank(feats, raw, task=task, progress=False, **options, metric="emms")
        for m in MODELS:
            assert from_raw.scores[m] == pytest.approx(want[m], **ranked_tol), ("rank(raw, task)", m)

    if isinstance(fl, FreeTextLabels) and len(fl.sample_index) > N:  # several texts per sample, repeated
        for m, x in feats.items():
            ref = float(reference.emms_score(x[fl.sample_index].double(), fl.labels, "exact")["score"])
            assert want[m] == pytest.approx(ref, rel=1e-9), ("explicit repeat", m)

    (tmp_path / "feats").mkdir()
    for m, x in feats.items():
        np.save(tmp_path / "feats" / f"{m}.npy", x.numpy())
    _write(tmp_path, files)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "emms_ext.cli",
            "rank",
            "--features",
            "feats",
            "--task",
            task,
            *cli_args,
            "--metric",
            "emms",
        ]
        + ["--out", "out.json", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr
    got = json.loads((tmp_path / "out.json").read_text())["scores"]
    for m in MODELS:
        assert got[m] == pytest.approx(want[m], **ranked_tol), ("CLI", m)
