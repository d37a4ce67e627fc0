"""Point-based against image-based landmark TRE: the MR landmark centroids mapped onto the US as points.

    python Testing/Benchmarks/point_tre.py [--data ../shared/data/mrus-prostate] [--model M] [--output rows.csv]

For every pair of the data folder, the model registers the MR to the US (the default pipeline) and each
landmark (label >= 1) is measured twice:

- image-based, as ``labelreg evaluate`` does: the MR label warped onto the US grid, the distance of its
  centroid to the US label's centroid;
- point-based, as ``labelreg map-points --to us`` does: the MR label's centroid mapped onto the US through the
  inverted field, its distance to the US label's centroid.

The two differ where the field is not affine over the landmark (the centroid of a warped label is not the
warped centroid), where the US field of view cuts the warped label (its centroid moves inward), and where the
landmark's point falls outside the field (refused, counted here). Prints a table; ``--output`` keeps the rows.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "LabelReg"))


def main() -> None:
    from LabelRegLib.core.errors import InputError
    from LabelRegLib.core.metrics import centroid_ras
    from LabelRegLib.data.cases import load_data_folder
    from LabelRegLib.evaluation.evaluate import evaluate_case
    from LabelRegLib.registration.point_mapping import FieldMapper
    from LabelRegLib.registration.registrar import Registrar

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mrus-prostate"))
    parser.add_argument("--model", help="model file (default: the bundled model)")
    parser.add_argument("--output", help="a CSV of every landmark's two TREs")
    args = parser.parse_args()
    registrar = Registrar(args.model, "auto")
    rows, refused = [], 0
    for case in load_data_folder(args.data):
        evaluation = evaluate_case(registrar, case)
        mapper = FieldMapper(evaluation.result.displacement, source=case.name)
        for row in evaluation.rows[1:]:  # the landmarks; label 0 is the gland
            n = row["landmark"]
            target = centroid_ras(case.moving_labels[n])
            try:
                on_us, residual_mm = mapper.to_us(target[None], [f"{case.name} landmark {n}"])
            except InputError:
                refused += 1
                continue
            point_tre = float(np.linalg.norm(on_us[0] - centroid_ras(case.fixed_labels[n])))
            rows.append({"case": case.name, "landmark": n, "tre_mm_image": row["tre_mm_after"],
                         "tre_mm_point": point_tre, "residual_mm": float(residual_mm[0])})  # fmt: skip
    image = [r["tre_mm_image"] for r in rows]
    point = [r["tre_mm_point"] for r in rows]
    difference = [p - i for p, i in zip(point, image)]
    table = [
        ("pairs / landmarks mapped / refused (outside the field)",
         f"{len({r['case'] for r in rows})} / {len(rows)} / {refused}"),
        ("landmark TRE, image-based (labelreg evaluate), median", f"{statistics.median(image):.2f} mm"),
        ("landmark TRE, point-based (map-points --to us), median", f"{statistics.median(point):.2f} mm"),
        ("point minus image, median [10th, 90th percentile]",
         f"{statistics.median(difference):+.2f} [{np.percentile(difference, 10):+.2f}, "
         f"{np.percentile(difference, 90):+.2f}] mm"),
        ("|point - image| above 1 mm", f"{sum(abs(d) > 1 for d in difference)} landmarks"),
        ("inversion residual, max", f"{max(r['residual_mm'] for r in rows):.2g} mm"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in table)
    for name, value in table:
        print(f"{name.ljust(width)}  {value}")
    if args.output:
        with open(args.output, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
