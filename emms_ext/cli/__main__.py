"""``python -m emms_ext.cli``: the ``emms`` command."""

import sys

from .main import main

sys.exit(main())
