"""Render a model card's picture: every cross-validated pair's gland Dice and landmark TRE, before -> after.

    python Testing/Pictures/render_crossval_pairs.py CV/per_case.csv [--output labelreg_localnet_crossval.png]

``CV/per_case.csv`` is what ``labelreg crossval`` writes: one row per held-out pair (its fold, gland Dice and
median landmark TRE before and after registration). Two panels, one line per pair from its start to its result,
red where the pair ends worse than it started, and the pooled medians as thick black lines.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

PANELS = (("dice", "gland Dice", True), ("tre_mm", "landmark TRE (mm)", False))  # column, title, higher is better


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def render(rows: list[dict], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(7.5, 3.6))
    for axis, (column, title, higher_better) in zip(axes, PANELS):
        before = [float(row[f"{column}_before"]) for row in rows]
        after = [float(row[f"{column}_after"]) for row in rows]
        for start, end in zip(before, after):
            worse = end < start if higher_better else end > start
            axis.plot([0, 1], [start, end], color="tab:red" if worse else "tab:blue", alpha=0.35, linewidth=0.8)
        medians = statistics.median(before), statistics.median(after)
        axis.plot([0, 1], medians, color="black", linewidth=2.5, marker="o")
        axis.annotate(f"{medians[0]:.3g}", (0, medians[0]), xytext=(-30, 0), textcoords="offset points")
        axis.annotate(f"{medians[1]:.3g}", (1, medians[1]), xytext=(8, 0), textcoords="offset points")
        axis.set_xticks([0, 1], ["start", "LabelReg"])
        axis.set_xlim(-0.3, 1.3)
        axis.set_title(title)
    worse = sum(float(r["dice_after"]) < float(r["dice_before"]) for r in rows)
    figure.suptitle(f"{len(rows)} cross-validated pairs (red: {worse} end with a lower gland Dice)", fontsize=10)
    figure.tight_layout()
    figure.savefig(output, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("per_case", type=Path, help="a cross-validation's per_case.csv")
    parser.add_argument("--output", type=Path, default=Path("labelreg_localnet_crossval.png"))
    args = parser.parse_args(argv)
    render(read_rows(args.per_case), args.output)
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
