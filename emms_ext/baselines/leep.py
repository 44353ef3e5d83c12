"""LEEP (Nguyen et al., ICML 2020), NCE (Tran et al., ICCV 2019) from a source head's predictions, and
N-LEEP (Li et al., CVPR 2021: a Gaussian mixture on PCA-reduced features as the pseudo source head)."""

from __future__ import annotations

import torch

from ..core.linalg import ordered_sum, svd
from ._common import class_labels, features64, one_hot, probs64


def leep(source_probs, labels) -> float:
    """LEEP: mean log of the expected empirical prediction ``sum_z P(y_i | z) theta_i(z)``.

    Higher is better (<= 0); comparable between models on the same target (not relative to the zoo).

    Args:
        source_probs: ``[N, C_s]`` the source head's class probabilities on the N target samples.
        labels: ``[N]`` integer target classes.
    """
    theta = probs64(source_probs)
    idx, C = class_labels(labels, theta.shape[0], theta.device)
    joint = one_hot(idx, C).T @ theta / theta.shape[0]  # [C, C_s] P(y, z)
    cond = joint / joint.sum(0).clamp_min(1e-300)  # P(y | z)
    eep = (theta * cond[idx]).sum(1)
    return float(ordered_sum(torch.log(eep))) / eep.shape[0]


def nce(source_probs, labels) -> float:
    """NCE: minus the conditional entropy H(Y | Z) of the target labels given the source head's hard
    predictions ``Z = argmax source_probs``. Higher is better (<= 0); comparable between models on the same
    target.

    Args:
        source_probs: ``[N, C_s]`` probabilities (or scores: only the argmax is used).
        labels: ``[N]`` integer target classes.
    """
    from ..common.validate import as_float_tensor, describe

    theta = as_float_tensor(source_probs, "source_probs", "[N, C_s]")
    if theta.dim() != 2 or theta.shape[1] == 0:
        raise ValueError(f"source_probs must be [N, C_s] (got {describe(theta)})")
    idx, C = class_labels(labels, theta.shape[0], theta.device)
    z = theta.argmax(1)
    Cs = theta.shape[1]
    joint = torch.bincount(idx * Cs + z, minlength=C * Cs).reshape(C, Cs).to(torch.float64) / theta.shape[0]
    pz = joint.sum(0, keepdim=True).expand_as(joint)
    nz = joint > 0
    return float((joint[nz] * torch.log(joint[nz] / pz[nz])).sum())


def nleep_pseudo_probs(
    features, n_components: int, variance: float = 0.8, covariance_type: str = "diag", seed: int = 0
):
    """[N, n_components] posterior probabilities of a Gaussian mixture fitted (sklearn) to the features reduced
    by PCA to the fewest components explaining ``variance`` of the variance."""
    from sklearn.mixture import GaussianMixture

    F = features64(features)
    Fc = F - F.mean(0)
    _, S, Vh = svd(Fc)
    ratio = torch.cumsum(S * S, 0) / (S * S).sum()
    d = int(torch.searchsorted(ratio, torch.tensor(variance, dtype=ratio.dtype, device=ratio.device))) + 1
    d = min(d, S.shape[0])
    Z = (Fc @ Vh[:d].T).cpu().numpy()
    gmm = GaussianMixture(n_components=n_components, covariance_type=covariance_type, random_state=seed)
    return torch.from_numpy(gmm.fit(Z).predict_proba(Z))


def nleep(
    features,
    labels,
    n_components: int | None = None,
    variance: float = 0.8,
    covariance_type: str = "diag",
    seed: int = 0,
) -> float:
    """N-LEEP: LEEP with a Gaussian mixture model on the PCA-reduced features (keeping ``variance`` of the
    variance) standing in for the source head. ``n_components`` defaults to the number of target classes.
    The GMM (sklearn, ``random_state=seed``) makes it deterministic but not unique: a different seed can
    change the value slightly. Higher is better (<= 0); comparable between models on the same target.

    features ``[N, D]``, labels ``[N]`` integer classes.
    """
    F = features64(features)
    idx, C = class_labels(labels, F.shape[0], F.device)
    probs = nleep_pseudo_probs(F, n_components or C, variance, covariance_type, seed)
    return leep(probs, idx.cpu())
