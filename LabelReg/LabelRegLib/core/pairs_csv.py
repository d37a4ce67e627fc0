"""The pairs CSV of ``labelreg register --pairs`` and of the batch script: one reader, one set of column names.

Every column is named like the option it stands for (``output_transform`` is
``--output-transform``); ``moving`` and ``fixed`` are required. The command line
reads ``moving_label`` and writes ``warped_image`` and ``warped_label``; the
batch script, which runs in Slicer, reads ``segmentation`` (``.seg.nrrd``) and
writes ``output_segmentation`` and ``output_labelmap``; ``moving_gland`` and
``fixed_gland`` receive the predicted glands (``--output-glands``); both read
``moving_points`` (MR targets, ``.csv`` or ``.mrk.json``) and write them mapped
onto the US as ``points_on_fixed`` (:mod:`.point_mapping`). A column the tool does
not handle is refused, not ignored, as are a column named twice and a row with more
values than the header has columns. Row numbers are the file's line numbers.
Relative paths are relative to the CSV's own folder (as in every manifest: the
table and its files move together), not to the folder the tool runs in.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .errors import InputError
from .outputs import TRANSFORM_OUTPUT_SUFFIXES
from .paths import OUTPUT_VOLUME_SUFFIXES
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
    """``(row number, job)`` of a pairs CSV, every path absolute (a relative one taken from the CSV's folder).

    A byte-order mark and spaces around names and values are ignored, blank lines skipped. Refused, naming the
    file and the row: a missing, repeated or unknown column (not in ``known``, the columns the reading tool
    handles), a row with more values than columns, a row without moving and fixed."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, skipinitialspace=True)
            header = [column.strip() for column in next(reader, [])]
            rows = [(reader.line_num, [value.strip() for value in row]) for row in reader]
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not a CSV file") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(path, f"is not a CSV text file ({str(error).splitlines()[0]})") from None
    _check_header(path, header, known)
    folder, jobs = Path(os.path.abspath(path.parent)), []
    for n, values in rows:
        if not any(values):
            continue
        if len(values) > len(header):
            raise InputError(path, f"row {n}: {len(values)} values, but the header names {len(header)} columns")
        job = {column: _absolute(value, folder) for column, value in zip(header, values) if column}
        if not (job.get("moving") and job.get("fixed")):
            raise InputError(path, f"row {n}: moving and fixed are both needed")
        jobs.append((n, job))
    if not jobs:
        raise InputError(path, "no pairs in the file")
    return jobs


def _check_header(path: Path, header: list, known: tuple) -> None:
    if not {"moving", "fixed"} <= set(header):
        raise InputError(
            path,
            f"expected a CSV header with at least the columns moving and fixed (found: {', '.join(header) or 'none'})",
        )
    repeated = sorted({column for column in header if column and header.count(column) > 1})
    if repeated:
        raise InputError(path, f"the header names column(s) {', '.join(repeated)} twice; name each once")
    unknown = [column for column in header if column and column not in known]
    if unknown:
        raise InputError(path, f"unknown column(s) {', '.join(unknown)}; this tool reads: {', '.join(known)}")


def _absolute(value: str, folder: Path) -> str:
    """A path of the CSV as an absolute path: ``~`` expanded, a relative one taken from the CSV's ``folder``."""
    if not value:
        return ""
    return str(Path(os.path.join(folder, os.path.expanduser(value))))
