"""Two cross-validations of the same cases, compared pair by pair: is recipe B better than recipe A?

    python Testing/Benchmarks/compare_crossvals.py CV_A CV_B [--resamples N]

reads ``per_case.csv`` of two ``labelreg crossval`` folders (the same data and folds) and prints the pooled medians
of each, how many pairs gain in gland Dice and in landmark TRE (per pair, the median of its landmarks), how many end
with a lower gland Dice than A's start, and the 90 % paired-bootstrap interval over pairs of the change of each
median (B - A). A recipe change is worth shipping when both intervals exclude zero in its favour.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import numpy as np


def read_per_case(folder: str) -> dict[str, dict[str, float]]:
    with open(Path(folder) / "per_case.csv", newline="") as handle:
        return {
            row["case"]: {key: float(row[key]) for key in ("dice_before", "dice_after", "tre_mm_after")}
            for row in csv.DictReader(handle)
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cv_a")
    parser.add_argument("cv_b")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()

    a, b = read_per_case(args.cv_a), read_per_case(args.cv_b)
    if set(a) != set(b):
        sys.exit("the two cross-validations hold different cases")
    cases = sorted(a)
    values = {
        key: np.array([[a[c][key] for c in cases], [b[c][key] for c in cases]])
        for key in ("dice_after", "tre_mm_after")
    }
    rng = np.random.default_rng(0)
    print(f"{'':<26}{'A':>10}{'B':>10}{'pairs B better':>16}{'90% interval of B - A':>26}")
    for key, better in (("dice_after", np.greater), ("tre_mm_after", np.less)):
        both = values[key]
        samples = rng.integers(len(cases), size=(args.resamples, len(cases)))
        change = np.median(both[1][samples], axis=1) - np.median(both[0][samples], axis=1)
        low, high = np.quantile(change, [0.05, 0.95])
        print(
            f"{'median ' + key:<26}{statistics.median(both[0]):>10.3f}{statistics.median(both[1]):>10.3f}"
            f"{int(better(both[1], both[0]).sum()):>10d} of {len(cases)}{f'{low:+.3f} .. {high:+.3f}':>26}"
        )
    for name, rows in (("A", a), ("B", b)):
        below = sum(rows[c]["dice_after"] < a[c]["dice_before"] for c in cases)
        print(f"{name}: {below} pairs end with a lower gland Dice than A's start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
