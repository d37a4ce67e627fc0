"""Which inverse takes MR targets onto the US: SimpleITK's displacement-field inverses or the per-point one.

    python Testing/Benchmarks/benchmark_point_inversion.py [--pairs 5]

On phantom pairs with their known fields (fixed US x -> moving MR x + u(x)), MR targets are made from US points
well inside the field, and each method maps them back; the error is the distance to the US point they came from.

- ``InvertDisplacementField`` and ``IterativeInverseDisplacementField`` (SimpleITK) invert the field on its own
  grid, the US's, and then look the inverse up at the MR target;
- the per-point inverse (LabelRegLib.registration.point_mapping, what ``labelreg map-points --to us`` uses) solves
  ``x + u(x) = y`` for each target by Newton's method.

Two cases: the whole field (with the translation the centres alignment puts between the US and the MR grids), and
the field without its mean (a registration whose MR already overlaps the US, as with ``--init physical``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "LabelReg"))


def sitk_inverse(displacement, method: str):
    """A function mapping RAS points through SimpleITK's inverse of ``displacement`` (computed on its grid)."""
    import SimpleITK as sitk
    from LabelRegLib.core.sitk_geometry import to_sitk_image
    from LabelRegLib.core.transform_io import FLIP

    field = to_sitk_image((displacement.array * FLIP).astype(np.float64), displacement.ijk_to_ras, is_vector=True)
    if method == "InvertDisplacementField":
        inverse = sitk.InvertDisplacementField(field, 50, 0.01, 0.001, True)
    else:
        inverse = sitk.IterativeInverseDisplacementField(field, 50, 0.001)
    transform = sitk.DisplacementFieldTransform(sitk.Cast(inverse, sitk.sitkVectorFloat64))
    return lambda ras: np.array([transform.TransformPoint(tuple(p * FLIP)) for p in ras]) * FLIP


def main() -> None:
    from LabelRegLib.core.volume import Volume
    from LabelRegLib.data.phantom import make_phantom_pair
    from LabelRegLib.registration.point_mapping import FieldMapper

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    errors: dict = {}
    for seed in range(args.pairs):
        pair = make_phantom_pair(seed, oblique=bool(seed % 2))
        whole = pair.true_displacement
        local = Volume(whole.array - whole.array.reshape(-1, 3).mean(axis=0), whole.ijk_to_ras)
        for case, field in (("whole field", whole), ("field less its mean", local)):
            mapper = FieldMapper(field)
            rng = np.random.default_rng(seed)
            ijk = np.stack([rng.uniform(6, n - 7, 30) for n in field.shape[::-1]], axis=-1)
            us = ijk @ field.ijk_to_ras[:3, :3].T + field.ijk_to_ras[:3, 3]
            targets = mapper.phi(us)
            methods = {  # each makes its inverse (SimpleITK's: on the whole grid), timed with the mapping
                "per point (map-points)": lambda f: lambda y: mapper.to_us(y, [str(n) for n in range(len(y))])[0],
                "InvertDisplacementField": lambda f: sitk_inverse(f, "InvertDisplacementField"),
                "IterativeInverseDisplacementField": lambda f: sitk_inverse(f, "IterativeInverseDisplacementField"),
            }
            for name, make in methods.items():
                started = time.perf_counter()
                found = make(field)(targets)
                seconds = time.perf_counter() - started
                entry = errors.setdefault((case, name), ([], []))
                entry[0].extend(np.linalg.norm(found - us, axis=-1))
                entry[1].append(seconds)
    print(f"| field | method | error median mm | error max mm | seconds for 30 targets |  ({args.pairs} phantom pairs)")
    print("|---|---|---|---|---|")
    for (case, name), (error, seconds) in errors.items():
        print(f"| {case} | {name} | {np.median(error):.2g} | {np.max(error):.2g} | {np.median(seconds):.2f} |")


if __name__ == "__main__":
    main()
