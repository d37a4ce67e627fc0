"""One training / evaluation case: a moving and a fixed image with matching landmark labels.

``load_case`` reads the four files and checks what must hold between them:
the same number of landmarks in the moving and the fixed label file (same
order), and each label on its image's grid. Every problem raises an
:class:`InputError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import read_labels, read_volume
from .volume import Volume


@dataclass
class Case:
    """Images and (optionally) landmark labels of one pair; labels are gland first."""

    name: str
    moving_image: Volume
    fixed_image: Volume
    moving_labels: list[Volume] = field(default_factory=list)
    fixed_labels: list[Volume] = field(default_factory=list)

    @property
    def num_landmarks(self) -> int:
        return len(self.moving_labels)


def check_label_grid(image: Volume, labels: list[Volume], label_source: str) -> None:
    """Labels must share their image's grid (shape and geometry)."""
    for label in labels:
        if label.shape != image.shape:
            raise InputError(label_source, f"label size {label.shape[::-1]} (i, j, k) differs from its image's {image.shape[::-1]}")
        if not np.allclose(label.ijk_to_ras, image.ijk_to_ras, atol=1e-3):
            raise InputError(label_source, "label geometry (origin, spacing or direction) differs from its image's")


def check_landmark_counts(moving_labels: list, fixed_labels: list, moving_source: str, fixed_source: str) -> None:
    if len(moving_labels) != len(fixed_labels):
        raise InputError(
            fixed_source,
            f"has {len(fixed_labels)} landmark(s) but the moving label file {moving_source} has {len(moving_labels)}; "
            "moving and fixed labels must list the same landmarks in the same order",
        )


def load_case(moving_image, fixed_image, moving_label=None, fixed_label=None, name: str | None = None) -> Case:
    """Read and check one case from files (labels optional, but both or neither)."""
    if (moving_label is None) != (fixed_label is None):
        missing = "fixed" if fixed_label is None else "moving"
        raise InputError(moving_label or fixed_label, f"has no {missing} label file to pair with")
    case = Case(name or Path(fixed_image).name, read_volume(moving_image), read_volume(fixed_image))
    if moving_label is not None:
        case.moving_labels = read_labels(moving_label)
        case.fixed_labels = read_labels(fixed_label)
        check_landmark_counts(case.moving_labels, case.fixed_labels, str(moving_label), str(fixed_label))
        check_label_grid(case.moving_image, case.moving_labels, str(moving_label))
        check_label_grid(case.fixed_image, case.fixed_labels, str(fixed_label))
    return case
