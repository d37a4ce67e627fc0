"""``labelreg crossval``: K-fold cross-validation of a training recipe (:mod:`LabelRegLib.evaluation.crossval`)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from .options import add_mirror_option
from .reports import FOLD_MEDIANS, medians, print_before_after


def add_parser(commands):
    from ..core.config import add_arguments

    parser = commands.add_parser(
        "crossval",
        help="K-fold cross-validation of a training recipe on its data folder",
        description="Split the recipe's cases into K folds; for each fold, train every stage of the recipe on the "
        "other folds and register the held-out cases; pool the held-out results (metrics.csv, per_case.csv, "
        "summary.json in --output). Flags override the settings of every stage.",
    )
    parser.add_argument("configs", nargs="+", metavar="CONFIG.ini", help="the recipe's stages, in order")
    parser.add_argument("--folds", type=int, default=3, help="K, the number of folds (default 3)")
    parser.add_argument("--output", required=True, help="the cross-validation folder")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted cross-validation")
    parser.add_argument("--overwrite", action="store_true", help="start again over a folder that holds one")
    parser.add_argument(
        "--glands",
        action="store_true",
        help="also train a gland segmentation model per fold: the held-out pairs get the quality score, and the "
        "summary its threshold and ranking (implied by initial_alignment = glands)",
    )
    parser.add_argument(
        "--gland-models-from",
        metavar="CVDIR",
        help="use the fold gland models of this other cross-validation folder (the same split) instead of training "
        "them: gland recipes compared on the same registration fold models (implies --glands)",
    )
    parser.add_argument(
        "--fold",
        type=int,
        action="append",
        metavar="K",
        help="train and evaluate fold K only (repeatable; implies --resume): one process per fold, in parallel; a "
        "run without --fold then pools them (finished folds are kept)",
    )
    add_mirror_option(parser)
    add_arguments(parser)
    parser.set_defaults(func=run_crossval)


def run_crossval(args) -> int:
    from ..core.config import TrainConfig, config_from
    from ..evaluation.crossval import CrossValidation

    flags = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    stages = [config_from(ini, flags) for ini in args.configs]
    crossval = CrossValidation(
        stages,
        args.folds,
        args.output,
        args.resume or bool(args.fold),
        args.overwrite,
        glands=args.glands or bool(args.gland_models_from),
        gland_models_from=args.gland_models_from,
    )
    summary = crossval.run(stages[0].device, args.mirror, args.fold)
    print_before_after(
        [
            {"fold": f["fold"], "pairs": f["n_pairs"], **{key: f[median] for key, median in FOLD_MEDIANS.items()}}
            for f in summary["per_fold"]
        ],
        {"fold": 6, "pairs": 6},
    )
    if args.fold:
        print(f"fold(s) {', '.join(map(str, args.fold))} done; run again without --fold to pool every fold")
        return 0
    print(
        f"pooled over {summary['n_pairs']} held-out pairs: {medians(summary)}; folding max {summary['folding_max']:.4g}; "
        f"{len(summary['cases_worse_than_start'])} pairs end with a lower gland Dice than they start"
    )
    quality = summary.get("quality")
    if quality:
        print(
            f"quality score: Spearman with the pair's TRE {quality['spearman_quality_dice_vs_tre']:.2f} (Dice), "
            f"{quality['spearman_quality_centroid_vs_tre']:.2f} (centroid distance); below Dice "
            f"{quality['dice_threshold']:.3f}: {quality['n_flagged']} pairs flagged, median TRE "
            f"{quality['tre_mm_median_flagged']:.2f} mm vs {quality['tre_mm_median_unflagged']:.2f} mm"
        )
        detector = quality["detector"]
        print(
            f"as a failure detector: flags {detector['share_of_failed_flagged']:.0%} of the {detector['n_failed']} "
            f"pairs with TRE > {detector['failure_tre_mm']:g} mm and {detector['share_of_others_flagged']:.0%} of the others"
        )
    spread = summary.get("uncertainty")
    if spread:
        print(
            f"fields' spread at {spread['n_landmarks']} landmarks (median {spread['spread_mm_median']:.2f} mm): "
            f"Spearman with the TRE {spread['spearman_spread_vs_tre']:.2f}, ROC AUC for TRE > "
            f"{spread['large_tre_mm']:g} mm {spread['auc_large_tre']:.2f}; above the folds' thresholds {spread['n_flagged']} landmarks, median "
            f"TRE {spread['tre_mm_median_flagged']:.2f} mm vs {spread['tre_mm_median_unflagged']:.2f} mm"
        )
    print(f"tables in {Path(args.output).resolve()}")
    return 0
