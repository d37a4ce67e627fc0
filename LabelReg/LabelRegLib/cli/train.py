"""``labelreg train``: a registration network from a data folder or a label-reg ``.ini`` file."""

from __future__ import annotations

from dataclasses import fields

from ..core.errors import LabelRegError


def add_parser(commands):
    from ..core.config import add_arguments

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
    """The validated :class:`~LabelRegLib.core.config.TrainConfig` of parsed ``labelreg train`` arguments: CONFIG.ini, then the flags."""
    from ..core.config import TrainConfig, config_from

    return config_from(args.config, {f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def run_train(args) -> int:
    from ..core.outputs import run_folder
    from ..training.trainer import Trainer

    config = train_config(args)
    if not (config.data_dir or config.dir_moving_image):
        raise LabelRegError("no training data: give CONFIG.ini with a [Data] section, or --data_dir")
    run_folder(config, args.resume, args.overwrite)  # outputs refused before the data is read
    if args.exit_with_parent is not None:
        from ..core.processes import watch_parent

        watch_parent(args.exit_with_parent)
    model = Trainer(config, progress_json=args.progress_json, overwrite=args.overwrite).run(resume=args.resume)
    if not args.progress_json:
        print(f"model written to {model}")
    return 0
