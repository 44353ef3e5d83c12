"""emms_ext.features: feature files, extraction with a forward hook, and the on-disk feature cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from emms_ext.common.cache import CACHE_ENV
from emms_ext.selection import features as F


class Net(nn.Module):
    """A small classifier that counts its forward calls; the last nn.Linear is `head`."""

    def __init__(self, seed: int = 0, d_in: int = 6, width: int = 5, classes: int = 3):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(d_in, 8), nn.ReLU(), nn.Linear(8, width), nn.Tanh())
        self.head = nn.Linear(width, classes)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.head(self.body(x))


def loader(N=37, d_in=6, batch_size=8, seed=0, labels=True, shuffle=False):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d_in, generator=g)
    ds = (
        torch.utils.data.TensorDataset(X, torch.randint(0, 3, (N,), generator=g))
        if labels
        else torch.utils.data.TensorDataset(X)
    )
    return X, torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle)


def test_hook_takes_the_classifier_input(tmp_path):
    net = Net()
    X, dl = loader()
    got = F.extract_features(net, dl, cache_dir=False, progress=False)
    with torch.no_grad():
        want = net.body(X)  # the input of the last nn.Linear
    assert got.shape == (37, 5) and got.dtype == torch.float32
    torch.testing.assert_close(got, want)
    assert net.training  # the training flag is restored


def test_named_layers_and_input_output():
    net = Net()
    X, dl = loader()
    with torch.no_grad():
        h1 = net.body[0](X)
    torch.testing.assert_close(F.extract_features(net, dl, "body.0", cache_dir=False, progress=False), h1)
    torch.testing.assert_close(
        F.extract_features(net, dl, ("body.2", "input"), cache_dir=False, progress=False), torch.relu(h1)
    )
    torch.testing.assert_close(
        F.extract_features(net, dl, net.body[1], cache_dir=False, progress=False), torch.relu(h1)
    )
    with pytest.raises(ValueError, match="not a module"):
        F.extract_features(net, dl, "nope", cache_dir=False)
    with pytest.raises(ValueError, match="no nn.Linear"):
        F.extract_features(nn.Sequential(nn.Conv2d(1, 2, 3)), dl, cache_dir=False)


def test_batches_tensor_list_and_dict():
    net = Net()
    X, _ = loader()
    batches = [X[:20], X[20:]]
    with torch.no_grad():
        want = net.body(X)
    torch.testing.assert_close(F.extract_features(net, batches, cache_dir=False, progress=False), want)

    class KW(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 2)

        def forward(self, x):
            return self.fc(x * 2)

    kw = KW()
    got = F.extract_features(kw, [{"x": X, "labels": torch.zeros(37)}], cache_dir=False, progress=False)
    torch.testing.assert_close(got, X * 2)


def test_conv_maps_are_average_pooled():
    conv = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    x = torch.randn(10, 1, 8, 8)
    got = F.extract_features(conv, [x], "1", cache_dir=False, progress=False)  # ReLU output [B, 4, 8, 8]
    with torch.no_grad():
        want = conv[1](conv[0](x)).mean((2, 3))
    torch.testing.assert_close(got, want)


def test_shuffling_loader_is_rejected():
    _, dl = loader(shuffle=True)
    with pytest.raises(ValueError, match="shuffle=False"):
        F.extract_features(Net(), dl, cache_dir=False)


def test_cache_hits_and_invalidates(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env_cache"))
    net = Net()
    _, dl = loader()
    first = F.extract_features(net, dl, progress=False)  # default cache dir: the env variable
    n_batches = len(dl)
    assert net.calls == n_batches
    assert len(list((tmp_path / "env_cache" / "features").glob("*.pt"))) == 1
    again = F.extract_features(net, dl, progress=False)
    assert net.calls == n_batches  # served from the cache: no forward pass
    torch.testing.assert_close(again, first)

    with torch.no_grad():
        net.body[0].weight[0, 0] += 1.0  # new weights -> new key
    changed = F.extract_features(net, dl, progress=False)
    assert net.calls == 2 * n_batches
    assert not torch.equal(changed, first)

    _, other = loader(seed=1)  # other data -> new key
    F.extract_features(net, other, progress=False)
    assert net.calls == 3 * n_batches
    F.extract_features(net, dl, "body.0", progress=False)  # other layer -> new key
    assert net.calls == 4 * n_batches
    F.extract_features(net, dl, cache_dir=False, progress=False)  # cache off
    assert net.calls == 5 * n_batches
    assert len(list((tmp_path / "env_cache" / "features").glob("*.pt"))) == 4


def test_load_feature_files(tmp_path):
    from safetensors.torch import save_file

    x = torch.randn(9, 4)
    np.save(tmp_path / "a.npy", x.numpy())
    torch.save(x, tmp_path / "b.pt")
    torch.save({"features": x, "meta": torch.zeros(1)}, tmp_path / "c.pth")
    save_file({"features": x, "other": torch.zeros(2)}, str(tmp_path / "d.safetensors"))
    save_file({"anything": x}, str(tmp_path / "e.safetensors"))
    for name in ("a.npy", "b.pt", "c.pth", "d.safetensors", "e.safetensors"):
        torch.testing.assert_close(torch.as_tensor(F.load_features(tmp_path / name)), x)
    save_file({"p": x, "q": x.clone()}, str(tmp_path / "f.safetensors"))
    with pytest.raises(ValueError, match="name the features tensor 'features'"):
        F.load_features(tmp_path / "f.safetensors")
    with pytest.raises(FileNotFoundError):
        F.load_features(tmp_path / "missing.npy")
    (tmp_path / "g.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="unsupported feature file type"):
        F.load_features(tmp_path / "g.txt")
    assert list(F.feature_files(tmp_path)) == ["a", "b", "c", "d", "e", "f"]
