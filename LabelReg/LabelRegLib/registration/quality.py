"""How far a registration trusts itself: its own two predicted glands, compared after the registration.

The gland network (:mod:`.glands`) finds the gland in the MR and in the US
independently of the registration network; the registration moves the MR
gland onto the US. Where the two agree afterwards (a high Dice, close
centroids) the registration at least aligned the organ; where they disagree,
either the registration or a gland estimate is wrong, and the user is told.
No true label is used: this is available on every new pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core.metrics import dice
from ..core.volume import Volume

if TYPE_CHECKING:  # imported where used: a Quality unpickles without torch (the registration worker's replies)
    from .glands import Gland

QUALITY_COLUMNS = ("quality_dice", "quality_centroid_mm", "quality_flag")


@dataclass
class Quality:
    """The self-assessment of one registration (no true label involved)."""

    dice: float  # Dice of the warped predicted MR gland and the predicted US gland (0 when either is missing)
    centroid_mm: float  # distance of their centroids, RAS mm (NaN when either is missing)
    threshold: float | None  # Dice below which the registration is flagged (from the gland model's header)
    missing: str = ""  # the images whose gland was not found ("MR", "US", "MR and US"): then nothing was checked

    @property
    def flagged(self) -> bool:
        """Below the threshold, or not checked at all (a gland not found), whatever the model's threshold."""
        return bool(self.missing) or self.threshold is not None and not self.dice >= self.threshold

    def row(self) -> dict:
        """The :data:`QUALITY_COLUMNS` of a CSV row."""
        return dict(zip(QUALITY_COLUMNS, (self.dice, self.centroid_mm, int(self.flagged))))

    def text(self) -> str:
        """One line for a terminal or a status bar."""
        if self.missing:
            return (
                f"self-check: no gland found on the {self.missing}, so the registration could not be checked - "
                "check it before relying on it"
            )
        line = (
            f"self-check: predicted glands overlap with Dice {self.dice:.2f}, centroids {self.centroid_mm:.1f} mm apart"
        )
        if self.flagged:
            line += f" - below {self.threshold:.2f}: check this registration before relying on it"
        return line


def quality_score(moving: Gland, fixed: Gland, displacement: Volume, threshold: float | None = None) -> Quality:
    """Compare the predicted MR gland, moved by the registration's ``displacement`` (RAS mm on the fixed grid:
    fixed ``x`` -> moving ``x + u(x)``), with the predicted US gland on its segmentation grid."""
    from ..core.spatial import resample_volume
    from .glands import Gland

    if not (moving.found and fixed.found):
        missing = " and ".join(name for name, gland in (("MR", moving), ("US", fixed)) if not gland.found)
        return Quality(0.0, float("nan"), threshold, missing)
    grid = fixed.probability
    field = resample_volume(displacement, grid.shape, grid.ijk_to_ras).array  # the displacement on the gland grid
    warped = resample_volume(moving.probability, grid.shape, grid.ijk_to_ras, displacement_ras=field)
    distance = float(np.linalg.norm(Gland(warped).centroid_ras - fixed.centroid_ras))
    return Quality(dice(warped.array, grid.array), distance, threshold)
