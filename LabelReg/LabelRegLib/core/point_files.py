"""Point files: biopsy targets and instrument positions as CSV or Slicer markups JSON (``.mrk.json``).

- CSV: a header ``label,r,a,s`` (RAS mm), ``label,l,p,s`` (LPS mm, as ITK and
  DICOM), or ``label,x,y,z`` after a comment line that names the system
  (``# coordinate system: LPS``); the label column may be left out (points are
  then named by their row). Other columns are kept as they are.
- ``.mrk.json``: Slicer's markups file, read and written with the standard
  library; every markup's control points, each in its markup's
  ``coordinateSystem`` (LPS or RAS), names and every other field kept.

A written file keeps the input's form and coordinate system: only the positions
change (and a CSV gains ``residual_mm`` when the mapping reports one). Inside
LabelReg every position is RAS mm (docs/design.md, "Conventions").
"""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .paths import file_suffix
from .writes import write_text

POINT_SUFFIXES = (".csv", ".mrk.json")
AXES = {"RAS": ("r", "a", "s"), "LPS": ("l", "p", "s")}
LPS_FLIP = np.array([-1.0, -1.0, 1.0])  # RAS <-> LPS for a position


@dataclass
class PointSet:
    """Named points, RAS mm ``[N, 3]``, and what their file held (to write them back in the same form)."""

    labels: list[str]
    ras: np.ndarray
    form: str = "csv"  # "csv" or "mrk.json"
    coordinate_system: str = "RAS"  # of the CSV (a markups file keeps each markup's own)
    table: dict = field(default_factory=dict)  # CSV: header, rows, comments, position columns; JSON: the document

    def with_positions(self, ras: np.ndarray) -> PointSet:
        return PointSet(self.labels, np.asarray(ras, dtype=float), self.form, self.coordinate_system, self.table)


def read_points(path: str | Path) -> PointSet:
    """Read a point file (:data:`POINT_SUFFIXES`); refused in one line naming the file (and the row)."""
    path = Path(path)
    if file_suffix(path) not in POINT_SUFFIXES:
        raise InputError(path, f"unsupported point file type; use {' or '.join(POINT_SUFFIXES)}")
    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "is not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as error:
        raise InputError(path, f"cannot be read as text ({str(error).splitlines()[0]})") from None
    points = _read_markups(path, text) if file_suffix(path) == ".mrk.json" else _read_csv(path, text)
    if not points.labels:
        raise InputError(path, "holds no points")
    return points


def _read_csv(path: Path, text: str) -> PointSet:
    lines = text.splitlines()
    comments = [line for line in lines if line.lstrip().startswith("#")]
    rows = list(csv.reader(line for line in lines if line.strip() and not line.lstrip().startswith("#")))
    if not rows:
        raise InputError(path, "is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    if len(set(header)) != len(header):
        raise InputError(path, f"the header names a column twice ({','.join(header)})")
    named = re.search(r"coordinate.?system\W*(ras|lps)\b", " ".join(comments), re.IGNORECASE)
    systems = [s for s, axes in AXES.items() if set(axes) <= set(header)]
    if not systems and {"x", "y", "z"} <= set(header) and named:
        systems, axes = [named.group(1).upper()], ("x", "y", "z")
    elif len(systems) == 1:
        axes = AXES[systems[0]]
    else:
        raise InputError(
            path,
            "needs a header label,r,a,s (RAS mm), label,l,p,s (LPS mm), or label,x,y,z after a line "
            "'# coordinate system: RAS' (or LPS)",
        )
    columns = [header.index(axis) for axis in axes]
    labels, positions = [], []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            raise InputError(f"{path}, row {number}", f"has {len(row)} values for {len(header)} columns")
        try:
            position = [float(row[c]) for c in columns]
        except (ValueError, IndexError):
            raise InputError(f"{path}, row {number}", f"needs three numbers in the columns {','.join(axes)}") from None
        if not np.all(np.isfinite(position)):
            raise InputError(f"{path}, row {number}", "has a position that is not a finite number")
        label = row[header.index("label")].strip() if "label" in header else ""
        labels.append(label or f"point {len(labels) + 1}")
        positions.append(position)
    ras = np.array(positions, dtype=float).reshape(-1, 3) * (LPS_FLIP if systems[0] == "LPS" else 1.0)
    table = {"header": rows[0], "rows": [r for r in rows[1:] if any(c.strip() for c in r)], "comments": comments}
    table["columns"] = columns
    return PointSet(labels, ras, "csv", systems[0], table)


def _read_markups(path: Path, text: str) -> PointSet:
    try:
        document = json.loads(text)
        markups = document["markups"]
        labels, positions = [], []
        for markup in markups:
            flip = LPS_FLIP if markup.get("coordinateSystem", "LPS").upper() == "LPS" else 1.0
            for point in markup.get("controlPoints", []):
                position = np.array(point["position"], dtype=float)
                if position.shape != (3,) or not np.all(np.isfinite(position)):
                    raise ValueError(f"control point '{point.get('label', '')}' has no finite 3D position")
                labels.append(str(point.get("label") or f"point {len(labels) + 1}"))
                positions.append(position * flip)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise InputError(path, f"is not a Slicer markups file ({str(error).splitlines()[0]})") from None
    return PointSet(labels, np.array(positions, dtype=float).reshape(-1, 3), "mrk.json", "", {"document": document})


def write_points(points: PointSet, path: str | Path, residual_mm: np.ndarray | None = None) -> None:
    """Write ``points`` in the form they were read (atomically); a CSV gains ``residual_mm`` when given."""
    path = Path(path)
    if file_suffix(path) != "." + points.form:
        raise InputError(path, f"write the points as .{points.form}, the form they were read in")
    write_text(path, _markups_text(points) if points.form == "mrk.json" else _csv_text(points, residual_mm))


def _csv_text(points: PointSet, residual_mm) -> str:
    flip = LPS_FLIP if points.coordinate_system == "LPS" else 1.0
    out = io.StringIO()
    for comment in points.table["comments"]:
        out.write(comment + "\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(points.table["header"] + (["residual_mm"] if residual_mm is not None else []))
    for n, row in enumerate(points.table["rows"]):
        row = row + [""] * (len(points.table["header"]) - len(row))
        for column, value in zip(points.table["columns"], points.ras[n] * flip):
            row[column] = f"{value:.4f}"
        writer.writerow(row + ([f"{residual_mm[n]:.4f}"] if residual_mm is not None else []))
    return out.getvalue()


def _markups_text(points: PointSet) -> str:
    document = copy.deepcopy(points.table["document"])
    n = 0
    for markup in document["markups"]:
        flip = LPS_FLIP if markup.get("coordinateSystem", "LPS").upper() == "LPS" else 1.0
        for point in markup.get("controlPoints", []):
            point["position"] = [round(float(v), 4) for v in points.ras[n] * flip]
            n += 1
    return json.dumps(document, indent=4) + "\n"
