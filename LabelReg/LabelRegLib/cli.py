"""The ``labelreg`` command: train, register (infer), evaluate, demo, info.

Run ``labelreg <command> --help`` for every option.
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from dataclasses import fields
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
    parser.add_argument("--resume", action="store_true", help="continue from <output_dir>/checkpoint.pt (same settings)")
    parser.add_argument("--progress-json", action="store_true", help="print one JSON object per line (step, losses, metrics, ETA)")
    parser.add_argument("--exit-with-parent", type=int, metavar="PID", help="stop (the last checkpoint kept) once process PID has ended "
                        "(the application that started this training)")
    add_arguments(parser)
    parser.set_defaults(func=run_train)


def train_config(args):
    """The validated :class:`~LabelRegLib.config.TrainConfig` of parsed ``labelreg train`` arguments: CONFIG.ini, then the flags."""
    from .config import TrainConfig, config_from

    return config_from(args.config, {f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def run_train(args) -> int:
    from .training import Trainer

    config = train_config(args)
    if not (config.data_dir or config.dir_moving_image):
        raise LabelRegError("no training data: give CONFIG.ini with a [Data] section, or --data_dir")
    if args.exit_with_parent is not None:
        from .training_process import watch_parent

        watch_parent(args.exit_with_parent)
    model = Trainer(config, progress_json=args.progress_json).run(resume=args.resume)
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
        parser.add_argument("--init", choices=["centers", "physical"], help="initial alignment (default: the model's)")
        parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
        parser.add_argument("--output-transform", help="displacement field output (.h5 or .nii.gz)")
        parser.add_argument("--warped-image", help="moving image resampled on the fixed grid")
        parser.add_argument("--moving-label", help="moving label / landmark file to warp (3D, 4D or .seg.nrrd)")
        parser.add_argument("--warped-label", help="output of the warped labels on the fixed grid")
        parser.add_argument("--pairs", help="CSV with columns moving, fixed, output_transform[, warped_image, moving_label, warped_label]")
        parser.set_defaults(func=run_register)


def _register_one(registrar, moving_path, fixed_path, alignment, output_transform=None, warped_image=None, moving_label=None, warped_label=None):
    from .io import read_labels, read_volume, write_volume
    from .transform_io import write_displacement

    if not any([output_transform, warped_image, warped_label]):
        raise LabelRegError(f"{moving_path}: nothing to write; give --output-transform, --warped-image or --warped-label")
    if bool(moving_label) != bool(warped_label):
        raise LabelRegError("--moving-label and --warped-label go together")
    moving, fixed = read_volume(moving_path), read_volume(fixed_path)
    labels = read_labels(moving_label) if moving_label else []
    result = registrar.register(moving, fixed, alignment)
    if output_transform:
        write_displacement(result.displacement, output_transform)
    if warped_image:
        write_volume(result.warp(moving), warped_image)
    if warped_label:
        warped = [result.warp(label) for label in labels]
        write_volume(warped if len(warped) > 1 else warped[0], warped_label)
    print(f"{Path(moving_path).name} -> {Path(fixed_path).name}: {result.runtime_s:.2f} s on {result.device}")
    return result


def run_register(args) -> int:
    from .registration import Registrar

    if args.config:
        return _register_from_ini(args)
    registrar = Registrar(args.model, args.device)
    if args.pairs:
        with open(args.pairs, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or not {"moving", "fixed"} <= set(rows[0]):
            raise LabelRegError(f"{args.pairs}: expected a CSV header with at least the columns moving, fixed, output_transform")
        for row in rows:
            _register_one(registrar, row["moving"], row["fixed"], args.init, row.get("output_transform"), row.get("warped_image"), row.get("moving_label"), row.get("warped_label"))
        return 0
    if not (args.moving and args.fixed):
        raise LabelRegError("give --moving and --fixed (or --pairs CSV, or CONFIG.ini)")
    _register_one(registrar, args.moving, args.fixed, args.init, args.output_transform, args.warped_image, args.moving_label, args.warped_label)
    return 0


def _register_from_ini(args) -> int:
    """The original tutorial's inference: every pair of the [Inference] folders; DDF, warped image and labels into dir_save."""
    from .config import inference_settings_from_ini
    from .data import resolve_folders, scan_case_files, DataError
    from .registration import Registrar

    settings = inference_settings_from_ini(args.config)
    folders = resolve_folders(None, settings.get("dir_moving_image"), settings.get("dir_fixed_image"), settings.get("dir_moving_label"), settings.get("dir_fixed_label"))
    has_labels = "dir_moving_label" in settings
    cases, problems = scan_case_files(folders, need_labels=has_labels)
    if problems:
        raise DataError(args.config, problems)
    registrar = Registrar(args.model or settings.get("file_model_saved"), args.device if args.device != "auto" else settings.get("device", "auto"))
    out = Path(settings.get("dir_save", "."))
    for case in cases:
        _register_one(
            registrar, case.moving_image, case.fixed_image, args.init or settings.get("initial_alignment"),
            out / f"{case.name}_ddf.nii.gz", out / f"{case.name}_warped_image.nii.gz",
            case.moving_label if has_labels else None, out / f"{case.name}_warped_label.nii.gz" if has_labels else None,
        )
    return 0


# ---------------------------------------------------------------- evaluate
def _add_evaluate_parser(commands):
    parser = commands.add_parser("evaluate", help="register every labelled pair of a data folder and measure it")
    parser.add_argument("data_dir", help="folder with moving_images/, fixed_images/, moving_labels/, fixed_labels/")
    parser.add_argument("--model", help="model file (default: the bundled model)")
    parser.add_argument("--output", required=True, help="folder for metrics.csv, summary.json and one PNG per case")
    parser.add_argument("--init", choices=["centers", "physical"], help="initial alignment (default: the model's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cases", help="comma-separated case names to evaluate (default: all)")
    parser.add_argument("--passes", type=int, help="network passes per registration (default: the model's)")
    parser.add_argument("--no-pictures", action="store_true")
    parser.set_defaults(func=run_evaluate)


def _pictures(command: str, wanted: bool = True) -> bool:
    """Whether to draw the per-case pictures: wanted and matplotlib installed (an optional dependency, ``labelreg[plots]``)."""
    import importlib.util

    if wanted and importlib.util.find_spec("matplotlib") is None:
        print(f"labelreg {command}: warning: matplotlib is not installed (pip install matplotlib): no pictures, metrics only", file=sys.stderr)
        return False
    return wanted


def run_evaluate(args) -> int:
    import json

    from .data import load_data_folder
    from .evaluation import evaluate_cases
    from .registration import Registrar

    cases = load_data_folder(args.data_dir)
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [case for case in cases if case.name in wanted]
    summary, _ = evaluate_cases(Registrar(args.model, args.device), cases, args.output, args.init, _pictures("evaluate", not args.no_pictures),
                                passes=args.passes)
    print(json.dumps(summary, indent=2))
    return 0


# ---------------------------------------------------------------- demo
def _add_demo_parser(commands):
    parser = commands.add_parser("demo", help="register built-in phantom pairs and print a before/after table")
    parser.add_argument("--model", help="model file (default: the bundled model)")
    parser.add_argument("--output", default="labelreg-demo", help="folder for the pictures and metrics (default: labelreg-demo)")
    parser.add_argument("--device", default="auto")
    parser.set_defaults(func=run_demo)


def run_demo(args) -> int:
    from .data import Case
    from .evaluation import evaluate_cases
    from .phantom import make_phantom_pair
    from .registration import Registrar

    registrar = Registrar(args.model, args.device)
    print(f"model: {registrar.model.path} (trained on: {registrar.header.get('training', {}).get('data', '?')})")
    cases = []
    for seed in DEMO_SEEDS:
        pair = make_phantom_pair(seed)
        cases.append(Case(pair.name, pair.moving_image, pair.fixed_image, pair.moving_labels, pair.fixed_labels))
    pictures = _pictures("demo")
    summary, rows = evaluate_cases(registrar, cases, args.output, log=lambda *_: None, pictures=pictures)
    print(f"{'case':<12}{'landmark':>9}{'Dice before':>13}{'Dice after':>12}{'TRE before mm':>15}{'TRE after mm':>14}")
    for row in rows:
        print(f"{row['case']:<12}{row['landmark']:>9}{row['dice_before']:>13.3f}{row['dice_after']:>12.3f}"
              f"{row['tre_mm_before']:>15.2f}{row['tre_mm_after']:>14.2f}")
    print(f"median gland Dice {summary['gland_dice_before_median']:.3f} -> {summary['gland_dice_median']:.3f}; "
          f"median landmark TRE {summary['tre_mm_before_median']:.2f} -> {summary['tre_mm_median']:.2f} mm; "
          f"registration {summary['runtime_s_median']:.2f} s per pair on {registrar.device}")
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
    parser = argparse.ArgumentParser(prog="labelreg", description="Weakly-supervised MR to TRUS registration (LocalNet, Hu et al. 2018).")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(commands)
    _add_register_parser(commands)
    _add_evaluate_parser(commands)
    _add_demo_parser(commands)
    _add_info_parser(commands)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # the engine's warnings (e.g. a US larger than the model's training volumes) in the style of the errors below
    show = warnings.showwarning
    warnings.showwarning = lambda message, *_rest, **_kw: print(f"labelreg {args.command}: warning: {message}", file=sys.stderr)
    try:
        return args.func(args)
    except LabelRegError as error:
        print(f"labelreg {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or --exit-with-parent: one line, no traceback
        print(f"labelreg {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
