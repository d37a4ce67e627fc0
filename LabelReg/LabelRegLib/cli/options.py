"""Options and argument types more than one command shares: the initial alignment, test-time mirroring,
network passes, a fraction."""

from __future__ import annotations

import argparse


def add_alignment_options(parser) -> None:
    from ..core.config import REGISTRATION_ALIGNMENTS

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


def add_mirror_option(parser) -> None:
    parser.add_argument(
        "--mirror",
        type=lambda axes: "" if axes.lower() == "none" else axes,
        metavar="AXES",
        help="test-time augmentation: also register the pair mirrored along these working-grid axes (i, j, k) and "
        "average the fields; default: the axes the model was trained mirrored along (j, left-right, for the bundled "
        "model); none: off",
    )


def passes_type(text: str) -> int:
    """An argparse type: a whole number from 1 to 8 (network passes)."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 8:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number from 1 to 8")
    return int(text)


def fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1 (a Dice)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number from 0 to 1")
    return value
