"""What a training data folder holds, checked in a process of its own for the LabelRegTraining panel.

Reading every image of a data folder takes seconds to minutes; in Slicer's
main thread that would freeze the application. The panel runs
``python -c BOOTSTRAP FOLDER slicer.data_check --data_dir ...`` instead and polls for
the one JSON line it prints: the pairs found, the landmarks per pair and every
problem, as ``labelreg train`` would report them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from ..data.cases import FOLDERS


def summarise(folders: dict) -> tuple[str, list[str]]:
    """``(text, problems)`` for ``folders`` (:func:`~LabelRegLib.data.cases.resolve_folders`): usable pairs, landmarks
    per pair, and every problem of the checks of ``labelreg train``."""
    from ..data.cases import load_cases, scan_case_files

    case_files, problems = scan_case_files(folders)
    cases, load_problems = load_cases(case_files)
    problems = problems + load_problems
    if not case_files and not problems:
        problems.append("no image pairs found")
    landmarks = Counter(case.num_landmarks for case in cases)
    text = "{pairs} usable pair(s); landmarks per pair: {landmarks}".format(
        pairs=len(cases), landmarks=", ".join(f"{n} ({count} pairs)" for n, count in sorted(landmarks.items())) or "-"
    )
    if problems:
        text += f"\n{len(problems)} problem(s):\n" + "\n".join(problems)
    return text, problems


def check_arguments(data_dir: str, folders: dict) -> list[str]:
    """This module's command-line arguments for a data folder and/or the four folders (``FOLDERS`` keys)."""
    arguments = ["--data_dir", data_dir or ""]
    for name in FOLDERS:
        if folders.get(name):
            arguments += [f"--{name}", folders[name]]
    return arguments


class DataCheck:
    """The data check as a background process of the panel's: :meth:`start` returns at once, :meth:`poll` (on the
    panel's timer) gives the summary once the process has answered."""

    def __init__(self, launch=None):
        from .training_process import TrainingProcess

        self.process = TrainingProcess(launch)
        self.summary = ""

    @property
    def is_running(self) -> bool:
        return self.process.is_running

    def start(self, data_dir: str, folders: dict) -> None:
        import os

        from ..core.processes import library_command, python_executable

        self.process.stop()
        self.summary = ""
        arguments = [*check_arguments(data_dir, folders), "--parent", str(os.getpid())]
        self.process.start(library_command(python_executable(), __name__.split(".", 1)[1], arguments))

    def poll(self) -> str:
        """The summary text ("" until the process has answered; its last lines if it failed)."""
        for record in self.process.poll():
            if record["event"] == "data":
                self.summary = record["text"]
        if self.process.state == "crashed" and not self.summary:
            self.summary = "\n".join(["The data check failed:", *self.process.output_tail[-5:]])
        return self.summary


def main(argv: list[str] | None = None) -> int:
    from ..data.cases import resolve_folders

    parser = argparse.ArgumentParser(prog="LabelReg data check")
    parser.add_argument("--data_dir", default="")
    for name in FOLDERS:
        parser.add_argument(f"--{name}")
    parser.add_argument("--parent", type=int, help="end when this process ends")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.parent:
        from ..core.processes import watch_parent

        watch_parent(args.parent, what="LabelReg data check")
    folders = resolve_folders(args.data_dir or None, **{name: getattr(args, name) for name in FOLDERS})
    text, problems = summarise(folders)
    print(json.dumps({"event": "data", "text": text, "problems": problems}), flush=True)
    return 0
