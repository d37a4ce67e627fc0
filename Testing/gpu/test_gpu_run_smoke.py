"""The GPU run's CPU rehearsal (issue 28, 4): Testing/gpu/gpu_run.py --smoke runs every part that needs no test
suite (phantom pairs, a few tiny steps per stage, three folds and the final model in parallel processes) and writes
its folder."""

import json
import subprocess
import sys

import pytest
from helpers import REPO, subprocess_env


@pytest.mark.slow
def test_the_gpu_run_rehearses_on_the_cpu(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "Testing" / "gpu" / "gpu_run.py"), "--smoke", "--output", str(tmp_path / "run")],
        capture_output=True, text=True, env=subprocess_env(), timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    summary = (run / "summary.txt").read_text()
    assert "fold0: 0\nfold1: 0\nfold2: 0\nfinal: 0\n" in summary
    assert "cross-validated (pooled, 6 held-out pairs): gland Dice" in summary
    assert json.loads((run / "environment.json").read_text())["smoke"] is True
    assert json.loads((run / "cv" / "summary.json").read_text())["folds"] == 3
    assert (run / "final" / "stage3" / "model.pt").is_file() and (run / "cv" / "per_case.csv").is_file()
