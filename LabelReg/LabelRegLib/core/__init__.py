"""The ground floor: volumes, files, geometry, settings, errors and checks that every other layer uses.

A :class:`~.volume.Volume` (array ``[k, j, i]`` and its IJK->RAS matrix in mm), reading and writing images and
transforms with verified writes (:mod:`.io`, :mod:`.transform_io`, :mod:`.point_files`), resampling and spatial
maths (:mod:`.spatial`), the one settings schema (:mod:`.config`), devices, memory estimates, output checks and
claims (:mod:`.outputs`), the pairs CSV, metrics, errors and LabelReg's own processes (:mod:`.processes`).
It imports nothing from LabelRegLib outside ``core``; torch only inside functions that need it.
"""

from __future__ import annotations
