"""The pairs CSV of ``labelreg register --pairs`` and of the batch script: one reader, one set of column names.

Columns: ``moving``, ``fixed`` (required), then the outputs and extra inputs each
tool knows (``output_transform``, ``warped_image``, ``moving_label``,
``warped_label``; the batch script: ``segmentation``, ``output_segmentation``,
``output_labelmap``). Row numbers are the file's line numbers.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .errors import InputError


def read_pairs(path: str | Path) -> list[tuple[int, dict]]:
    """``(row number, job)`` of a pairs CSV: a byte-order mark and spaces around names and values are ignored,
    blank lines skipped; a missing column or a row without moving and fixed is refused naming the row."""
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
    jobs = [(n, row) for n, row in rows if any(row.values())]
    for n, row in jobs:
        if not (row.get("moving") and row.get("fixed")):
            raise InputError(path, f"row {n}: moving and fixed are both needed")
    if not jobs:
        raise InputError(path, "no pairs in the file")
    return jobs
