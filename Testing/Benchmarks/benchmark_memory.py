"""Peak memory of one registration against the estimate that LabelRegLib/core/memory.py refuses by, as a table.

    python Testing/Benchmarks/benchmark_memory.py [--model M]

Each row registers a random US of the given size and spacing (MR 96-cube at 1 mm)
in a fresh process and reports the rise of its peak resident memory (max RSS)
during the registration, the estimate, and their ratio (the estimate should stay
at or above 1x; the check refuses when the estimate exceeds what is available).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "LabelReg"))

ROWS = [(100, 2.5), (160, 2.5), (200, 1.0), (300, 1.0)]  # US cube side (voxels), spacing (mm)

ONE_REGISTRATION = """
import json, resource, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[1])
from benchmark_registration import synthetic_pair
from LabelRegLib.core.memory import registration_bytes
from LabelRegLib.data.preprocess import working_geometry
from LabelRegLib.registration.registrar import Registrar
side, spacing = int(sys.argv[2]), float(sys.argv[3])
registrar = Registrar(sys.argv[4] or None, "cpu")
moving, fixed = synthetic_pair((side,) * 3, spacing, (96,) * 3, 1.0)
shape, _ = working_geometry(fixed, registrar.header.get("working_spacing_mm"))
shape = tuple(max(n, m) for n, m in zip(shape, registrar.network.min_input_shape or shape))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
registrar.register(moving, fixed, warn=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
channels = registrar.header["architecture"].get("num_channel_initial", 32)
print(json.dumps({"working": shape, "measured": after - before, "estimate": sum(registration_bytes(shape, fixed.shape, channels))}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="model file (default: the bundled model)")
    args = parser.parse_args()
    print(f"{'US':>12} {'spacing mm':>10} {'working grid':>14} {'measured MiB':>13} {'estimate MiB':>13} {'ratio':>6}")
    for side, spacing in ROWS:
        command = [sys.executable, "-c", ONE_REGISTRATION, str(Path(__file__).parent), str(side), str(spacing)]
        row = json.loads(subprocess.run(command + [args.model], capture_output=True, text=True, check=True).stdout)
        working = "x".join(map(str, row["working"]))
        print(
            f"{side:>4}x{side}x{side} {spacing:>10} {working:>14} {row['measured'] / 2**20:>13.0f}"
            f" {row['estimate'] / 2**20:>13.0f} {row['estimate'] / row['measured']:>5.2f}x"
        )


if __name__ == "__main__":
    main()
