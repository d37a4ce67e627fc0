"""The ``labelreg`` command: train, register (infer), map-points, evaluate, crossval, train-glands, demo, info.

One module per command, each with ``add_parser(commands)`` and the function that runs it; :func:`build_parser`
puts them together. Run ``labelreg <command> --help`` for every option.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings

from ..core.errors import LabelRegError
from . import crossval, demo, evaluate, info, map_points, register, train, train_glands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labelreg", description="Weakly-supervised MR to TRUS registration (LocalNet, Hu et al. 2018)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train.add_parser(commands)
    register.add_parser(commands)
    map_points.add_parser(commands)
    evaluate.add_parser(commands)
    crossval.add_parser(commands)
    train_glands.add_parser(commands)
    demo.add_parser(commands)
    info.add_parser(commands)
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
        from ..core.outputs import release_claims

        release_claims()  # the outputs this command claimed (their lock files)
        warnings.showwarning = show
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
