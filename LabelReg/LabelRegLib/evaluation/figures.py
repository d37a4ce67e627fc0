"""Pictures of a registration: the fixed US, the moving MR before and after, with label contours."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.writes import atomic_output, verify_png
from ..data.cases import Case
from ..registration.registrar import RegistrationResult


def _gland_slice(label: np.ndarray) -> int:
    """The k index through the middle of the gland (the centre of the grid if it is empty)."""
    k = np.nonzero(label >= 0.5)[0]
    return int(np.round(k.mean())) if k.size else label.shape[0] // 2


def case_figure(
    case: Case, before_labels: list, after_labels: list, result: RegistrationResult, path: str | Path
) -> None:
    """Three panels on one axial slice of the fixed grid: US with its gland contour (green); MR after the
    initial alignment and after the registration, each with the MR gland contour (red) and the US one (green)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..core.spatial import resample_volume

    fixed = case.fixed_image
    k = _gland_slice(case.fixed_labels[0].array)
    mr_before = resample_volume(case.moving_image, fixed.shape, fixed.ijk_to_ras, result.initial).array
    mr_after = result.warp(case.moving_image).array
    panels = [
        ("US (fixed)", fixed.array, None),
        ("MR before (initial alignment)", mr_before, before_labels[0].array),
        ("MR after LabelReg", mr_after, after_labels[0].array),
    ]
    spacing = fixed.spacing
    aspect = spacing[1] / spacing[0]
    figure, axes = plt.subplots(1, 3, figsize=(11, 4))
    for axis, (title, image, moving_label) in zip(axes, panels):
        axis.imshow(image[k], cmap="gray", origin="lower", aspect=aspect)
        axis.contour(case.fixed_labels[0].array[k], levels=[0.5], colors="lime", linewidths=1.2)
        if moving_label is not None:
            axis.contour(moving_label[k], levels=[0.5], colors="red", linewidths=1.2)
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    figure.suptitle(f"{case.name}: axial slice k={k} of the US grid; green = US gland, red = MR gland", fontsize=10)
    figure.tight_layout()
    with atomic_output(path, verify_png) as temporary:
        figure.savefig(temporary, dpi=90)
    plt.close(figure)
