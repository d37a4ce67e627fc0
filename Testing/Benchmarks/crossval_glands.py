"""The gland model alone, cross-validated: how well a gland training recipe finds the gland in volumes it never saw.

    python Testing/Benchmarks/crossval_glands.py RECIPE.ini --output CVDIR [--folds 3] [--only-fold K]
        [--steps 2000 --spacing-mm 2.5 ...: any labelreg train-glands setting]

Trains, per fold of the split ``labelreg crossval RECIPE.ini --folds K`` makes (the recipe's data and seed), a gland
model on the other folds' cases into ``CVDIR/fold<k>/glands/model.pt`` (kept when finished: a rerun only measures,
and ``labelreg crossval ... --glands --resume`` on the same folder registers with these models), then measures it on
the fold's held-out MR and US volumes: Dice on the segmentation grid and centroid error in mm. Writes
``CVDIR/glands.csv`` (one row per held-out case) and ``CVDIR/glands_summary.json`` (the settings and the medians),
and prints the table. Every number is held out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "LabelReg"))

MEASURES = ("gland_dice_mr", "gland_centroid_mm_mr", "gland_dice_us", "gland_centroid_mm_us")


def main() -> int:
    from LabelRegLib.cli.train_glands import add_gland_settings, gland_settings_from
    from LabelRegLib.core.config import train_config_from_ini
    from LabelRegLib.core.writes import write_text
    from LabelRegLib.evaluation.crossval import CrossValidation
    from LabelRegLib.evaluation.evaluate import gland_accuracy, write_metrics_csv
    from LabelRegLib.registration.glands import GlandSegmenter

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="the cross-validated recipe's first stage (.ini): its data and seed")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--output", required=True, help="the cross-validation folder")
    parser.add_argument("--only-fold", type=int, action="append", help="train and measure this fold only")
    parser.add_argument("--device", default="cpu")
    add_gland_settings(parser)
    args = parser.parse_args()

    settings = gland_settings_from(args)
    crossval = CrossValidation(
        [train_config_from_ini(args.recipe)], args.folds, args.output, resume=True, glands=True, gland_settings=settings
    )
    rows = []
    for fold, held_out in enumerate(crossval.folds):
        if args.only_fold and fold not in args.only_fold:
            continue
        segmenter = GlandSegmenter(crossval.train_glands(fold, args.device), args.device)
        for index in held_out:
            case = crossval.cases[index]
            measures = gland_accuracy(segmenter.segment_pair(case.moving_image, case.fixed_image), case)
            rows.append({"case": case.name, "fold": fold, **{key: measures[key] for key in MEASURES}})

    output = Path(args.output)
    write_metrics_csv(rows, output / "glands.csv", list(rows[0]))
    summary = {
        "settings": asdict(settings),
        "folds": sorted({row["fold"] for row in rows}),
        "n_cases": len(rows),
        **{f"{key}_median": statistics.median(row[key] for row in rows) for key in MEASURES},
    }
    write_text(output / "glands_summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"\nheld-out gland models over {len(rows)} cases (medians), folds {summary['folds']}")
    for modality in ("mr", "us"):
        print(
            f"  {modality.upper()}: Dice {summary[f'gland_dice_{modality}_median']:.3f}, "
            f"centroid error {summary[f'gland_centroid_mm_{modality}_median']:.2f} mm"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
