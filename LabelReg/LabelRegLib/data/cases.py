"""One training / evaluation case: a moving and a fixed image with matching landmark labels.

``load_case`` reads the four files and checks what must hold between them:
the same number of landmarks in the moving and the fixed label file (same
order), and each label on its image's grid. Every problem raises an
:class:`InputError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.io import read_labels, read_volume
from ..core.volume import Volume


@dataclass
class Case:
    """Images and (optionally) landmark labels of one pair; labels are gland first."""

    name: str
    moving_image: Volume
    fixed_image: Volume
    moving_labels: list[Volume] = field(default_factory=list)
    fixed_labels: list[Volume] = field(default_factory=list)

    @property
    def num_landmarks(self) -> int:
        return len(self.moving_labels)


def check_label_grid(image: Volume, labels: list[Volume], label_source: str) -> None:
    """Labels must share their image's grid (shape and geometry)."""
    for label in labels:
        if label.shape != image.shape:
            raise InputError(
                label_source, f"label size {label.shape[::-1]} (i, j, k) differs from its image's {image.shape[::-1]}"
            )
        if not np.allclose(label.ijk_to_ras, image.ijk_to_ras, atol=1e-3):
            raise InputError(label_source, "label geometry (origin, spacing or direction) differs from its image's")


def check_landmark_counts(moving_labels: list, fixed_labels: list, moving_source: str, fixed_source: str) -> None:
    if len(moving_labels) != len(fixed_labels):
        raise InputError(
            fixed_source,
            f"has {len(fixed_labels)} landmark(s) but the moving label file {moving_source} has {len(moving_labels)}; "
            "moving and fixed labels must list the same landmarks in the same order",
        )


def match_segments_by_name(moving_labels: list[Volume], fixed_labels: list[Volume], fixed_source: str) -> list[Volume]:
    """Reorder the fixed segments to the moving segments' order, matching by segment name."""
    fixed_by_name = {label.name: label for label in fixed_labels}
    missing = [label.name for label in moving_labels if label.name not in fixed_by_name]
    extra = sorted(set(fixed_by_name) - {label.name for label in moving_labels})
    if missing or extra:
        raise InputError(
            fixed_source, f"segment names do not match the moving segmentation: missing {missing}, extra {extra}"
        )
    return [fixed_by_name[label.name] for label in moving_labels]


def load_case(moving_image, fixed_image, moving_label=None, fixed_label=None, name: str | None = None) -> Case:
    """Read and check one case from files (labels optional, but both or neither)."""
    if (moving_label is None) != (fixed_label is None):
        missing = "fixed" if fixed_label is None else "moving"
        raise InputError(moving_label or fixed_label, f"has no {missing} label file to pair with")
    case = Case(name or Path(fixed_image).name, read_volume(moving_image), read_volume(fixed_image))
    if moving_label is not None:
        case.moving_labels = read_labels(moving_label)
        case.fixed_labels = read_labels(fixed_label)
        if str(moving_label).lower().endswith(".seg.nrrd") and str(fixed_label).lower().endswith(".seg.nrrd"):
            case.fixed_labels = match_segments_by_name(case.moving_labels, case.fixed_labels, str(fixed_label))
        check_landmark_counts(case.moving_labels, case.fixed_labels, str(moving_label), str(fixed_label))
        check_label_grid(case.moving_image, case.moving_labels, str(moving_label))
        check_label_grid(case.fixed_image, case.fixed_labels, str(fixed_label))
    return case


# ---------------------------------------------------------------- data folders
FOLDERS = ("moving_images", "fixed_images", "moving_labels", "fixed_labels")


@dataclass
class CaseFiles:
    """The four files of one case, matched by name (the file name without its format suffix)."""

    name: str
    moving_image: Path
    fixed_image: Path
    moving_label: Path | None = None
    fixed_label: Path | None = None


class DataError(InputError):
    """Every problem found in a data set, reported at once (``problems``: one line per file)."""

    def __init__(self, source, problems: list[str]):
        self.problems = list(problems)
        listing = "\n  ".join(self.problems)
        super().__init__(source, f"{len(self.problems)} problem(s) in the data:\n  {listing}")


def resolve_folders(
    data_dir=None, moving_images=None, fixed_images=None, moving_labels=None, fixed_labels=None
) -> dict:
    """The four folders: explicit ones win over ``data_dir/<standard name>``; labels are optional."""
    explicit = dict(zip(FOLDERS, (moving_images, fixed_images, moving_labels, fixed_labels)))
    if data_dir and Path(data_dir).expanduser().is_file():  # said once, not as four missing folders
        raise InputError(
            Path(data_dir).expanduser(),
            f"is a file, not a folder; give the folder that holds {', '.join(f'{f}/' for f in FOLDERS)}",
        )
    folders = {}
    for key, value in explicit.items():
        if value:
            folders[key] = Path(value).expanduser()
        elif data_dir:
            folders[key] = Path(data_dir).expanduser() / key
    return folders


def scan_case_files(folders: dict, need_labels: bool = True) -> tuple[list[CaseFiles], list[str]]:
    """Match files across the folders by name; returns the matched cases and every problem found."""
    from ..core.paths import is_volume_file, strip_suffix

    problems, by_folder = [], {}
    required = FOLDERS if need_labels else FOLDERS[:2]
    for key in FOLDERS:
        folder = folders.get(key)
        if folder is None or not folder.is_dir():
            if key in required:
                problems.append(f"{folder or key}: missing folder ({key.replace('_', ' ')})")
            continue
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        unsupported = [p for p in files if not is_volume_file(p)]
        problems += [
            f"{p}: unsupported file type (expected .nii, .nii.gz, .nrrd, .seg.nrrd, .mha)" for p in unsupported
        ]
        by_folder[key] = {strip_suffix(p): p for p in files if is_volume_file(p)}
        if not by_folder[key]:
            problems.append(f"{folder}: no image files")
    present = [key for key in FOLDERS if key in by_folder]
    names = sorted(set().union(*(by_folder[key].keys() for key in present))) if present else []
    cases = []
    for name in names:
        missing = [key for key in present if name not in by_folder[key]]
        if missing:
            found = next(by_folder[key][name] for key in present if name in by_folder[key])
            problems.append(f"{found}: no file named '{name}' in {', '.join(str(folders[k]) for k in missing)}")
            continue
        files = {key: by_folder.get(key, {}).get(name) for key in FOLDERS}
        if "moving_images" in by_folder and "fixed_images" in by_folder:
            cases.append(
                CaseFiles(
                    name, files["moving_images"], files["fixed_images"], files["moving_labels"], files["fixed_labels"]
                )
            )
    return cases, problems


def load_cases(case_files: list[CaseFiles]) -> tuple[list[Case], list[str]]:
    """Read and check every case; returns the good ones and one problem line per bad file."""
    cases, problems = [], []
    for files in case_files:
        try:
            cases.append(
                load_case(files.moving_image, files.fixed_image, files.moving_label, files.fixed_label, files.name)
            )
        except InputError as error:
            problems.append(str(error))
    return cases, problems


def load_data_folder(data_dir=None, need_labels: bool = True, **folders) -> list[Case]:
    """All cases of a data folder (or four folders), checked up front; raises :class:`DataError` listing every problem."""
    resolved = resolve_folders(data_dir, **folders)
    case_files, problems = scan_case_files(resolved, need_labels)
    cases, load_problems = load_cases(case_files)
    problems += load_problems
    if not case_files and not problems:
        problems.append(f"{data_dir or resolved}: no cases found")
    if problems:
        raise DataError(data_dir or ", ".join(str(p) for p in resolved.values()), problems)
    return cases
