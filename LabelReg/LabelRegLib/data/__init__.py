"""Cases and what is done to them before a network sees them: reading data folders, preprocessing, augmentation,
and the synthetic phantom.

:mod:`.cases` reads a data folder into :class:`~.cases.Case` objects, :mod:`.preprocess` puts a pair on the
working grid, :mod:`.augmentation` draws random transforms, :mod:`.phantom` makes MR/US pairs with a known
deformation. May import :mod:`..core` and :mod:`..nets`.
"""

from __future__ import annotations
