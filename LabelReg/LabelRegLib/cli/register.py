"""``labelreg register`` (alias ``infer``): one pair from its options, the pairs of a CSV, or the folders of a
label-reg ``.ini`` file; every input and output checked before the first pair (the work of a pair:
:mod:`.register_jobs`)."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import LabelRegError
from .options import add_alignment_options, add_mirror_option
from .register_jobs import register_jobs


def add_parser(commands):
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
        add_alignment_options(parser)
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
        add_mirror_option(parser)
        parser.set_defaults(func=run_register)


def check_register_jobs(jobs: list, model: str | None, overwrite: bool, source: str | None = None) -> None:
    """Every job's outputs checked against every input, every other output and the disk, before any work."""
    from ..core.outputs import check_rows
    from ..core.pairs_csv import COMMAND_LINE_COLUMNS, columns_of
    from ..core.paths import file_suffix

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
    from ..core.paths import strip_suffix

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


def run_register(args) -> int:
    from ..registration.registrar import Registrar

    _refuse_mixed_sources(args)
    if args.config:
        return _register_from_ini(args)
    if args.pairs:
        from ..core.pairs_csv import read_pairs

        jobs = read_pairs(args.pairs)
    elif args.moving and args.fixed:
        from ..core.pairs_csv import COMMAND_LINE_COLUMNS

        jobs = [(1, {key: getattr(args, key, None) for key in COMMAND_LINE_COLUMNS})]
    else:
        raise LabelRegError("give --moving and --fixed (or --pairs CSV, or CONFIG.ini)")
    jobs = _gland_outputs(jobs, args.output_glands)
    check_register_jobs(jobs, args.model, args.overwrite, source=args.pairs)
    if args.report:
        from ..core.outputs import check_outputs

        check_outputs({"--report": args.report}, {"--pairs": args.pairs}, args.overwrite, {"--report": (".csv",)})
    registrar = Registrar(args.model, args.device, args.mirror, args.gland_model)
    return register_jobs(registrar, jobs, args.init, source=args.pairs, report=args.report)


def _refuse_mixed_sources(args) -> None:
    """The pairs come from one place: CONFIG.ini, --pairs, or the single-pair options; given together, one would be
    silently ignored."""
    from ..core.pairs_csv import COMMAND_LINE_COLUMNS

    single = [f"--{key.replace('_', '-')}" for key in COMMAND_LINE_COLUMNS if getattr(args, key, None)]
    if args.config and (args.pairs or single):
        raise LabelRegError(
            f"{args.config}: registers its [Inference] folders; give it without {(single or ['--pairs'])[0]}"
        )
    if args.pairs and single:
        raise LabelRegError(
            f"--pairs {args.pairs}: names the files of every pair; give {single[0]} as a column of it instead"
        )


def _register_from_ini(args) -> int:
    """The original tutorial's inference: every pair of the [Inference] folders; DDF, warped image and labels into dir_save."""
    from ..core.config import inference_settings_from_ini
    from ..data.cases import DataError, resolve_folders, scan_case_files
    from ..registration.registrar import Registrar

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
    check_register_jobs(jobs, model, args.overwrite, source=args.config)
    registrar = Registrar(
        model, args.device if args.device != "auto" else settings.get("device", "auto"), gland_model=args.gland_model
    )
    return register_jobs(registrar, jobs, args.init or settings.get("initial_alignment"), source=args.config)
