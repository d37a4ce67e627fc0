"""Concurrent runs never overwrite each other's outputs (issue 25, 3): two ``labelreg register`` processes started
together with one output path never both succeed; the second is refused in one line."""

import os
import subprocess

import pytest
from helpers import labelreg_command, subprocess_env
from LabelRegLib.core.io import write_volume
from LabelRegLib.data.phantom import make_phantom_pair

REPETITIONS = 20


@pytest.mark.slow
def test_two_registrations_into_one_output_never_both_succeed(tmp_path):
    pair = make_phantom_pair(1001)
    write_volume(pair.moving_image, tmp_path / "mr.nii.gz")
    write_volume(pair.fixed_image, tmp_path / "us.nii.gz")
    output = tmp_path / "out" / "mr_to_us.h5"
    output.parent.mkdir()
    command = labelreg_command(
        "register", "--moving", tmp_path / "mr.nii.gz", "--fixed", tmp_path / "us.nii.gz", "--init", "centers",
        "--mirror", "none", "--output-transform", output,
    )  # fmt: skip
    outcomes = []
    for _ in range(REPETITIONS):
        processes = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
            for _ in range(2)
        ]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
        codes = sorted(code for code, _err in results)
        outcomes.append(codes)
        assert codes != [0, 0], "both runs wrote the same output"
        for code, err in results:
            if code != 0:
                (line,) = err.strip().splitlines()
                assert line.startswith(f"labelreg register: error: --output-transform {output}: "), line
                assert "is being written by another LabelReg run" in line or "exists; pass --overwrite" in line
        assert output.is_file() and not list(output.parent.glob(".*")), "a lock or temporary file was left"
        output.unlink()
    assert all(codes == [0, 2] for codes in outcomes)


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    """A run killed with SIGKILL cannot remove its lock file; the next run sees its process gone and goes on."""
    from LabelRegLib.core.outputs import check_outputs, release_claims

    finished = subprocess.Popen(["sleep", "0"])
    finished.wait()
    (tmp_path / ".t.h5.labelreg-lock").write_text(str(finished.pid))
    check_outputs({"--output-transform": tmp_path / "t.h5"})
    assert (tmp_path / ".t.h5.labelreg-lock").read_text() == str(os.getpid())
    release_claims()
    assert not (tmp_path / ".t.h5.labelreg-lock").exists()
