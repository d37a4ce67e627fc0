"""How long ``labelreg register --pairs`` checks a large pairs CSV before the first registration.

    python Testing/Benchmarks/benchmark_pairs_csv.py [--rows 1000 10000]

For each size, a folder with that many MR/US pairs (empty files: only their presence is checked before the
work) and a CSV naming each pair's two inputs by relative path and two outputs (a transform and a warped image)
that do not exist yet. Timed: reading the CSV (:func:`LabelRegLib.core.pairs_csv.read_pairs`) and the checks that
precede any registration (inputs present; every output against every input and every other output, writable,
free, and claimed by its lock file). The issue's bar: 10,000 rows in at most 10 s on two cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "LabelReg"))


def write_table(folder: Path, rows: int) -> Path:
    """``rows`` pairs of empty input files under ``folder`` and the CSV naming them (relative paths)."""
    (folder / "images").mkdir()
    lines = ["moving,fixed,output_transform,warped_image"]
    for n in range(rows):
        for role in ("mr", "us"):
            (folder / "images" / f"{n:05d}_{role}.nii.gz").touch()
        lines.append(f"images/{n:05d}_mr.nii.gz,images/{n:05d}_us.nii.gz,out/{n:05d}.h5,out/{n:05d}_warped.nii.gz")
    (folder / "out").mkdir()
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    return folder / "pairs.csv"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args(argv)

    from LabelRegLib.cli.register import check_register_jobs
    from LabelRegLib.core.outputs import release_claims
    from LabelRegLib.core.pairs_csv import read_pairs

    print(f"{'rows':>7} {'read CSV s':>11} {'check s':>8} {'total s':>8}")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as folder:
            table = write_table(Path(folder), rows)
            started = time.perf_counter()
            jobs = read_pairs(table)
            read_s = time.perf_counter() - started
            check_register_jobs(jobs, None, overwrite=False, source=str(table))
            check_s = time.perf_counter() - started - read_s
            release_claims()
        print(f"{rows:>7} {read_s:>11.2f} {check_s:>8.2f} {read_s + check_s:>8.2f}")


if __name__ == "__main__":
    main()
