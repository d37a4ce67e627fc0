"""The glands alignment, cross-validated: how well each start aligns pairs whose gland model never saw them.

    python Testing/Benchmarks/crossval_gland_alignment.py RECIPE.ini --folds K --output CVDIR [--register] [--only-fold K]

reads the fold gland models of a ``labelreg crossval --glands`` folder (``CVDIR/fold<k>/glands/model.pt``,
trained on the other folds' cases) and, for every held-out case, prints:

1. how well the fold model finds the gland (Dice on its segmentation grid, centroid error in mm), in MR and US;
2. the start each initial alignment gives (``centers`` and ``glands`` with each transform): median gland Dice
   and median landmark TRE over the held-out pairs, and the alignment's time per pair (segmentation excluded);
3. with ``--register``, the same after the fold's registration model (``CVDIR/fold<k>/stage<last>/model.pt``)
   registers from each start, and how many pairs end with a lower gland Dice than they started with.

Which gland transform a recipe should use, and whether a model trained from centred pairs gains from a glands
start. Every number is held out: the fold's models never saw the pair.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "LabelReg"))


def main() -> int:
    from LabelRegLib.core.config import GLAND_TRANSFORMS, train_config_from_ini
    from LabelRegLib.core.metrics import dice, tre_mm
    from LabelRegLib.core.spatial import initial_alignment, resample_volume
    from LabelRegLib.evaluation.crossval import CrossValidation
    from LabelRegLib.evaluation.evaluate import gland_accuracy
    from LabelRegLib.registration.gland_alignment import glands_initial
    from LabelRegLib.registration.glands import GlandSegmenter

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="the cross-validated recipe's first stage (.ini): its data and seed")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--output", required=True, help="the labelreg crossval --glands folder")
    parser.add_argument("--register", action="store_true", help="also register from each start (the fold models)")
    parser.add_argument("--only-fold", type=int, action="append", help="measure this fold only (repeatable)")
    args = parser.parse_args()

    crossval = CrossValidation([train_config_from_ini(args.recipe)], args.folds, args.output, resume=True)
    modes = ["centers", *(f"glands {transform}" for transform in GLAND_TRANSFORMS)]
    starts = {mode: [] for mode in modes}
    seconds = {mode: [] for mode in modes}
    accuracy, after = [], {mode: [] for mode in modes}
    for fold, held_out in enumerate(crossval.folds):
        if args.only_fold and fold not in args.only_fold:
            continue
        segmenter = GlandSegmenter(crossval.gland_model(fold), "cpu")
        if args.register:
            from LabelRegLib.evaluation.evaluate import evaluate_case
            from LabelRegLib.registration.registrar import Registrar

            stages = sorted((Path(args.output) / f"fold{fold}").glob("stage*/model.pt"))
            registrar = Registrar(stages[-1], "cpu", gland_model=crossval.gland_model(fold))
        for index in held_out:
            case = crossval.cases[index]
            moving, fixed = case.moving_image, case.fixed_image
            glands = segmenter.segment_pair(moving, fixed)
            accuracy.append(gland_accuracy(glands, case))
            for mode in modes:
                started = time.perf_counter()
                if mode == "centers":
                    matrix = initial_alignment(moving, fixed, "centers")
                else:
                    matrix, _ = glands_initial(moving, fixed, *glands, mode.split()[1])
                seconds[mode].append(time.perf_counter() - started)
                moved = [resample_volume(label, fixed.shape, fixed.ijk_to_ras, matrix) for label in case.moving_labels]
                landmarks = [tre_mm(m, t) for m, t in zip(moved[1:], case.fixed_labels[1:])] or [np.nan]
                starts[mode].append((dice(moved[0].array, case.fixed_labels[0].array), float(np.median(landmarks))))
                if args.register:
                    alignment, *transform = mode.split()
                    registrar.gland_transform = transform[0] if transform else registrar.gland_transform
                    rows = evaluate_case(registrar, case, alignment).rows
                    tre = [r["tre_mm_after"] for r in rows[1:]] or [np.nan]
                    after[mode].append((rows[0]["dice_after"], float(np.median(tre)), rows[0]["dice_before"]))
            print(f"fold {fold} {case.name}: " + ", ".join(f"{m} {starts[m][-1][0]:.3f}" for m in modes), flush=True)

    print(f"\nThe fold gland models on their {len(accuracy)} held-out cases (medians)")
    for modality in ("mr", "us"):
        print(
            f"  {modality.upper()}: gland Dice {statistics.median(a[f'gland_dice_{modality}'] for a in accuracy):.3f}, "
            f"centroid error {statistics.median(a[f'gland_centroid_mm_{modality}'] for a in accuracy):.2f} mm"
        )
    print(f"\n{'start':<22}{'gland Dice':>12}{'landmark TRE mm':>17}{'ms per pair':>13}")
    for mode in modes:
        values = starts[mode]
        print(
            f"{mode:<22}{statistics.median(v[0] for v in values):>12.3f}"
            f"{float(np.nanmedian([v[1] for v in values])):>17.2f}{1000 * statistics.median(seconds[mode]):>13.0f}"
        )
    if args.register:
        print(f"\n{'registered from':<22}{'gland Dice':>12}{'landmark TRE mm':>17}{'worse than start':>18}")
        for mode in modes:
            values = after[mode]
            print(
                f"{mode:<22}{statistics.median(v[0] for v in values):>12.3f}"
                f"{float(np.nanmedian([v[1] for v in values])):>17.2f}{sum(v[0] < v[2] for v in values):>18d}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
