"""The pairs CSV of ``labelreg register --pairs`` and of the batch script: one reader, one set of column names.

Every column is named like the option it stands for (``output_transform`` is
``--output-transform``); ``moving`` and ``fixed`` are required. The command line
reads ``moving_label`` and writes ``warped_image`` and ``warped_label``; the
batch script, which runs in Slicer, reads ``segmentation`` (``.seg.nrrd``) and
writes ``output_segmentation`` and ``output_labelmap``; ``moving_gland`` and
``fixed_gland`` receive the predicted glands (``--output-glands``); both read
``moving_points`` (MR targets, ``.csv`` or ``.mrk.json``) and write them mapped
onto the US as ``points_on_fixed`` (:mod:`.point_mapping`). A column the tool does
not handle is refused, not ignored. Row numbers are the file's line numbers.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .errors import InputError
from .io import OUTPUT_VOLUME_SUFFIXES
from .outputs import TRANSFORM_OUTPUT_SUFFIXES
from .point_files import POINT_SUFFIXES

# column -> the option it stands for
INPUT_COLUMNS = {
    "moving": "--moving",
    "fixed": "--fixed",
    "moving_label": "--moving-label",
    "segmentation": "--segmentation",
    "moving_points": "--moving-points",
}
# column -> (the option it stands for, the file types it may be written as)
OUTPUT_COLUMNS = {
    "output_transform": ("--output-transform", TRANSFORM_OUTPUT_SUFFIXES),
    "warped_image": ("--warped-image", OUTPUT_VOLUME_SUFFIXES),
    "warped_label": ("--warped-label", OUTPUT_VOLUME_SUFFIXES),
    "output_segmentation": ("--output-segmentation", (".seg.nrrd",)),
    "output_labelmap": ("--output-labelmap", OUTPUT_VOLUME_SUFFIXES),
    "moving_gland": ("--output-glands (moving)", OUTPUT_VOLUME_SUFFIXES),
    "fixed_gland": ("--output-glands (fixed)", OUTPUT_VOLUME_SUFFIXES),
    "points_on_fixed": ("--points-on-fixed", POINT_SUFFIXES),
}
COMMAND_LINE_COLUMNS = (
    "moving",
    "fixed",
    "moving_label",
    "output_transform",
    "warped_image",
    "warped_label",
    "moving_gland",
    "fixed_gland",
    "moving_points",
    "points_on_fixed",
)
BATCH_COLUMNS = (
    *("moving", "fixed", "segmentation", "output_transform", "output_segmentation", "output_labelmap"),
    *("moving_points", "points_on_fixed"),
)


def columns_of(names) -> tuple[dict, dict]:
    """``(inputs, outputs)``: the entries of :data:`INPUT_COLUMNS` and :data:`OUTPUT_COLUMNS` named in ``names``."""
    return (
        {name: option for name, option in INPUT_COLUMNS.items() if name in names},
        {name: kinds for name, kinds in OUTPUT_COLUMNS.items() if name in names},
    )


def read_pairs(path: str | Path, known: tuple = COMMAND_LINE_COLUMNS) -> list[tuple[int, dict]]:
    """``(row number, job)`` of a pairs CSV: a byte-order mark and spaces around names and values are ignored,
    blank lines skipped; a missing or unknown column (not in ``known``, the columns the reading tool handles)
    or a row without moving and fixed is refused naming the row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, skipinitialspace=True)
            columns = [(c or "").strip() for c in reader.fieldnames or []]
            rows = [(reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items() if k}) for row in reader]
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(path, f"is not a CSV text file ({str(error).splitlines()[0]})") from None
    if not {"moving", "fixed"} <= set(columns):
        raise InputError(
            path,
            f"expected a CSV header with at least the columns moving and fixed (found: {', '.join(columns) or 'none'})",
        )
    unknown = [column for column in columns if column not in known]
    if unknown:
        raise InputError(path, f"unknown column(s) {', '.join(unknown)}; this tool reads: {', '.join(known)}")
    jobs = [(n, row) for n, row in rows if any(row.values())]
    for n, row in jobs:
        if not (row.get("moving") and row.get("fixed")):
            raise InputError(path, f"row {n}: moving and fixed are both needed")
    if not jobs:
        raise InputError(path, "no pairs in the file")
    return jobs
