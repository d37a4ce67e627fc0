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
    from .config import TrainConfig

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
    helps = {
        "data_dir": "folder with moving_images/, fixed_images/, moving_labels/, fixed_labels/",
        "dir_moving_image": "moving (MR) images folder (instead of data_dir)",
        "dir_fixed_image": "fixed (US) images folder",
        "dir_moving_label": "moving labels folder (3D/4D label files or .seg.nrrd)",
        "dir_fixed_label": "fixed labels folder (same names, same landmarks in the same order)",
        "network_type": "local, global or composite",
        "num_channel_initial": "channels of the first layer (doubles at each level)",
        "ddf_levels": "levels whose DDF outputs are summed, e.g. '[0, 1, 2, 3, 4]'",
        "norm": "batch (the original), instance or none",
        "similarity_type": "dice, jaccard, cross-entropy or mean-squared",
        "similarity_scales": "Gaussian smoothing scales in voxels, e.g. '[0, 1, 2, 4, 8, 16]'",
        "regulariser_type": "bending, gradient-l2 or gradient-l1",
        "regulariser_weight": "weight of the regulariser",
        "total_iterations": "training steps",
        "minibatch_size": "image pairs per step (per process under torchrun)",
        "learning_rate": "Adam learning rate",
        "learning_rate_milestones": "steps after which the learning rate is multiplied by learning_rate_decay, e.g. '[6000]'",
        "learning_rate_decay": "factor applied to the learning rate at each milestone",
        "freq_info_print": "print progress every N steps",
        "freq_model_save": "write the checkpoint every N steps",
        "freq_validation": "validate every N steps",
        "file_model_save": "final model file (default <output_dir>/model.pt)",
        "model_float16": "store the final model's weights as float16 (true/false)",
        "output_dir": "folder for checkpoint, metrics.csv, curves.png, config.ini",
        "validation_fraction": "share of the pairs held out for validation",
        "device": "auto, cpu, cuda or mps",
        "initial_alignment": "centers or physical",
        "working_spacing": "working voxel size in mm (0 = the fixed image's own grid)",
        "corner_scale": "random affine augmentation strength (0 = off)",
        "translation_mm": "random shift of the moving side, uniform in +-V mm per axis (0 = off)",
        "fixed_translation_mm": "random shift of the fixed side within its field of view, uniform in +-V mm per axis (0 = off)",
        "flip_axes": "working-grid axes mirrored at random, e.g. 'j' (the pair's left-right axis)",
        "intensity_gamma": "random gamma augmentation: standard deviation of log(gamma) (0 = off)",
        "initial_model": "model file to start from (fine-tuning, e.g. the bundled model on new data)",
        "ema_decay": "keep an exponential moving average of the weights with this per-step decay (0 = off)",
        "swa_start": "from this step on, average the network (the moving average if ema_decay is on) every swa_every steps with equal weights, and save that average (0 = off)",
        "swa_every": "steps between two snapshots of the weight average of swa_start",
        "segmentation_weight": "weight of an auxiliary gland segmentation task during training (0 = off)",
        "label_sampling": "one (one landmark per pair and step, the original) or all",
        "phantom_pairs": "synthetic phantom pairs added to the training share",
        "seed": "random seed (split, sampling, augmentation, initial weights)",
        "deterministic": "use deterministic algorithms only (true/false)",
    }
    for field in fields(TrainConfig):
        parser.add_argument(f"--{field.name}", f"--{field.name.replace('_', '-')}", dest=field.name, default=None, metavar="V", help=helps.get(field.name, ""))
    parser.set_defaults(func=run_train)


def train_config(args):
    """The :class:`~LabelRegLib.config.TrainConfig` of parsed ``labelreg train`` arguments: CONFIG.ini, then the flags."""
    from .config import TrainConfig, parse_value, train_config_from_ini

    config = train_config_from_ini(args.config) if args.config else TrainConfig()
    for field in fields(TrainConfig):
        value = getattr(args, field.name)
        if value is not None:
            setattr(config, field.name, parse_value(value, getattr(config, field.name)))
    return config


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
