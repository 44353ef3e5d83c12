"""Layer 1 (docs/design.md §4, §5): the ``emms::*`` operators.

Importing this package loads the compiled extension (``emms_ext._C``, which registers the schemas and the
CPU / CUDA kernels), then the fake kernels and autograd (``fake.py``). ``operators.py`` holds the typed
wrappers re-exported here; ``reference.py`` the float64 references the tests compare against.
"""

import torch  # noqa: F401 - libtorch must be loaded before the extension that links against it

from .. import _C  # noqa: F401 - registers the emms::* schemas and kernels
from . import fake  # noqa: F401 - registers fake kernels and autograd
from .operators import (
    MODES,
    cholesky_,
    cholesky_solve,
    class_order,
    class_sums,
    logme_evidence,
    mode_code,
    simplex_project,
    tridiagonal_solve,
    wlsr_simplex,
)

__all__ = [
    "MODES",
    "cholesky_",
    "cholesky_solve",
    "class_order",
    "class_sums",
    "logme_evidence",
    "mode_code",
    "simplex_project",
    "tridiagonal_solve",
    "wlsr_simplex",
]
