"""Training a registration or a gland model: the trainer and everything a run needs (training data, checkpoints,
weight averages, validation, progress lines, distributed steps, model headers).

May import :mod:`..registration` (the glands start of the training pairs) and everything below it.
"""

from __future__ import annotations
