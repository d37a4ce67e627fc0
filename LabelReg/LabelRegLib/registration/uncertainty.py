"""How far a target may be off: the spread of the registration's own fields.

The default pipeline computes several complete fields for one pair: one per
start (the centres, the glands) and, for a model trained mirrored, one per
mirrored copy of each. Each maps the same fixed (US) point ``x`` to a moving
(MR) point ``x + u_n(x)``. Where they agree the network was sure; where they
disagree, by millimetres, the target is at least that uncertain. The spread at
a voxel is the largest distance between any two of the fields' moving points,
in mm (two fields that differ by a shift of 5 mm give 5 mm). No true label is
used. Whether it ranks the true error well enough to be shown is measured in
the cross-validation (``uncertainty`` in its ``summary.json``), not assumed.
"""

from __future__ import annotations

import numpy as np

from ..core.metrics import centroid_ras
from ..core.volume import Volume


def field_spread_mm(fields: list[np.ndarray]) -> np.ndarray:
    """Per voxel, the largest distance (mm) between the vectors of any two of ``fields`` (RAS ``[K, J, I, 3]`` on one
    grid): ``[K, J, I]``, zero for a single field."""
    if not fields:
        raise ValueError("the spread needs at least one field")
    spread = np.zeros(np.shape(fields[0])[:-1], dtype=np.float32)
    for a in range(len(fields)):
        for b in range(a + 1, len(fields)):
            distance = np.linalg.norm(np.asarray(fields[a], np.float64) - np.asarray(fields[b], np.float64), axis=-1)
            np.maximum(spread, distance.astype(np.float32), out=spread)
    return spread


def spread_at(spread: Volume, point_ras: np.ndarray) -> float:
    """The spread (mm) at a RAS point: its nearest voxel (the fields are smooth at the voxel scale), clipped to the
    grid; NaN for a NaN point (an empty label has no centroid)."""
    point = np.asarray(point_ras, dtype=float)
    if not np.all(np.isfinite(point)):
        return float("nan")
    ijk = np.linalg.solve(spread.ijk_to_ras, np.append(point, 1.0))[:3]
    i, j, k = (int(np.clip(np.rint(c), 0, n - 1)) for c, n in zip(ijk, spread.shape[::-1]))
    return float(spread.array[k, j, i])


def spread_at_label(spread: Volume, label: Volume) -> float:
    """The spread (mm) at the centroid of ``label`` (a label on any grid, e.g. an MR segment carried onto the US)."""
    return spread_at(spread, centroid_ras(label))
