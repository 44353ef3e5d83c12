"""emms_ext: EMMS transferability scores as fused PyTorch ops.

``import emms_ext`` registers ``torch.ops.emms.*`` (CPU, and CUDA when built with it) and exposes the
public API: ``emms_score`` / ``emms_scores`` (the score), ``rank`` / ``Ranking`` (choosing models), the op
wrappers, and the subpackages ``embed`` (F-labels; imported on first use of ``emms_ext.embed``),
``baselines`` and ``evaluate``. The folders are layers (docs/design.md §4): common <- ops <- core <-
baselines <- selection <- cli, with embed a side wing. Nothing on this import path touches the network.
"""

import torch  # noqa: F401 - first: libtorch must be loaded before _C, the extension that links against it

from . import _C, baselines
from .common.warn import SaturationWarning
from .core import ClassLabels, EMMSDegeneracyWarning, EMMSResult, FreeTextLabels, ZooScores, emms_score, emms_scores
from .ops import class_order, class_sums, logme_evidence, simplex_project, wlsr_simplex  # + fake kernels, autograd
from .selection import Ranking, Target, evaluate, rank

__version__ = _C.build_info()["version"]


def __getattr__(name: str):
    # emms_ext.embed loads on first use: it is the only subpackage that can pull in transformers.
    if name == "embed":
        import importlib

        return importlib.import_module(".embed", __name__)
    raise AttributeError(f"module 'emms_ext' has no attribute {name!r}")


def release_workspace() -> int:
    """Free the CPU buffers kept between scores for their large intermediates (centred rows, Grams,
    factors: they spare the page faults of fresh memory, docs/design.md §6); returns the bytes released.
    ``EMMS_EXT_WORKSPACE_MB`` caps what is kept (default 512, 0 keeps nothing)."""
    from .common import workspace

    return workspace.release()


def build_info() -> dict:
    """Facts fixed when the extension was built: version, torch version, CUDA on/off and archs, compiler."""
    return dict(_C.build_info())


__all__ = [
    "ClassLabels",
    "EMMSDegeneracyWarning",
    "EMMSResult",
    "FreeTextLabels",
    "Ranking",
    "SaturationWarning",
    "Target",
    "ZooScores",
    "__version__",
    "baselines",
    "build_info",
    "class_order",
    "class_sums",
    "emms_score",
    "emms_scores",
    "evaluate",
    "logme_evidence",
    "rank",
    "release_workspace",
    "simplex_project",
    "wlsr_simplex",
]
