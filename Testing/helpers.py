"""Helpers shared by the tests: phantom data folders, tiny models, running the command line."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TINY_NETWORK = ["--num_channel_initial", "4", "--minibatch_size", "2"]


def labelreg_command(*args) -> list[str]:
    """The ``labelreg`` command line run through this Python (works without the console script on PATH)."""
    return [sys.executable, "-m", "LabelRegLib.cli", *map(str, args)]


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "LabelReg"), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_labelreg(*args, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        labelreg_command(*args), capture_output=True, text=True, timeout=timeout, env=subprocess_env(), **kwargs
    )


def tiny_trainer(data_dir: Path, output_dir: Path, steps: int = 2, **overrides):
    """A trainer of a 4-channel LocalNet for a couple of steps on phantom pairs (in-process, progress discarded)."""
    import io

    from LabelRegLib.core.config import TrainConfig
    from LabelRegLib.training.trainer import Trainer

    settings = dict(
        data_dir=str(data_dir),
        output_dir=str(output_dir),
        total_iterations=steps,
        minibatch_size=2,
        num_channel_initial=4,
        freq_validation=steps,
        freq_model_save=steps,
        freq_info_print=1,
        validation_fraction=0.25,
    )
    settings.update(overrides)
    return Trainer(TrainConfig(**settings), stream=io.StringIO())


def train_tiny_model(data_dir: Path, output_dir: Path, steps: int = 2, resume: bool = False, **overrides) -> Path:
    """The model file of :func:`tiny_trainer`'s run."""
    return tiny_trainer(data_dir, output_dir, steps, **overrides).run(resume=resume)


def with_empty_border(volume, voxels: int, name: str | None = None):
    """``volume`` with ``voxels`` zero voxels added on every side, its content staying where it was in RAS
    (a wider field of view)."""
    import numpy as np
    from LabelRegLib.core.volume import Volume

    shift = np.eye(4)
    shift[:3, 3] = -np.full(3, float(voxels))
    return Volume(np.pad(volume.array, voxels), volume.ijk_to_ras @ shift, name or volume.name)


def snapshot(*folders: Path) -> dict:
    """Every file and folder under ``folders`` (hidden ones too): the SHA-256 of a file's bytes, where a link points
    (links are not followed), and the mode (a FIFO or socket: its mode alone; reading would block)."""

    def state(path: Path):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            return os.readlink(path), mode
        return (hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(mode) else True), mode

    return {str(p): state(p) for folder in folders for p in sorted(Path(folder).rglob("*"))}
