"""Warnings that point at the caller's code: the first frame outside ``emms_ext``, however deep the call
chain inside the package is (``emms_score`` -> ``emms_scores`` -> the pipeline, ``rank`` -> ...)."""

from __future__ import annotations

import os
import sys
import warnings


class SaturationWarning(UserWarning):
    """A score reached its ceiling (or degenerated) the same way for every model it could: such models tie."""


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the stack level of the first frame outside the package."""
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is warn's caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        level += 1
        frame = frame.f_back
    warnings.warn(message, category, stacklevel=level)
