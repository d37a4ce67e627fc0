"""What ``evaluate``, ``demo`` and ``crossval`` share: their report folder's check, the pictures' optional
dependency, and the before/after table printed on the terminal."""

from __future__ import annotations

import sys

from ..core.errors import LabelRegError


def pictures_wanted(command: str, wanted: bool = True) -> bool:
    """Whether to draw the per-case pictures: wanted and matplotlib installed (an optional dependency, ``labelreg[plots]``)."""
    import importlib.util

    if wanted and importlib.util.find_spec("matplotlib") is None:
        print(
            f"labelreg {command}: warning: matplotlib is not installed (pip install matplotlib): no pictures, metrics only",
            file=sys.stderr,
        )
        return False
    return wanted


def check_report_folder(folder: str, names: list[str], overwrite: bool, own: str | None = None) -> None:
    """``evaluate``'s and ``demo``'s ``--output``: a folder LabelReg can write, whose files ``names`` are replaced only
    with ``overwrite``; with ``own`` (the demo), the files are that command's to replace, but a folder holding anything
    else (another command's outputs) is refused without ``overwrite``. Checked before any work."""
    from ..core.outputs import check_output_folder, check_outputs

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


def print_before_after(rows: list[dict], leading: dict[str, int]) -> None:
    """Gland Dice and landmark TRE before and after registration, one line per row, after the ``leading`` columns
    (row key -> width; the first left-aligned)."""
    first, *rest = leading
    titles = [f"{first:<{leading[first]}}", *(f"{n:>{leading[n]}}" for n in rest)]
    print("".join(titles + [f"{title:>{len(title) + 2}}" for title in METRIC_TITLES.values()]))
    digits = {key: 3 if key.startswith("dice") else 2 for key in METRIC_TITLES}
    for row in rows:
        cells = [f"{row[first]!s:<{leading[first]}}", *(f"{row[n]!s:>{leading[n]}}" for n in rest)]
        print("".join(cells + [f"{row[k]:>{len(t) + 2}.{digits[k]}f}" for k, t in METRIC_TITLES.items()]))


def medians(summary: dict) -> str:
    return (
        f"median gland Dice {summary['gland_dice_before_median']:.3f} -> {summary['gland_dice_median']:.3f}; "
        f"median landmark TRE {summary['tre_mm_before_median']:.2f} -> {summary['tre_mm_median']:.2f} mm"
    )
