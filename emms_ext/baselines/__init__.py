"""Layer 3 (docs/design.md §4, §7): the field's transferability baselines, each a plain function of one
model's features (or source-head predictions) and the target. ``emms_ext.selection.metrics`` registers them
for ``rank``; nothing here imports the registry.

Every function documents what higher means and whether its values are only meaningful relative to the zoo.
A baseline whose value saturates (the same ceiling for every model it could score) says so with a
``SaturationWarning``.
"""

from __future__ import annotations

from ..common.warn import SaturationWarning
from .emms_one import emms_one
from .gbc import gbc
from .hscore import hscore, hscore_regularized, ledoit_wolf
from .knn import knn
from .leep import leep, nce, nleep
from .logme import logme, logme_flabels
from .parc import parc
from .sfda import sfda
from .transrate import transrate

__all__ = [
    "SaturationWarning",
    "emms_one",
    "gbc",
    "hscore",
    "hscore_regularized",
    "knn",
    "ledoit_wolf",
    "leep",
    "logme",
    "logme_flabels",
    "nce",
    "nleep",
    "parc",
    "sfda",
    "transrate",
]
