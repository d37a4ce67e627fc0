"""``labelreg evaluate``: register every labelled pair of a data folder and measure it."""

from __future__ import annotations

from ..core.errors import LabelRegError
from .options import add_alignment_options, add_mirror_option, passes_type
from .reports import check_report_folder, pictures_wanted


def add_parser(commands):
    parser = commands.add_parser("evaluate", help="register every labelled pair of a data folder and measure it")
    parser.add_argument("data_dir", help="folder with moving_images/, fixed_images/, moving_labels/, fixed_labels/")
    parser.add_argument("--model", help="model file (default: the bundled model)")
    parser.add_argument("--output", required=True, help="folder for metrics.csv, summary.json and one PNG per case")
    add_alignment_options(parser)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cases", help="comma-separated case names to evaluate (default: all)")
    parser.add_argument(
        "--passes", type=passes_type, help="network passes per registration, 1 to 8 (default: the model's)"
    )
    add_mirror_option(parser)
    parser.add_argument("--no-pictures", action="store_true")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the reports of an earlier evaluation in --output"
    )
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args) -> int:
    import json

    from ..data.cases import load_data_folder
    from ..evaluation.evaluate import evaluate_cases, report_files
    from ..registration.registrar import Registrar

    check_report_folder(args.output, report_files([]), args.overwrite)  # before the data is read
    cases = load_data_folder(args.data_dir)
    if args.cases:
        wanted = {name.strip() for name in args.cases.split(",") if name.strip()}
        unknown = sorted(wanted - {case.name for case in cases})
        if unknown:
            raise LabelRegError(f"--cases: no case named {', '.join(unknown)} in {args.data_dir}")
        cases = [case for case in cases if case.name in wanted]
    pictures = pictures_wanted("evaluate", not args.no_pictures)
    check_report_folder(args.output, report_files(cases, pictures), args.overwrite)  # the pictures too
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
