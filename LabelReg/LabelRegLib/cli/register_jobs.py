"""The work of ``labelreg register``: each job registered and its outputs written, failures reported and the
others continued, the optional report CSV."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from ..core.errors import LabelRegError


def write_gland(gland, image, path) -> None:
    """A predicted gland as a label map (0/1) on ``image``'s own grid."""
    import numpy as np

    from ..core.io import write_volume
    from ..core.spatial import resample_volume

    on_grid = resample_volume(gland.probability, image.shape, image.ijk_to_ras)
    write_volume(on_grid.with_array((on_grid.array > 0.5).astype(np.uint8)), path)


def register_one(registrar, job: dict, alignment):
    from ..core.io import read_labels, read_volume, write_volume
    from ..core.transform_io import write_displacement

    # named by their files, so that what the registration refuses (no content, too small, too large) names the file
    moving, fixed = (replace(read_volume(job[role]), name=str(job[role])) for role in ("moving", "fixed"))
    labels = read_labels(job["moving_label"]) if job.get("moving_label") else []
    if labels and not labels[0].same_geometry(moving):
        raise LabelRegError(
            f"{job['moving_label']}: is not on the grid of the moving image {job['moving']}; labels must share its geometry"
        )
    if (job.get("moving_gland") or job.get("fixed_gland")) and registrar.glands is None:
        raise LabelRegError("--output-glands: no gland model is loaded (give --gland-model)")
    result = registrar.register(moving, fixed, alignment)
    if job.get("output_transform"):
        write_displacement(result.displacement, job["output_transform"])
    if job.get("warped_image"):
        write_volume(result.warp(moving), job["warped_image"])
    if job.get("warped_label"):
        warped = [result.warp(label) for label in labels]
        write_volume(warped if len(warped) > 1 else warped[0], job["warped_label"])
    for gland, image, column in zip(result.glands, (moving, fixed), ("moving_gland", "fixed_gland")):
        if job.get(column):
            write_gland(gland, image, job[column])
    if job.get("moving_points"):
        from ..registration.point_mapping import map_point_file

        _points, _mapped, residual_mm = map_point_file(
            result.displacement, job["moving_points"], job["points_on_fixed"]
        )
        print(f"  {len(residual_mm)} point(s) onto the US, inversion residual at most {residual_mm.max():.4f} mm")
    print(f"{Path(job['moving']).name} -> {Path(job['fixed']).name}: {result.runtime_s:.2f} s on {result.device}")
    if result.quality is not None:
        print(f"  {result.quality.text()}")
    return result


REPORT_COLUMNS = ("moving", "fixed", "runtime_s", "device")


def register_jobs(
    registrar, jobs: list[tuple[int, dict]], alignment, source: str | None = None, report: str | None = None
) -> int:
    """Register every job; with several, a failed one is reported and the others go on (exit 1 at the end). With
    ``report``, a CSV of the registered pairs: runtime and quality score."""
    failures, rows = [], []
    for n, job in jobs:
        try:
            result = register_one(registrar, job, alignment)
            rows.append(
                {
                    **{key: str(job[key]) for key in REPORT_COLUMNS[:2]},
                    "runtime_s": result.runtime_s,
                    "device": result.device,
                    **(result.quality.row() if result.quality else {}),
                }
            )
        except LabelRegError as error:
            where = f"{source}: row {n}" if source else job["moving"]
            if len(jobs) == 1 and source:  # a one-row CSV names its row too
                raise LabelRegError(f"{where}: {error}") from None
            if len(jobs) == 1:
                raise
            failures.append(f"{where}: {error}")
            print(f"labelreg register: error: {failures[-1]}", file=sys.stderr)
    if failures:
        print(f"labelreg register: {len(failures)} of {len(jobs)} pairs failed", file=sys.stderr)
    if report and rows:
        from ..evaluation.evaluate import write_metrics_csv
        from ..registration.quality import QUALITY_COLUMNS

        write_metrics_csv(rows, Path(report), [*REPORT_COLUMNS, *(QUALITY_COLUMNS if registrar.glands else ())])
    return 1 if failures else 0
