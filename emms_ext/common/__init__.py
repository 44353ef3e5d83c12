"""Layer 0 (docs/design.md §4): argument checks, the on-disk cache and the progress bar, shared by every
layer above. Imports nothing from the rest of ``emms_ext``."""
