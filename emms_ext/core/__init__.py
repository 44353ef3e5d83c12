"""Layer 2 (docs/design.md §2–§4, §6): the EMMS score. Labels to a label basis (``labels``), features to
sufficient statistics (``ingest``, ``stats``), Gram factorizations (``factor``, ``out_of_sample``) on
thread-independent linear algebra (``linalg``), the pipeline that batches a zoo into one fused solve
(``pipeline``), the public ``emms_score`` / ``emms_scores`` (``score``) and their results (``results``);
``distributed`` shards a zoo over processes. Imports ``ops`` and ``common`` only — never ``embed`` or
transformers."""

from .labels import ClassLabels, FreeTextLabels
from .results import EMMSDegeneracyWarning, EMMSResult, ZooScores
from .score import emms_score, emms_scores

__all__ = [
    "ClassLabels",
    "EMMSDegeneracyWarning",
    "EMMSResult",
    "FreeTextLabels",
    "ZooScores",
    "emms_score",
    "emms_scores",
]
