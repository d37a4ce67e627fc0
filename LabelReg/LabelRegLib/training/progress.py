"""What a training reports: progress lines (a bar, or JSON for the Slicer module), the curves and metrics.csv.

Only the main process reports and writes. ``history`` holds a row per printed
step and per validation; :meth:`ProgressLog.write_metrics` writes it as
``metrics.csv`` and ``curves.png`` (the picture is skipped without matplotlib).
"""

from __future__ import annotations

import csv
import io as _io
import json
import sys
from pathlib import Path

from ..core.writes import atomic_output, verify_png, write_text

COLUMNS = ["step", "loss", "similarity", "regulariser", "val_dice", "val_tre_mm", "val_folding", "elapsed_s"]


class ProgressLog:
    """Progress of one training: printed as it goes, and written to ``output_dir``."""

    def __init__(
        self, output_dir: Path, progress_json: bool, stream=None, is_main: bool = True, with_segmentation: bool = False
    ):
        self.output_dir = output_dir
        self.progress_json = progress_json
        self.stream = stream or sys.stdout
        self.is_main = is_main
        self.columns = [*COLUMNS[:4], "segmentation", *COLUMNS[4:]] if with_segmentation else list(COLUMNS)
        self.history: list[dict] = []
        self.written: list[str] = []  # files this process wrote

    def emit(self, record: dict) -> None:
        """One event: a JSON line with ``progress_json``, else a progress bar on stderr for steps."""
        if not self.is_main:
            return
        if self.progress_json:
            print(json.dumps(record), file=self.stream, flush=True)
        elif record["event"] == "step":
            bar = "#" * int(30 * record["step"] / record["total"])
            print(
                f"\r[{bar:<30}] step {record['step']}/{record['total']}  loss {record['loss']:.4f}  "
                f"(similarity {record['similarity']:.4f}, regulariser {record['regulariser']:.5f})  ETA {record['eta_s']:.0f}s",
                end="\n" if record["step"] == record["total"] else "",
                file=sys.stderr,
                flush=True,
            )
        elif record["event"] in ("validation", "done", "start"):
            print("\n" + json.dumps(record), file=sys.stderr, flush=True)

    def note(self, *paths: Path) -> None:
        self.written += [str(p) for p in paths if str(p) not in self.written]

    def write_metrics(self) -> None:
        buffer = _io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.history)
        write_text(self.output_dir / "metrics.csv", buffer.getvalue())
        plot_curves(self.history, self.output_dir / "curves.png")
        self.note(self.output_dir / "metrics.csv", self.output_dir / "curves.png")


def plot_curves(history: list[dict], path: Path) -> None:
    """PNG of the training loss and the validation Dice / TRE against the step (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    steps = [h["step"] for h in history]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(steps, [h["loss"] for h in history], label="loss")
    axes[0].plot(steps, [h["similarity"] for h in history], label="label dissimilarity")
    axes[0].set(xlabel="step", title="training loss")
    axes[0].legend()
    validated = [h for h in history if "val_dice" in h]
    axes[1].plot([h["step"] for h in validated], [h["val_dice"] for h in validated], "o-")
    axes[1].set(xlabel="step", title="validation gland Dice (median)", ylim=(0, 1))
    axes[2].plot([h["step"] for h in validated], [h["val_tre_mm"] for h in validated], "o-", color="tab:red")
    axes[2].set(xlabel="step", title="validation landmark TRE (mm, median)")
    figure.tight_layout()
    with atomic_output(path, verify_png) as temporary:
        figure.savefig(temporary, dpi=80)
    plt.close(figure)
