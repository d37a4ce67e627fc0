"""Nothing the user had is lost: outputs are checked before any work (issue 14's data-loss cases).

Each case runs the real command line and asserts the exit code, a one-line message naming the option and
the file, no traceback, and that the folder is byte for byte as it was (no input, earlier output or
temporary file changed or left behind).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import REPO, TINY_NETWORK, labelreg_command, run_labelreg, subprocess_env
from LabelRegLib.io import write_volume
from LabelRegLib.phantom import make_phantom_pair


def snapshot(folder) -> dict:
    """Every file under ``folder`` (hidden ones too) with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def pair_folder(tmp_path):
    pair = make_phantom_pair(1001)
    write_volume(pair.moving_image, tmp_path / "mr.nii.gz")
    write_volume(pair.fixed_image, tmp_path / "us.nii.gz")
    write_volume(pair.moving_labels, tmp_path / "mr_labels.nii.gz")
    return tmp_path


def refused(folder, *args, match: str) -> None:
    before = snapshot(folder)
    run = run_labelreg(*args)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"labelreg {args[0]}: error: "), run.stderr
    assert match in lines[0], lines[0]
    assert snapshot(folder) == before


@pytest.mark.parametrize(
    "output, target, message",
    [
        ("--warped-image", "mr.nii.gz", "--warped-image {d}/mr.nii.gz: is also the --moving input"),
        ("--output-transform", "us.nii.gz", "--output-transform {d}/us.nii.gz: is also the --fixed input"),
        ("--warped-label", "mr_labels.nii.gz", "--warped-label {d}/mr_labels.nii.gz: is also the --moving-label input"),
    ],
)
def test_an_output_that_is_an_input_is_refused_even_with_overwrite(pair_folder, tiny_model, output, target, message):
    d = pair_folder
    args = [
        "register",
        "--moving",
        d / "mr.nii.gz",
        "--fixed",
        d / "us.nii.gz",
        "--model",
        tiny_model,
        output,
        d / target,
        "--overwrite",
    ]
    if output == "--warped-label":
        args += ["--moving-label", d / "mr_labels.nii.gz"]
    refused(d, *args, match=message.format(d=d))


def test_two_outputs_on_one_file_and_existing_outputs_are_refused(pair_folder, tiny_model):
    d = pair_folder
    base = ["register", "--moving", d / "mr.nii.gz", "--fixed", d / "us.nii.gz", "--model", tiny_model]
    refused(
        d,
        *base,
        "--output-transform",
        d / "out.nii.gz",
        "--warped-image",
        d / "out.nii.gz",
        match=f"--warped-image {d}/out.nii.gz: is also the --output-transform output",
    )
    (d / "earlier.h5").write_bytes(b"an earlier result")
    refused(
        d,
        *base,
        "--output-transform",
        d / "earlier.h5",
        match=f"--output-transform {d}/earlier.h5: exists; pass --overwrite to replace it",
    )
    (d / "earlier.h5").chmod(0o444)
    refused(d, *base, "--output-transform", d / "earlier.h5", "--overwrite", match="is read-only")
    (d / "earlier.h5").chmod(0o644)
    run = run_labelreg(*base, "--output-transform", d / "earlier.h5", "--overwrite")
    assert run.returncode == 0, run.stderr
    assert (d / "earlier.h5").read_bytes() != b"an earlier result"


def test_unwritable_outputs_are_refused_before_any_work(pair_folder, tiny_model):
    d = pair_folder
    base = ["register", "--moving", d / "mr.nii.gz", "--fixed", d / "us.nii.gz", "--model", tiny_model]
    (d / "folder.h5").mkdir()
    refused(d, *base, "--output-transform", d / "folder.h5", match="is a folder, not a file")
    (d / "afile").write_text("x")
    refused(d, *base, "--output-transform", d / "afile" / "t.h5", match="afile is a file, not a folder")
    # the transform is not written when the warped image's type is wrong
    refused(d, *base, "--output-transform", d / "t.h5", "--warped-image", d / "warped.txt", match="--warped-image")
    assert not (d / "t.h5").exists()


def test_a_pairs_csv_with_a_bom_spaces_and_blank_lines_runs_and_a_failed_pair_does_not_stop_the_others(
    pair_folder, tiny_model
):
    d = pair_folder
    csv = d / "pairs.csv"
    csv.write_text(
        f"\ufeffmoving, fixed, output_transform\n{d}/mr.nii.gz, {d}/us.nii.gz, {d}/a.h5\n\n"
        f"{d}/mr.nii.gz, {d}/missing.nii.gz, {d}/b.h5\n{d}/mr.nii.gz, {d}/us.nii.gz, {d}/c.h5\n",
        encoding="utf-8",
    )
    run = run_labelreg("register", "--pairs", csv, "--model", tiny_model)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert (d / "a.h5").is_file() and (d / "c.h5").is_file() and not (d / "b.h5").exists()
    assert f"{csv}: row 4: " in run.stderr and "missing.nii.gz" in run.stderr and "1 of 3 pairs failed" in run.stderr
    csv.write_text(f"moving,fixed,output_transform\n{d}/mr.nii.gz,,{d}/x.h5\n")
    refused(
        d, "register", "--pairs", csv, "--model", tiny_model, match=f"{csv}: row 2: moving and fixed are both needed"
    )
    csv.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    refused(d, "register", "--pairs", csv, "--model", tiny_model, match="is not a CSV text file")


def test_the_batch_script_refuses_to_write_over_its_inputs(pair_folder):
    d = pair_folder
    script = REPO / "LabelReg" / "Resources" / "Scripts" / "labelreg_batch.py"
    (d / "mr.seg.nrrd").write_bytes(b"a segmentation")
    before = snapshot(d)
    for args, message in (
        (["--output-transform", d / "mr.nii.gz"], f"--output-transform {d}/mr.nii.gz: is also the --moving input"),
        (["--output-labelmap", d / "us.nii.gz"], f"--output-labelmap {d}/us.nii.gz: is also the --fixed input"),
        (
            [
                "--output-transform",
                d / "t.h5",
                "--segmentation",
                d / "mr.seg.nrrd",
                "--output-segmentation",
                d / "mr.seg.nrrd",
            ],
            "--output-segmentation " + f"{d}/mr.seg.nrrd: is also the --segmentation input",
        ),
    ):
        run = subprocess.run(
            [sys.executable, script, "--moving", d / "mr.nii.gz", "--fixed", d / "us.nii.gz", *map(str, args)],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=300,
        )
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert message in run.stderr
    assert snapshot(d) == before


# ---------------------------------------------------------------- training
def test_a_training_never_replaces_what_it_was_not_asked_to(phantom_folder, tmp_path):
    run_dir = tmp_path / "run"
    base = ["train", "--data_dir", phantom_folder, "--output_dir", run_dir, "--total_iterations", "2", *TINY_NETWORK]
    victim = tmp_path / "victim.nii.gz"
    victim.write_bytes(b"an image")
    refused(
        tmp_path,
        *base,
        "--file_model_save",
        victim,
        match=f"--file_model_save {victim}: unsupported file type '.nii.gz'; use .pt",
    )
    refused(tmp_path, *base, "--resume", match=f"--output_dir {run_dir}: has no checkpoint.pt to resume")
    assert run_labelreg(*base).returncode == 0
    refused(
        tmp_path,
        *base,
        match=f"--output_dir {run_dir}: holds a training already (checkpoint.pt); --resume continues it, --overwrite starts again",
    )
    refused(
        tmp_path,
        *base,
        "--resume",
        "--learning_rate",
        "1e-3",
        match="was trained with other settings (learning_rate 0.0001 -> 0.001); resume with the same ones",
    )
    assert run_labelreg(*base, "--resume", "--total_iterations", "3").returncode == 0  # training longer is allowed
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / ".labelreg-train.lock").write_text(str(sleeper.pid))
        refused(tmp_path, *base, "--overwrite", match=f"another training (process {sleeper.pid}) is writing to it")
    finally:
        sleeper.kill()
        sleeper.wait()
    run = run_labelreg(*base, "--overwrite")  # a lock left by a process that is gone is taken over
    assert run.returncode == 0, run.stderr
    assert not (run_dir / ".labelreg-train.lock").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_training_says_so_in_one_line_and_leaves_no_temporary_file(phantom_folder, tmp_path, signum):
    process = subprocess.Popen(
        labelreg_command(
            "train",
            "--data_dir",
            phantom_folder,
            "--output_dir",
            tmp_path / "run",
            "--total_iterations",
            "100000",
            *TINY_NETWORK,
            "--progress-json",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert '"event": "start"' in process.stdout.readline()
        time.sleep(1)
        os.kill(process.pid, signum)
        _out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert (
        process.returncode == 130
        and err.strip().splitlines()[-1] == "labelreg train: interrupted"
        and "Traceback" not in err
    )
    assert not (tmp_path / "run" / ".labelreg-train.lock").exists()
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")], "hidden temporary files left"
