"""Ground truth of the vision zoo: how well each candidate really transfers, measured two ways.

* fine-tune: the whole candidate network plus a linear head, trained on the target's training split with
  a small fixed grid (AdamW learning rates for the body, 10x for the new head, x epochs 1..5, fixed seed;
  BatchNorm statistics of the pre-trained networks frozen, the random control's trained as in any
  from-scratch training and re-estimated on the training split before each evaluation); the best held-out
  accuracy counts;
* probe: a logistic-regression probe on the frozen features (held-out accuracy).

One command per target computes it (about 40 minutes each on a 2-core CPU; the defaults are the committed
files' split and epochs, see SPLITS) and stores JSON with this script's version, so the demo and the
benchmark never re-train:

    python -m benchmarks.zoo.ground_truth --target fashion --out benchmarks/zoo/truth_fashion.json [--resume]
    python -m benchmarks.zoo.ground_truth --target digits  --out benchmarks/zoo/truth_digits.json [--resume]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from . import vision

# Bump when the protocol changes: stored truth files then say which protocol made them. 4: candidates are
# built in eval mode (in v3 building ran one forward pass in training mode, which nudged BatchNorm running
# statistics 1% toward a blank image's, by an amount that depended on the random drop-connect draws).
# 5: the random control's BatchNorm layers train with it, and their running statistics are re-estimated on
# the training split before every evaluation (frozen at their initial values, mean 0 and variance 1, they
# left the control at chance accuracy whatever it learnt); pre-trained candidates as in 4.
VERSION = 5


# Default split and epochs per target: those of the committed truth files (Fashion-MNIST's split is half the
# 2,000 / 2,000 first planned and its epochs 1-3, to fit 19 fine-tunings into a session on a 2-core CPU).
SPLITS = {
    "fashion": {"n_train": 1000, "n_test": 1000, "epochs": 3},
    "digits": {"n_train": 900, "n_test": 800, "epochs": 5},
}


def load_target(target: str, n_train: int, n_test: int, seed: int = 0):
    """(train images [n, H, W] float 0..255, train labels, test images, test labels, class names)."""
    if target == "fashion":
        from .data import FASHION_CLASSES, balanced_subset, fashion_mnist

        xtr, ytr = fashion_mnist("train")
        xte, yte = fashion_mnist("test")
        itr = balanced_subset(ytr, n_train // 10, seed)
        ite = balanced_subset(yte, n_test // 10, seed + 1)
        return (
            torch.from_numpy(xtr[itr]).float(),
            torch.from_numpy(ytr[itr]),
            torch.from_numpy(xte[ite]).float(),
            torch.from_numpy(yte[ite]),
            FASHION_CLASSES,
        )
    if target == "digits":
        from sklearn.datasets import load_digits

        from .data import balanced_subset

        d = load_digits()
        x, y = d.images * (255.0 / 16.0), d.target.astype(np.int64)
        itr = balanced_subset(y, n_train // 10, seed)
        ite = balanced_subset(y, n_test // 10, seed + 1, exclude=itr)
        names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
        return (
            torch.tensor(x[itr], dtype=torch.float32),
            torch.from_numpy(y[itr]),
            torch.tensor(x[ite], dtype=torch.float32),
            torch.from_numpy(y[ite]),
            names,
        )
    raise ValueError(f"target must be 'fashion' or 'digits' (got {target!r})")


def probe_accuracy(ftr: np.ndarray, ytr: np.ndarray, fte: np.ndarray, yte: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(ftr)
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(sc.transform(ftr), ytr)
    return float(clf.score(sc.transform(fte), yte))


def with_new_head(body: nn.Module, out_dim: int, lr: float, **adamw) -> tuple[nn.Sequential, torch.optim.Optimizer]:
    """(body + a new linear head to out_dim, AdamW over both): the fine-tuning set-up of every ground truth."""
    model = nn.Sequential(body, nn.Linear(body.out_features, out_dim))
    # The new head starts from scratch: it learns 10x faster than the pre-trained body (common practice).
    opt = torch.optim.AdamW(
        [{"params": body.parameters(), "lr": lr}, {"params": model[1].parameters(), "lr": 10 * lr}],
        weight_decay=1e-4,
        **adamw,
    )
    return model, opt


def training_mode(model: nn.Module, control: bool) -> None:
    """The model to training mode, BatchNorm layers excepted unless `control`. Pre-trained statistics stay at their
    ImageNet values: re-estimated from batches of 64 upscaled small grey images they wreck the network
    (measured: accuracy falls to chance). The random control has no statistics worth keeping, so it is
    trained like any network from scratch, statistics included."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not control:
            m.eval()


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch: int = 64) -> None:
    """Running statistics of every BatchNorm layer re-estimated as the plain average over `images` [N, H, W],
    the rest of the model in eval mode. Why: EfficientNet's BatchNorm momentum is 0.01, so after the few
    hundred steps of this protocol a network trained from scratch would still evaluate with statistics close
    to their initial 0 / 1 - a different network from the one trained (measured: chance accuracy)."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # None: cumulative average over the batches seen
        m.train()
    for i in range(0, len(images), batch):
        model(images[i : i + batch][:, None])
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    model.eval()


def finetune_accuracy(
    name: str, xtr, ytr, xte, yte, n_classes: int, lrs, epochs: int, batch: int = 64, seed: int = 0
) -> dict:
    """Best held-out accuracy over the grid (learning rate x epoch) of fine-tuning the whole candidate."""
    grid, control = {}, vision.is_control(name)
    for lr in lrs:
        torch.manual_seed(seed)
        model, opt = with_new_head(vision.build(name, seed=seed), n_classes, lr)
        g = torch.Generator().manual_seed(seed)
        for epoch in range(1, epochs + 1):
            training_mode(model, control)
            for idx in torch.randperm(len(xtr), generator=g).split(batch):
                loss = nn.functional.cross_entropy(model(xtr[idx][:, None]), ytr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if control:
                recalibrate_batchnorm(model, xtr)
            model.eval()
            with torch.inference_mode():
                pred = torch.cat([model(xte[i : i + 256][:, None]).argmax(1) for i in range(0, len(xte), 256)])
            grid[f"lr={lr:g},epoch={epoch}"] = float((pred == yte).float().mean())
    return {"best": max(grid.values()), "grid": grid}


def _resumable(path: str, header: dict) -> dict:
    """Candidates of an earlier (interrupted) run at `path` whose protocol and split equal `header`'s."""
    try:
        with open(path) as f:
            old = json.load(f)
    except FileNotFoundError:
        return {}
    same = ("version", "target", "n_train", "n_test", "epochs", "lrs")
    if any(old.get(k) != header[k] for k in same):
        raise SystemExit(
            f"--resume: {path} was made with a different protocol or split "
            f"({ {k: old.get(k) for k in same} }); use another --out"
        )
    return old["candidates"]


def add_common_args(
    ap: argparse.ArgumentParser, epochs: int | None, lrs: list[float], n_train: int | None, n_test: int | None
) -> None:
    """The options every ground-truth command shares (this one and text_truth); None: set by the caller later."""
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-train", type=int, default=n_train)
    ap.add_argument("--n-test", type=int, default=n_test)
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--lrs", type=float, nargs="+", default=lrs)
    ap.add_argument("--candidates", nargs="+", default=None, help="default: every candidate of the zoo")
    ap.add_argument("--no-finetune", action="store_true", help="probes only (minutes, not an hour)")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="keep the candidates already in --out when it was made by the same protocol and split",
    )


def run_candidates(out: dict, path: str, names: list[str], measure) -> None:
    """Fill out["candidates"][name] = measure(name) (a row dict) for the names not there yet, timing each
    and rewriting the JSON at `path` after every candidate (a long run can be inspected and resumed)."""
    for name in names:
        if name in out["candidates"]:
            continue
        start = time.perf_counter()
        row = measure(name)
        row["seconds"] = round(time.perf_counter() - start, 1)
        out["candidates"][name] = row
        print(f"{name:24s} " + "  ".join(f"{k}={v}" for k, v in row.items() if k != "finetune_grid"), flush=True)
        with open(path, "w") as f:
            json.dump(out, f, indent=1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=list(SPLITS), required=True)
    add_common_args(ap, epochs=None, lrs=[1e-3, 3e-4], n_train=None, n_test=None)
    args = ap.parse_args(argv)
    for key, value in SPLITS[args.target].items():  # the target's defaults where the option was not given
        if getattr(args, key) is None:
            setattr(args, key, value)
    xtr, ytr, xte, yte, names = load_target(args.target, args.n_train, args.n_test)
    out = {
        "version": VERSION,
        "target": args.target,
        "class_names": names,
        "n_train": len(ytr),
        "n_test": len(yte),
        "epochs": args.epochs,
        "lrs": args.lrs,
        "torch": torch.__version__,
        "candidates": {},
    }
    if args.resume:
        out["candidates"] = _resumable(args.out, out)

    def measure(name: str) -> dict:
        model = vision.build(name)
        ftr, fte = vision.extract(model, xtr).numpy(), vision.extract(model, xte).numpy()
        row = {"probe": probe_accuracy(ftr, ytr.numpy(), fte, yte.numpy()), "dim": int(ftr.shape[1])}
        if not args.no_finetune:
            ft = finetune_accuracy(name, xtr, ytr, xte, yte, len(names), args.lrs, args.epochs)
            row["finetune"], row["finetune_grid"] = ft["best"], ft["grid"]
        return row

    run_candidates(out, args.out, args.candidates or vision.candidates(), measure)


if __name__ == "__main__":
    main()
