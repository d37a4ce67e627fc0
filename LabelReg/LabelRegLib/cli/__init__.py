"""The ``labelreg`` command: train, register (infer), map-points, evaluate, crossval, train-glands, demo, info.

Run ``labelreg <command> --help`` for every option.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from dataclasses import fields, replace
from pathlib import Path

from .errors import LabelRegError

DEMO_SEEDS = (1001, 1002, 1003)  # phantom seeds kept out of every training set


# ---------------------------------------------------------------- train
def _add_train_parser(commands):
    from .config import add_arguments

    parser = commands.add_parser(
        "train",
        help="train a network from a data folder or an .ini file",
        description="Train a registration network. Settings come from CONFIG.ini (the original label-reg keys "
        "plus LabelReg's own), then from the flags below, which override the file.",
    )
    parser.add_argument("config", nargs="?", help="label-reg style .ini file ([Data], [Network], [Loss], [Train])")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from <output_dir>/checkpoint.pt (same settings; total_iterations may change)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in an output folder that holds a training (its files are replaced)",
    )
    parser.add_argument(
        "--progress-json", action="store_true", help="print one JSON object per line (step, losses, metrics, ETA)"
    )
    parser.add_argument(
        "--exit-with-parent",
        type=int,
        metavar="PID",
        help="stop (the last checkpoint kept) once process PID has ended (the application that started this training)",
    )
    add_arguments(parser)
    parser.set_defaults(func=run_train)


def train_config(args):
    """The validated :class:`~LabelRegLib.config.TrainConfig` of parsed ``labelreg train`` arguments: CONFIG.ini, then the flags."""
    from .config import TrainConfig, config_from

    return config_from(args.config, {f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def run_train(args) -> int:
    from .outputs import run_folder
    from .training import Trainer

    config = train_config(args)
    if not (config.data_dir or config.dir_moving_image):
        raise LabelRegError("no training data: give CONFIG.ini with a [Data] section, or --data_dir")
    run_folder(config, args.resume, args.overwrite)  # outputs refused before the data is read
    if args.exit_with_parent is not None:
        from .training_process import watch_parent

        watch_parent(args.exit_with_parent)
    model = Trainer(config, progress_json=args.progress_json, overwrite=args.overwrite).run(resume=args.resume)
    if not args.progress_json:
        print(f"model written to {model}")
    return 0


# ---------------------------------------------------------------- register
def _add_register_parser(commands):
    for name in ("register", "infer"):
        parser = commands.add_parser(
            name,
            help="register moving MR to fixed US" + (" (alias of register)" if name == "infer" else ""),
            description="Register a moving image to a fixed image with a trained model, writing the displacement field "
            "as an ITK transform (.h5) or a displacement-field image (.nii.gz), and optionally the warped image and labels. "
            "With CONFIG.ini, registers every pair of its [Inference] folders into dir_save.",
        )
        parser.add_argument("config", nargs="?", help="label-reg style .ini file with an [Inference] section")
        parser.add_argument("--moving", help="moving (MR) image file")
        parser.add_argument("--fixed", help="fixed (US) image file")
        parser.add_argument("--model", help="model file (default: the bundled model)")
        _add_alignment_options(parser)
        parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
        parser.add_argument("--output-transform", help="displacement field output (.h5 or .nii.gz)")
        parser.add_argument("--warped-image", help="moving image resampled on the fixed grid")
        parser.add_argument("--moving-label", help="moving label / landmark file to warp (3D, 4D or .seg.nrrd)")
        parser.add_argument("--warped-label", help="output of the warped labels on the fixed grid")
        parser.add_argument("--moving-points", help="MR points (biopsy targets, .csv or .mrk.json) to map onto the US")
        parser.add_argument(
            "--points-on-fixed", help="output of those points on the US (as labelreg map-points --to us writes them)"
        )
        parser.add_argument(
            "--output-glands",
            metavar="DIR",
            help="write the predicted glands (label maps on each image's grid) into DIR as <moving>_mr_gland.nii.gz "
            "and <fixed>_us_gland.nii.gz",
        )
        parser.add_argument(
            "--report",
            metavar="CSV",
            help="write one row per pair: runtime and the quality score (quality_dice, quality_centroid_mm, quality_flag)",
        )
        parser.add_argument(
            "--pairs",
            help="CSV with columns moving, fixed, output_transform[, warped_image, moving_label, warped_label, "
            "moving_gland, fixed_gland, moving_points, points_on_fixed]",
        )
        parser.add_argument("--overwrite", action="store_true", help="replace output files that exist (never an input)")
        _add_mirror_option(parser)
        parser.set_defaults(func=run_register)


def _add_alignment_options(parser) -> None:
    from .config import REGISTRATION_ALIGNMENTS

    parser.add_argument(
        "--init",
        choices=REGISTRATION_ALIGNMENTS,
        help="initial alignment (best: from the centres and from the glands, keeping the better self-check; auto, the "
        "default: best for a model trained from the centres when a gland model is loaded, else the model's own)",
    )
    parser.add_argument(
        "--gland-model",
        help="gland segmentation model of the glands alignment and the quality score (default: the bundled one)",
    )


def _add_mirror_option(parser) -> None:
    parser.add_argument(
        "--mirror",
        type=lambda axes: "" if axes.lower() == "none" else axes,
        metavar="AXES",
        help="test-time augmentation: also register the pair mirrored along these working-grid axes (i, j, k) and "
        "average the fields; default: the axes the model was trained mirrored along (j, left-right, for the bundled "
        "model); none: off",
    )


def _check_register_jobs(jobs: list, model: str | None, overwrite: bool, source: str | None = None) -> None:
    """Every job's outputs checked against every input, every other output and the disk, before any work."""
    from .io import file_suffix
    from .outputs import check_rows
    from .pairs_csv import COMMAND_LINE_COLUMNS, columns_of

    inputs, outputs = columns_of(COMMAND_LINE_COLUMNS)
    for n, job in jobs:
        where = f"{source}: row {n}: " if source else ""
        if not any(job.get(column) for column in outputs):
            raise LabelRegError(
                f"{where}{job['moving']}: nothing to write; give --output-transform, --warped-image or --warped-label"
            )
        for given, wanted in (("moving_label", "warped_label"), ("moving_points", "points_on_fixed")):
            if bool(job.get(given)) != bool(job.get(wanted)):
                raise LabelRegError(f"{where}{inputs[given]} and {outputs[wanted][0]} go together")
        if job.get("moving_points") and file_suffix(job["moving_points"]) != file_suffix(job["points_on_fixed"]):
            raise LabelRegError(f"{where}--points-on-fixed: write the points as {file_suffix(job['moving_points'])}")
    check_rows(jobs, inputs, outputs, overwrite, source, model)


def _gland_outputs(jobs: list, folder: str | None) -> list:
    """The jobs with ``moving_gland`` and ``fixed_gland`` filled from ``--output-glands DIR`` where not given."""
    if not folder:
        return jobs
    from .io import strip_suffix

    def named(path: str, modality: str) -> str:
        return str(Path(folder) / f"{Path(strip_suffix(path)).name}_{modality}_gland.nii.gz")

    return [
        (
            n,
            {
                **job,
                "moving_gland": job.get("moving_gland") or named(job["moving"], "mr"),
                "fixed_gland": job.get("fixed_gland") or named(job["fixed"], "us"),
            },
        )
        for n, job in jobs
    ]


def _write_gland(gland, image, path) -> None:
    """A predicted gland as a label map (0/1) on ``image``'s own grid."""
    import numpy as np

    from .io import write_volume
    from .spatial import resample_volume

    on_grid = resample_volume(gland.probability, image.shape, image.ijk_to_ras)
    write_volume(on_grid.with_array((on_grid.array > 0.5).astype(np.uint8)), path)


def _register_one(registrar, job: dict, alignment):
    from .io import read_labels, read_volume, write_volume
    from .transform_io import write_displacement

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
            _write_gland(gland, image, job[column])
    if job.get("moving_points"):
        from .point_mapping import map_point_file

        _points, _mapped, residual_mm = map_point_file(
            result.displacement, job["moving_points"], job["points_on_fixed"]
        )
        print(f"  {len(residual_mm)} point(s) onto the US, inversion residual at most {residual_mm.max():.4f} mm")
    print(f"{Path(job['moving']).name} -> {Path(job['fixed']).name}: {result.runtime_s:.2f} s on {result.device}")
    if result.quality is not None:
        print(f"  {result.quality.text()}")
    return result


def run_register(args) -> int:
    from .registration import Registrar

    _refuse_mixed_sources(args)
    if args.config:
        return _register_from_ini(args)
    if args.pairs:
        from .pairs_csv import read_pairs

        jobs = read_pairs(args.pairs)
    elif args.moving and args.fixed:
        from .pairs_csv import COMMAND_LINE_COLUMNS

        jobs = [(1, {key: getattr(args, key, None) for key in COMMAND_LINE_COLUMNS})]
    else:
        raise LabelRegError("give --moving and --fixed (or --pairs CSV, or CONFIG.ini)")
    jobs = _gland_outputs(jobs, args.output_glands)
    _check_register_jobs(jobs, args.model, args.overwrite, source=args.pairs)
    if args.report:
        from .outputs import check_outputs

        check_outputs({"--report": args.report}, {"--pairs": args.pairs}, args.overwrite, {"--report": (".csv",)})
    registrar = Registrar(args.model, args.device, args.mirror, args.gland_model)
    return _register_jobs(registrar, jobs, args.init, source=args.pairs, report=args.report)


def _refuse_mixed_sources(args) -> None:
    """The pairs come from one place: CONFIG.ini, --pairs, or the single-pair options; given together, one would be
    silently ignored."""
    from .pairs_csv import COMMAND_LINE_COLUMNS

    single = [f"--{key.replace('_', '-')}" for key in COMMAND_LINE_COLUMNS if getattr(args, key, None)]
    if args.config and (args.pairs or single):
        raise LabelRegError(
            f"{args.config}: registers its [Inference] folders; give it without {(single or ['--pairs'])[0]}"
        )
    if args.pairs and single:
        raise LabelRegError(
            f"--pairs {args.pairs}: names the files of every pair; give {single[0]} as a column of it instead"
        )


REPORT_COLUMNS = ("moving", "fixed", "runtime_s", "device")


def _register_jobs(
    registrar, jobs: list[tuple[int, dict]], alignment, source: str | None = None, report: str | None = None
) -> int:
    """Register every job; with several, a failed one is reported and the others go on (exit 1 at the end). With
    ``report``, a CSV of the registered pairs: runtime and quality score."""
    failures, rows = [], []
    for n, job in jobs:
        try:
            result = _register_one(registrar, job, alignment)
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
        from .evaluation import write_metrics_csv
        from .quality import QUALITY_COLUMNS

        write_metrics_csv(rows, Path(report), [*REPORT_COLUMNS, *(QUALITY_COLUMNS if registrar.glands else ())])
    return 1 if failures else 0


def _register_from_ini(args) -> int:
    """The original tutorial's inference: every pair of the [Inference] folders; DDF, warped image and labels into dir_save."""
    from .config import inference_settings_from_ini
    from .data import resolve_folders, scan_case_files, DataError
    from .registration import Registrar

    settings = inference_settings_from_ini(args.config)
    folders = resolve_folders(
        None,
        settings.get("dir_moving_image"),
        settings.get("dir_fixed_image"),
        settings.get("dir_moving_label"),
        settings.get("dir_fixed_label"),
    )
    has_labels = "dir_moving_label" in settings
    cases, problems = scan_case_files(folders, need_labels=has_labels)
    if problems:
        raise DataError(args.config, problems)
    out = Path(settings.get("dir_save", "."))
    jobs = [
        (
            n,
            {
                "moving": case.moving_image,
                "fixed": case.fixed_image,
                "moving_label": case.moving_label if has_labels else None,
                "output_transform": out / f"{case.name}_ddf.nii.gz",
                "warped_image": out / f"{case.name}_warped_image.nii.gz",
                "warped_label": out / f"{case.name}_warped_label.nii.gz" if has_labels else None,
            },
        )
        for n, case in enumerate(cases, 1)
    ]
    model = args.model or settings.get("file_model_saved")
    _check_register_jobs(jobs, model, args.overwrite, source=args.config)
    registrar = Registrar(
        model, args.device if args.device != "auto" else settings.get("device", "auto"), gland_model=args.gland_model
    )
    return _register_jobs(registrar, jobs, args.init or settings.get("initial_alignment"), source=args.config)


# ---------------------------------------------------------------- map-points
def _add_map_points_parser(commands):
    parser = commands.add_parser(
        "map-points",
        help="map points through a registration: MR targets onto the US, or US positions onto the MR",
        description="Map points through a registration's transform file (from labelreg register --output-transform "
        "or Slicer). --to us takes MR points (biopsy targets) onto the US: the field inverted point by point, each "
        "point's inversion residual reported; --to mr takes US points (a needle tip) onto the MR. Points: CSV "
        "(label,r,a,s in RAS mm, label,l,p,s in LPS mm) or Slicer markups (.mrk.json); the output keeps the input's "
        "form, names and coordinate system.",
    )
    parser.add_argument("--transform", required=True, help="the registration (.h5, or a displacement-field image)")
    parser.add_argument("--points", required=True, help="the points to map (.csv or .mrk.json)")
    parser.add_argument("--output", required=True, help="the mapped points (the same form as --points)")
    parser.add_argument("--to", required=True, choices=("us", "mr"), help="where the points go")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    parser.set_defaults(func=run_map_points)


def run_map_points(args) -> int:
    from .io import file_suffix
    from .outputs import check_outputs
    from .point_mapping import map_point_file
    from .transform_io import read_displacement

    inputs = {"--transform": args.transform, "--points": args.points}
    check_outputs({"--output": args.output}, inputs, args.overwrite, {"--output": (file_suffix(args.points),)})
    displacement = read_displacement(args.transform)
    points, mapped, residual_mm = map_point_file(displacement, args.points, args.output, args.to)
    for n, label in enumerate(points.labels):
        line = f"{label}: RAS {_ras(points.ras[n])} -> {_ras(mapped[n])}"
        print(line + (f" (residual {residual_mm[n]:.4f} mm)" if residual_mm is not None else ""))
    where = "the US" if args.to == "us" else "the MR"
    residual = f"; inversion residual at most {residual_mm.max():.4f} mm" if residual_mm is not None else ""
    print(f"{len(points.labels)} point(s) mapped onto {where}{residual}; written to {args.output}")
    return 0


def _ras(point) -> str:
    return "(" + ", ".join(f"{value:.2f}" for value in point) + ")"


# ---------------------------------------------------------------- evaluate
def _add_evaluate_parser(commands):
    parser = commands.add_parser("evaluate", help="register every labelled pair of a data folder and measure it")
    parser.add_argument("data_dir", help="folder with moving_images/, fixed_images/, moving_labels/, fixed_labels/")
    parser.add_argument("--model", help="model file (default: the bundled model)")
    parser.add_argument("--output", required=True, help="folder for metrics.csv, summary.json and one PNG per case")
    _add_alignment_options(parser)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cases", help="comma-separated case names to evaluate (default: all)")
    parser.add_argument(
        "--passes", type=_positive, help="network passes per registration, 1 to 8 (default: the model's)"
    )
    _add_mirror_option(parser)
    parser.add_argument("--no-pictures", action="store_true")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the reports of an earlier evaluation in --output"
    )
    parser.set_defaults(func=run_evaluate)


def _pictures(command: str, wanted: bool = True) -> bool:
    """Whether to draw the per-case pictures: wanted and matplotlib installed (an optional dependency, ``labelreg[plots]``)."""
    import importlib.util

    if wanted and importlib.util.find_spec("matplotlib") is None:
        print(
            f"labelreg {command}: warning: matplotlib is not installed (pip install matplotlib): no pictures, metrics only",
            file=sys.stderr,
        )
        return False
    return wanted


def _positive(text: str) -> int:
    """An argparse type: a whole number from 1 to 8 (network passes)."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 8:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number from 1 to 8")
    return int(text)


def _check_report_folder(folder: str, names: list[str], overwrite: bool, own: str | None = None) -> None:
    """``evaluate``'s and ``demo``'s ``--output``: a folder LabelReg can write, whose files ``names`` are replaced only
    with ``overwrite``; with ``own`` (the demo), the files are that command's to replace, but a folder holding anything
    else (another command's outputs) is refused without ``overwrite``. Checked before any work."""
    from .outputs import check_output_folder, check_outputs

    folder = check_output_folder("--output", folder)
    if own and folder.is_dir() and not overwrite:
        others = sorted(entry.name for entry in folder.iterdir() if entry.name not in names and entry.name[0] != ".")
        if others:
            raise LabelRegError(
                f"--output {folder}: holds files that {own} does not write ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}); give a new folder, or --overwrite to write among them"
            )
    for name in names:
        check_outputs({"--output": folder / name}, overwrite=overwrite or bool(own))


def run_evaluate(args) -> int:
    import json

    from .data import load_data_folder
    from .evaluation import evaluate_cases, report_files
    from .registration import Registrar

    _check_report_folder(args.output, report_files([]), args.overwrite)  # before the data is read
    cases = load_data_folder(args.data_dir)
    if args.cases:
        wanted = {name.strip() for name in args.cases.split(",") if name.strip()}
        unknown = sorted(wanted - {case.name for case in cases})
        if unknown:
            raise LabelRegError(f"--cases: no case named {', '.join(unknown)} in {args.data_dir}")
        cases = [case for case in cases if case.name in wanted]
    pictures = _pictures("evaluate", not args.no_pictures)
    _check_report_folder(args.output, report_files(cases, pictures), args.overwrite)  # the pictures too
    summary, _ = evaluate_cases(
        Registrar(args.model, args.device, args.mirror, args.gland_model),
        cases,
        args.output,
        args.init,
        pictures,
        passes=args.passes,
    )
    print(json.dumps(summary, indent=2))
    return 0


# ---------------------------------------------------------------- before/after tables (crossval, demo)
METRIC_TITLES = {
    "dice_before": "Dice before",
    "dice_after": "Dice after",
    "tre_mm_before": "TRE before mm",
    "tre_mm_after": "TRE after mm",
}
FOLD_MEDIANS = {  # a fold's summary key for each column
    "dice_before": "gland_dice_before_median",
    "dice_after": "gland_dice_median",
    "tre_mm_before": "tre_mm_before_median",
    "tre_mm_after": "tre_mm_median",
}


def _print_before_after(rows: list[dict], leading: dict[str, int]) -> None:
    """Gland Dice and landmark TRE before and after registration, one line per row, after the ``leading`` columns
    (row key -> width; the first left-aligned)."""
    first, *rest = leading
    titles = [f"{first:<{leading[first]}}", *(f"{n:>{leading[n]}}" for n in rest)]
    print("".join(titles + [f"{title:>{len(title) + 2}}" for title in METRIC_TITLES.values()]))
    digits = {key: 3 if key.startswith("dice") else 2 for key in METRIC_TITLES}
    for row in rows:
        cells = [f"{row[first]!s:<{leading[first]}}", *(f"{row[n]!s:>{leading[n]}}" for n in rest)]
        print("".join(cells + [f"{row[k]:>{len(t) + 2}.{digits[k]}f}" for k, t in METRIC_TITLES.items()]))


def _medians(summary: dict) -> str:
    return (
        f"median gland Dice {summary['gland_dice_before_median']:.3f} -> {summary['gland_dice_median']:.3f}; "
        f"median landmark TRE {summary['tre_mm_before_median']:.2f} -> {summary['tre_mm_median']:.2f} mm"
    )


# ---------------------------------------------------------------- crossval
def _add_crossval_parser(commands):
    from .config import add_arguments

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
    add_arguments(parser)
    parser.set_defaults(func=run_crossval)


def run_crossval(args) -> int:
    from .config import TrainConfig, config_from
    from .crossval import CrossValidation

    flags = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    stages = [config_from(ini, flags) for ini in args.configs]
    crossval = CrossValidation(stages, args.folds, args.output, args.resume, args.overwrite, glands=args.glands)
    summary = crossval.run(stages[0].device)
    _print_before_after(
        [
            {"fold": f["fold"], "pairs": f["n_pairs"], **{key: f[median] for key, median in FOLD_MEDIANS.items()}}
            for f in summary["per_fold"]
        ],
        {"fold": 6, "pairs": 6},
    )
    print(
        f"pooled over {summary['n_pairs']} held-out pairs: {_medians(summary)}; folding max {summary['folding_max']:.4g}; "
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
    print(f"tables in {Path(args.output).resolve()}")
    return 0


# ---------------------------------------------------------------- train-glands
def _add_train_glands_parser(commands):
    from .config import GlandSettings

    parser = commands.add_parser(
        "train-glands",
        help="train the gland segmentation model (glands alignment, quality score) on a data folder",
        description="Train the gland segmentation network on label 0 (the gland) of every MR and US of a data "
        "folder, plus phantom pairs; write it as a model file.",
    )
    parser.add_argument("data_dir", help="folder with moving_images/, fixed_images/, moving_labels/, fixed_labels/")
    parser.add_argument("--output", required=True, help="the model file to write (.pt)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--quality-dice-threshold",
        type=_fraction,
        help="record in the model the quality Dice (0 to 1) below which a registration is flagged (from labelreg "
        "crossval --glands: its summary.json quality.dice_threshold)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the model file if it exists")
    for f in fields(GlandSettings):
        unit = f" {f.metadata['unit']}" if f.metadata["unit"] else ""
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            default=None,
            metavar="V",
            help=f"{f.metadata['help']} ({f.metadata['minimum']:g} to {f.metadata['maximum']:g}{unit}; "
            f"default {f.default}{unit})",
        )
    parser.set_defaults(func=run_train_glands)


def _fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1 (a Dice)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number from 0 to 1")
    return value


def run_train_glands(args) -> int:
    from .config import GlandSettings, parse_value
    from .data import load_data_folder
    from .gland_training import GlandTrainer
    from .outputs import check_outputs

    check_outputs({"--output": args.output}, overwrite=args.overwrite, suffixes={"--output": (".pt",)})
    settings = GlandSettings()  # the defaults, then the flags given: parsed and checked by the settings' schema
    for f in fields(GlandSettings):
        if getattr(args, f.name) is not None:
            setattr(settings, f.name, parse_value(getattr(args, f.name), f))
    settings.validate("the command line")
    trainer = GlandTrainer(
        load_data_folder(args.data_dir),
        args.output,
        settings,
        args.device,
        args.data_dir,
        log=lambda line, end="\n": print(line, end=end, file=sys.stderr, flush=True),
        quality_dice_threshold=args.quality_dice_threshold,
    )
    print(f"gland model written to {trainer.run()}")
    return 0


# ---------------------------------------------------------------- demo
def _add_demo_parser(commands):
    parser = commands.add_parser("demo", help="register built-in phantom pairs and print a before/after table")
    parser.add_argument("--model", help="model file (default: the bundled model)")
    parser.add_argument(
        "--output", default="labelreg-demo", help="folder for the pictures and metrics (default: labelreg-demo)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--overwrite", action="store_true", help="write into a folder that holds files the demo did not write"
    )
    parser.set_defaults(func=run_demo)


def run_demo(args) -> int:
    from .data import Case
    from .evaluation import evaluate_cases, report_files
    from .phantom import make_phantom_pair
    from .registration import Registrar

    cases = []
    for seed in DEMO_SEEDS:
        pair = make_phantom_pair(seed)
        cases.append(Case(pair.name, pair.moving_image, pair.fixed_image, pair.moving_labels, pair.fixed_labels))
    pictures = _pictures("demo")
    # the demo's own folder: each run replaces its reports, but not another command's
    _check_report_folder(args.output, report_files(cases), args.overwrite, own="the demo")
    registrar = Registrar(args.model, args.device)
    print(f"model: {registrar.model.path} (trained on: {registrar.header.get('training', {}).get('data', '?')})")
    summary, rows = evaluate_cases(registrar, cases, args.output, log=lambda *_: None, pictures=pictures)
    _print_before_after(rows, {"case": 12, "landmark": 9})
    print(f"{_medians(summary)}; registration {summary['runtime_s_median']:.2f} s per pair on {registrar.device}")
    print(f"{'pictures and metrics.csv' if pictures else 'metrics.csv'} in {Path(args.output).resolve()}")
    return 0


# ---------------------------------------------------------------- info
def _add_info_parser(commands):
    parser = commands.add_parser("info", help="show a model file's header and this machine's devices")
    parser.add_argument("--model", help="model file (default: the bundled model)")
    parser.set_defaults(func=run_info)


def run_info(args) -> int:
    import json

    from .device import available_devices
    from .model_file import default_model_path, read_model_header

    path = args.model or default_model_path()
    print(json.dumps({"model": str(path), "devices": available_devices(), "header": read_model_header(path)}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labelreg", description="Weakly-supervised MR to TRUS registration (LocalNet, Hu et al. 2018)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(commands)
    _add_register_parser(commands)
    _add_map_points_parser(commands)
    _add_evaluate_parser(commands)
    _add_crossval_parser(commands)
    _add_train_glands_parser(commands)
    _add_demo_parser(commands)
    _add_info_parser(commands)
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM ends the command as Ctrl-C does: temporary files removed, one line said


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    # the engine's warnings (e.g. a US larger than the model's training volumes) in the style of the errors below
    show = warnings.showwarning
    warnings.showwarning = lambda message, *_rest, **_kw: print(
        f"labelreg {args.command}: warning: {message}", file=sys.stderr
    )
    try:
        return args.func(args)
    except LabelRegError as error:
        print(f"labelreg {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or --exit-with-parent: one line, no traceback
        print(f"labelreg {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        from .outputs import release_claims

        release_claims()  # the outputs this command claimed (their lock files)
        warnings.showwarning = show
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
