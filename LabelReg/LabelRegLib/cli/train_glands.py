"""``labelreg train-glands``: the gland segmentation model, its settings checked by their schema."""

from __future__ import annotations

import sys
from dataclasses import fields

from .options import fraction


def add_parser(commands):
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
        type=fraction,
        help="record in the model the quality Dice (0 to 1) below which a registration is flagged (from labelreg "
        "crossval --glands: its summary.json quality.dice_threshold)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the model file if it exists")
    add_gland_settings(parser)
    parser.set_defaults(func=run_train_glands)


def add_gland_settings(parser) -> None:
    """One ``--key`` flag per :class:`~..core.config.GlandSettings` field, with its range, unit and default."""
    from ..core.config import GlandSettings

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


def gland_settings_from(args):
    """The defaults, then the flags given: parsed and checked by the settings' schema."""
    from ..core.config import GlandSettings
    from ..core.settings import parse_value

    settings = GlandSettings()
    for f in fields(GlandSettings):
        if getattr(args, f.name) is not None:
            setattr(settings, f.name, parse_value(getattr(args, f.name), f))
    return settings.validate("the command line")


def run_train_glands(args) -> int:
    from ..core.outputs import check_outputs
    from ..data.cases import load_data_folder
    from ..training.gland_training import GlandTrainer

    check_outputs({"--output": args.output}, overwrite=args.overwrite, suffixes={"--output": (".pt",)})
    settings = gland_settings_from(args)
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
