"""Layer 4 (docs/design.md §4): choosing models. The metric registry (``metrics``: every EMMS mode and
baseline, registered once), targets (``targets``), features from files and networks (``features``),
``rank`` and its ``Ranking``, the ranking-quality measures (``evaluate``) and the detection of metrics
that tie most candidates (``saturation``)."""

from . import evaluate
from .metrics import Metric, available_metrics, get_metric, register_metric
from .rank import rank
from .ranking import Ranking
from .saturation import saturated
from .targets import TASKS, Target, build_target

__all__ = [
    "Metric",
    "Ranking",
    "TASKS",
    "Target",
    "available_metrics",
    "build_target",
    "evaluate",
    "get_metric",
    "rank",
    "register_metric",
    "saturated",
]
