"""The `emms` command line: end to end on a directory of feature files (subprocess), exit codes, messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from embed_models import defaults_installed  # sets HF offline flags before transformers loads

from emms_ext import cli
from emms_ext.cli.inputs import read_labels

N, C = 120, 4
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _private_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("EMMS_EXT_CACHE", str(tmp_path / "cache"))  # never the user's home


@pytest.fixture
def workdir(tmp_path):
    """feats/ with .npy, .pt, .safetensors models (+ one with the wrong N), labels, class names, F-labels."""
    from safetensors.torch import save_file

    rng = np.random.default_rng(0)
    y = rng.integers(0, C, N)
    y[:C] = np.arange(C)
    code = np.eye(C)[y] @ rng.standard_normal((C, 6))
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "good.npy", code + 0.2 * rng.standard_normal((N, 6)))
    torch.save(torch.tensor(code[:, :3] + 1.5 * rng.standard_normal((N, 3))), feats / "medium.pt")
    save_file({"features": torch.randn(N, 5)}, str(feats / "noise.safetensors"))
    np.save(feats / "broken.npy", np.ones((N - 7, 3)))
    (feats / "README.txt").write_text("not a feature file: ignored")
    np.save(tmp_path / "labels.npy", y)
    (tmp_path / "labels.txt").write_text("\n".join(["cat", "dog", "bird", "horse"][i] for i in y) + "\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\nbird\nhorse\n")
    np.save(tmp_path / "table.npy", rng.standard_normal((C, 16, 2)))
    (tmp_path / "truth.json").write_text(json.dumps({"good": 0.9, "medium": 0.6, "noise": 0.3}))
    return tmp_path


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "emms_ext.cli", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_rank_end_to_end_writes_json_csv_png(workdir):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    p = run_cli(
        "rank",
        "--features",
        "feats",
        "--labels",
        "labels.npy",
        "--label-embeddings",
        "table.npy",
        "--out",
        "r.json",
        "--csv",
        "r.csv",
        "--plot",
        "r.png",
        "--truth",
        "truth.json",
        cwd=workdir,
    )
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    res = json.loads((workdir / "r.json").read_text())
    assert res["order"] == ["good", "medium", "noise"] and list(res["failures"]) == ["broken"]
    assert "good" in p.stdout and "broken" in p.stdout
    rows = (workdir / "r.csv").read_text().splitlines()
    assert rows[0] == "rank,model,score,stderr,top_set,seconds,status,reason" and rows[1].startswith("1,good,")
    assert rows[-1].startswith(",broken,") and "failed" in rows[-1]
    assert (workdir / "r.png").read_bytes()[:4] == b"\x89PNG"

    p = run_cli("evaluate", "--scores", "r.json", "--truth", "truth.json", "--json", cwd=workdir)
    assert p.returncode == 0, p.stderr
    ev = json.loads(p.stdout)
    assert ev["weighted_tau"] == pytest.approx(1.0) and ev["models"] == 3


def test_missing_file_exit_code_2_with_message(workdir):
    p = run_cli("rank", "--features", "feats", "--labels", "nope.npy", "--class-names", "classes.txt", cwd=workdir)
    assert p.returncode == 2
    assert "nope.npy" in p.stderr and "does not exist" in p.stderr and "--labels" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["rank", "--features", "no_dir", "--labels", "labels.npy"], "features directory"),
        (["rank", "--features", "feats", "--labels", "labels.npy"], "--class-names"),
        (["rank", "--labels", "labels.npy"], "--features"),
        (
            [
                "rank",
                "--features",
                "feats",
                "--labels",
                "labels.npy",
                "--label-embeddings",
                "table.npy",
                "--metric",
                "nope",
            ],
            "unknown metric",
        ),
        (["evaluate", "--scores", "truth.json", "--truth", "missing.json"], "missing.json"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_in_process(workdir, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(workdir)
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_help_everywhere_and_entry_point(capsys):
    for argv in ([], ["rank"], ["embed"], ["evaluate"], ["demo"]):
        with pytest.raises(SystemExit) as exc:
            cli.main([*argv, "--help"])
        assert exc.value.code == 0
        assert "usage: emms" in capsys.readouterr().out
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["emms"] == "emms_ext.cli:main"


def test_other_failures_exit_1_without_traceback(workdir, monkeypatch, capsys):
    from emms_ext.cli import commands

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(commands, "rank", boom)
    monkeypatch.chdir(workdir)
    code = cli.main(["rank", "--features", "feats", "--labels", "labels.npy", "--label-embeddings", "table.npy"])
    err = capsys.readouterr().err
    assert code == 1 and "disk on fire" in err and "--debug" in err and "Traceback" not in err


def test_rank_with_error_bars_in_process(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    base = ["rank", "--features", "feats", "--labels", "labels.npy", "--label-embeddings", "table.npy"]
    args = [*base, "--metric", "emms_gcv", "--uncertainty", "--folds", "4", "--seed", "7", "--out", "r.json"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "± SE" in out and "95% top set" in out and "over 4 folds" in out
    res = json.loads((workdir / "r.json").read_text())
    assert set(res["stderr"]) == set(res["order"]) and res["top_set"][0] == res["order"][0]
    assert all(len(v) == 4 for v in res["fold_scores"].values())
    assert cli.main([*base, "--folds", "4"]) == 2
    assert "--uncertainty" in capsys.readouterr().err


def test_labels_files(tmp_path):
    (tmp_path / "a.csv").write_text("id,label\n0,cat\n1,dog\n")
    assert read_labels(str(tmp_path / "a.csv")) == ["cat", "dog"]
    (tmp_path / "b.csv").write_text("3\n1\n2\n")
    assert read_labels(str(tmp_path / "b.csv")).tolist() == [3, 1, 2]
    (tmp_path / "c.txt").write_text("0.5\n1.5\n")
    assert read_labels(str(tmp_path / "c.txt"), regression=True).tolist() == [0.5, 1.5]
    np.save(tmp_path / "d.npy", np.array(["x", "y"]))
    assert read_labels(str(tmp_path / "d.npy")) == ["x", "y"]


@pytest.mark.skipif(not defaults_installed(), reason="the offline text models (emms_ext[embed]) are not installed")
def test_class_names_embed_and_demo_with_real_text_models(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    assert (
        cli.main(
            [
                "rank",
                "--features",
                "feats",
                "--labels",
                "labels.txt",
                "--class-names",
                "classes.txt",
                "--out",
                "r.json",
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((workdir / "r.json").read_text())["order"] == ["good", "medium", "noise"]
    assert cli.main(["embed", "--texts", "classes.txt", "--out", "emb.npy", "--quiet"]) == 0
    emb = np.load(workdir / "emb.npy")
    assert emb.shape[0] == C and emb.shape[2] >= 2 and np.isfinite(emb).all()
    assert cli.main(["demo", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "weighted Kendall tau" in out and "PCA-16" in out


def test_rank_with_the_out_of_sample_metric(workdir):
    import emms_ext
    from emms_ext import ClassLabels

    p = run_cli(
        "rank",
        "--features",
        "feats",
        "--labels",
        "labels.npy",
        "--label-embeddings",
        "table.npy",
        "--metric",
        "emms_gcv",
        "--out",
        "g.json",
        "--quiet",
        cwd=workdir,
    )
    assert p.returncode == 0, p.stderr
    res = json.loads((workdir / "g.json").read_text())
    assert res["order"] == ["good", "medium", "noise"]
    labels = ClassLabels(np.load(workdir / "table.npy"), np.load(workdir / "labels.npy"))
    direct = emms_ext.emms_score(np.load(workdir / "feats" / "good.npy"), labels, "gcv").score
    assert res["scores"]["good"] == pytest.approx(direct, rel=1e-9)


def test_a_missing_task_input_is_a_usage_error(workdir):
    cases = [
        (["--task", "captioning"], "--task captioning needs --texts FILE.jsonl"),
        (["--task", "vqa"], "--task vqa needs --answers FILE.jsonl"),
        (["--task", "referring", "--texts", "x.jsonl"], "--task referring needs --boxes, --image-sizes"),
        (
            ["--task", "multilabel", "--labels", "labels.npy", "--class-names", "classes.txt"],
            "--task multilabel needs --labels .npy [N, C] of 0/1",
        ),
    ]
    (workdir / "bad.jsonl").write_text('["a", "b"]\nnot json\n')
    cases.append((["--task", "captioning", "--texts", "bad.jsonl"], "--texts bad.jsonl line 2: not valid JSON"))
    for args, message in cases:
        p = run_cli("rank", "--features", "feats", *args, cwd=workdir)
        assert p.returncode == 2 and message in p.stderr, (args, p.stderr)
