"""A zoo sharded over 2 processes (torchrun, gloo backend on the CPU) equals the single-process result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import make_class_labels, make_features

import emms_ext
from emms_ext.core.distributed import emms_scores_distributed, shard

SCRIPT = textwrap.dedent("""
    import json, sys, torch, torch.distributed as dist
    sys.path.insert(0, sys.argv[2])
    from conftest import make_class_labels, make_features
    from emms_ext.core.distributed import emms_scores_distributed
    dist.init_process_group("gloo")
    N = 300
    labels = make_class_labels(400, N, 12, 5, 2)
    zoo = {f"m{i}": make_features(401 + i, N, 6 + i) for i in range(5)}
    zoo["bad"] = torch.full((N, 3), float("nan"))
    out = emms_scores_distributed(zoo, labels, errors="skip")
    everywhere = emms_scores_distributed(zoo, labels, errors="skip", dst=None)
    assert everywhere is not None and list(everywhere) == [f"m{i}" for i in range(5)]
    if dist.get_rank() == 0:
        json.dump({"scores": {k: r.score for k, r in out.items()}, "failures": out.failures,
                   "order": list(out)}, open(sys.argv[1], "w"))
    else:
        assert out is None
    dist.destroy_process_group()
""")


def test_shard_deals_every_model_once():
    names = [f"m{i}" for i in range(11)]
    parts = [shard(names, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == sorted(names) and all(parts)


def test_needs_an_initialized_process_group():
    with pytest.raises(ValueError, match="init_process_group"):
        emms_scores_distributed({"a": torch.randn(10, 2)}, torch.randn(10, 2, 2))


def test_two_process_gloo_run_equals_single_process(tmp_path):
    script = tmp_path / "zoo.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(out),
        os.path.dirname(__file__),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    N = 300
    labels = make_class_labels(400, N, 12, 5, 2)
    zoo = {f"m{i}": make_features(401 + i, N, 6 + i) for i in range(5)}
    ref = emms_ext.emms_scores(zoo, labels)
    assert got["order"] == list(ref)
    for name, r in ref.items():
        assert abs(got["scores"][name] - r.score) <= 1e-12 * abs(r.score)
    assert set(got["failures"]) == {"bad"} and "finite" in got["failures"]["bad"]
