"""Measuring: registering cases with known labels and tabulating gland Dice and landmark TRE (:mod:`.evaluate`),
their pictures (:mod:`.figures`), and K-fold cross-validation of a training recipe (:mod:`.crossval`).

May import :mod:`..training` and everything below it.
"""

from __future__ import annotations
