"""Render docs/usage.md's picture of biopsy targets carried from the MR onto the US.

    python Testing/Pictures/render_targets.py [--model M] [--output Testing/Pictures/targets.png]

A phantom pair is registered with the model; the centres of its MR landmarks (the targets a radiologist would
place) are mapped onto the US as ``labelreg map-points --to us`` maps them. Each panel is the US slice through
one landmark, with that landmark's true outline on the US, the target after the centres-aligned start (open
circle) and after LabelReg (cross).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "LabelReg"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--output", default=str(HERE / "targets.png"))
    parser.add_argument("--seed", type=int, default=1003)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from LabelRegLib.core.metrics import centroid_ras
    from LabelRegLib.data.phantom import make_phantom_pair
    from LabelRegLib.registration.point_mapping import FieldMapper
    from LabelRegLib.registration.registrar import Registrar

    pair = make_phantom_pair(args.seed)
    result = Registrar(args.model, "cpu").register(pair.moving_image, pair.fixed_image, warn=False)
    targets = np.array([centroid_ras(label) for label in pair.moving_labels[1:]])
    labels = [f"landmark {n}" for n in range(1, len(targets) + 1)]
    after, residual_mm = FieldMapper(result.displacement).to_us(targets, labels)
    before = (targets - result.initial[:3, 3]) @ np.linalg.inv(result.initial[:3, :3]).T
    us = pair.fixed_image
    ras_to_ijk = np.linalg.inv(us.ijk_to_ras)

    def ijk(points):
        return points @ ras_to_ijk[:3, :3].T + ras_to_ijk[:3, 3]

    figure, axes = plt.subplots(1, len(targets), figsize=(3.2 * len(targets), 3.8))
    for axis, truth, start, mapped, label in zip(np.atleast_1d(axes), pair.fixed_labels[1:], before, after, labels):
        centre = centroid_ras(truth)
        k = int(round(ijk(centre)[2]))
        axis.imshow(us.array[k], cmap="gray", origin="lower")
        axis.contour(truth.array[k], levels=[0.5], colors="yellow", linewidths=1.0)
        for point, marker, colour in ((start, "o", "tab:red"), (mapped, "+", "tab:green")):
            i, j, _ = ijk(point)
            axis.plot(i, j, marker, color=colour, markersize=11, markeredgewidth=2, fillstyle="none")
        distance = float(np.linalg.norm(mapped - centre))
        start_distance = float(np.linalg.norm(start - centre))
        axis.set_title(f"{label}: {start_distance:.1f} -> {distance:.1f} mm", fontsize=9)
        axis.axis("off")
    figure.suptitle(
        f"MR targets on the US (phantom {args.seed}); yellow: the landmark's outline on the US\n"
        f"o: after the centred start, +: after LabelReg (inversion residual <= {residual_mm.max():.0e} mm)",
        fontsize=8,
    )
    figure.tight_layout()
    figure.savefig(args.output, dpi=90)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
