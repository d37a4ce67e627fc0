"""``python -m LabelRegLib.cli``: the ``labelreg`` command (as the training process and the tests start it)."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
