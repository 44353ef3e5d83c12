"""emms_ext: EMMS transferability scores as fused PyTorch ops.

``import emms_ext`` registers ``torch.ops.emms.*`` (CPU, and CUDA when built with it) and exposes the
score API. Nothing on this import path touches the network.
"""
import torch  # noqa: F401  (loads libtorch before the extension that links against it)

from . import _C  # registers the emms::* operators
from .emms import EMMSDegeneracyWarning, EMMSResult, ZooScores, emms_score, emms_scores
from .labels import ClassLabels
from .ops import class_order, class_sums, simplex_project, wlsr_simplex
from .ranker import rank
from .ranking import Ranking

__version__ = _C.build_info()["version"]


def build_info() -> dict:
    """Facts fixed when the extension was built: version, torch version, CUDA on/off and archs, compiler."""
    return dict(_C.build_info())


__all__ = [
    "ClassLabels", "EMMSDegeneracyWarning", "class_order", "class_sums", "EMMSResult", "ZooScores", "build_info", "emms_score",
    "emms_scores", "rank", "Ranking", "simplex_project", "wlsr_simplex", "__version__",
]
