"""``labelreg demo``: register built-in phantom pairs and print a before/after table."""

from __future__ import annotations

from pathlib import Path

from .reports import check_report_folder, medians, pictures_wanted, print_before_after

DEMO_SEEDS = (1001, 1002, 1003)  # phantom seeds kept out of every training set


def add_parser(commands):
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
    from ..data.cases import Case
    from ..data.phantom import make_phantom_pair
    from ..evaluation.evaluate import evaluate_cases, report_files
    from ..registration.registrar import Registrar

    cases = []
    for seed in DEMO_SEEDS:
        pair = make_phantom_pair(seed)
        cases.append(Case(pair.name, pair.moving_image, pair.fixed_image, pair.moving_labels, pair.fixed_labels))
    pictures = pictures_wanted("demo")
    # the demo's own folder: each run replaces its reports, but not another command's
    check_report_folder(args.output, report_files(cases), args.overwrite, own="the demo")
    registrar = Registrar(args.model, args.device)
    print(f"model: {registrar.model.path} (trained on: {registrar.header.get('training', {}).get('data', '?')})")
    summary, rows = evaluate_cases(registrar, cases, args.output, log=lambda *_: None, pictures=pictures)
    print_before_after(rows, {"case": 12, "landmark": 9})
    print(f"{medians(summary)}; registration {summary['runtime_s_median']:.2f} s per pair on {registrar.device}")
    print(f"{'pictures and metrics.csv' if pictures else 'metrics.csv'} in {Path(args.output).resolve()}")
    return 0
