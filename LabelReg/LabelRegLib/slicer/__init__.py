"""LabelReg inside 3D Slicer, without Qt: MRML nodes to and from volumes (:mod:`.mrml`, :mod:`.mrml_outputs`), the
panels' parameter binding (:mod:`.panel`, :mod:`.training_panel`), live mode (:mod:`.live`, :mod:`.frame_queue`),
the training and data-check processes, the session that outlives a Reload, the self-tests, and
:mod:`.standalone`, which runs all of it on ``slicer-core``'s real MRML outside Slicer.

The Slicer module files (``LabelReg.py``, ``LabelRegTraining.py``) import from here and from
:mod:`..registration`. Nothing below imports this layer; it never imports :mod:`..cli`.
"""

from __future__ import annotations
