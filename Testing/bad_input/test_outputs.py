"""Nothing the user had is lost: what needs a process of its own (the batch script, signals, a training run),
and what must still work beside the refusals of ``test_every_case.py`` (``--overwrite``, a lenient CSV, a
failed pair among good ones, a longer resume, a stale lock).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import REPO, TINY_NETWORK, labelreg_command, run_labelreg, snapshot, subprocess_env
from LabelRegLib.core.io import write_volume
from LabelRegLib.data.phantom import make_phantom_pair


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


def test_overwrite_replaces_an_earlier_output(pair_folder, tiny_model):
    d = pair_folder
    (d / "earlier.h5").write_bytes(b"an earlier result")
    run = run_labelreg(
        "register", "--moving", d / "mr.nii.gz", "--fixed", d / "us.nii.gz", "--model", tiny_model,
        "--output-transform", d / "earlier.h5", "--overwrite",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (d / "earlier.h5").read_bytes() != b"an earlier result"


def test_a_pairs_csv_with_a_bom_spaces_and_blank_lines_runs_and_a_failed_pair_does_not_stop_the_others(
    pair_folder, tiny_model
):
    d = pair_folder
    csv = d / "pairs.csv"
    write_volume(
        make_phantom_pair(1001).fixed_image.with_array(np.full((40, 40, 40), 7.0, np.float32)), d / "flat.nii.gz"
    )
    csv.write_text(  # relative paths: from the CSV's folder, not the folder the command runs in
        "\ufeffmoving, fixed, output_transform\nmr.nii.gz, us.nii.gz, a.h5\n\n"
        f"{d}/mr.nii.gz, flat.nii.gz, b.h5\n{d}/mr.nii.gz, {d}/us.nii.gz, {d}/c.h5\n",
        encoding="utf-8",
    )
    run = run_labelreg("register", "--pairs", csv, "--model", tiny_model, cwd=REPO)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert (d / "a.h5").is_file() and (d / "c.h5").is_file() and not (d / "b.h5").exists()
    assert f"{csv}: row 4: {d}/flat.nii.gz: has no usable content" in run.stderr
    assert "1 of 3 pairs failed" in run.stderr


def test_the_batch_script_refuses_to_write_over_its_inputs_and_a_nan_image(pair_folder):
    d = pair_folder
    script = REPO / "LabelReg" / "Resources" / "Scripts" / "labelreg_batch.py"
    (d / "mr.seg.nrrd").write_bytes(b"a segmentation")
    us = make_phantom_pair(1001).fixed_image
    us.array[10, 10, 10] = (
        np.nan
    )  # Slicer's reader would load it as 0: the file itself is checked, as on the command line
    write_volume(us, d / "nan_us.nii.gz")
    before = snapshot(d)
    for args, message, code in (
        (["--output-transform", d / "mr.nii.gz"], f"--output-transform {d}/mr.nii.gz: is also the --moving input", 2),
        (["--output-labelmap", d / "us.nii.gz"], f"--output-labelmap {d}/us.nii.gz: is also the --fixed input", 2),
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
            2,
        ),
        (["--output-transform", d / "t.h5", "--fixed", d / "nan_us.nii.gz"], f"{d}/nan_us.nii.gz: contains 1 NaN", 2),
    ):
        run = subprocess.run(
            [sys.executable, script, "--moving", d / "mr.nii.gz", "--fixed", d / "us.nii.gz", *map(str, args)],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=300,
        )
        assert run.returncode == code and "Traceback" not in run.stderr, run.stderr
        assert message in run.stderr
    assert snapshot(d) == before


BATCH = REPO / "LabelReg" / "Resources" / "Scripts" / "labelreg_batch.py"


def batch(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, BATCH, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=subprocess_env(), **kwargs,
    )  # fmt: skip


def test_the_batch_script_refuses_what_the_command_line_refuses_before_any_case_runs(pair_folder, gland_model):
    """Issue 25, 8: bad arguments, a missing model, an unavailable device, a gland model as the registration model,
    an image of the wrong kind, no output asked for: one line ``labelreg_batch.py: error: ...``, exit 2, nothing
    written."""
    import SimpleITK as sitk

    d = pair_folder
    sitk.WriteImage(sitk.Image([30, 30, 30], sitk.sitkVectorUInt8, 3), str(d / "rgb.nrrd"))
    pair = ["--moving", d / "mr.nii.gz", "--fixed", d / "us.nii.gz"]
    before = snapshot(d)
    for args, message in (
        ([*pair, "--output-transform", d / "t.h5", "--bogus"], "unrecognized arguments: --bogus"),
        ([*pair, "--output-transform", d / "t.h5", "--model", d / "none.pt"], f"{d}/none.pt: model file not found"),
        ([*pair, "--output-transform", d / "t.h5", "--device", "cuda:7"], "Device 'cuda:7' was requested"),
        ([*pair, "--output-transform", d / "t.h5", "--model", gland_model], "not a registration model"),
        (["--moving", d / "rgb.nrrd", "--fixed", d / "us.nii.gz", "--output-transform", d / "t.h5"],
         f"{d}/rgb.nrrd: is a colour or vector image"),
        (pair, "mr.nii.gz: nothing to write; give --output-transform"),
        ([*pair, "--output-labelmap", d / "l.nrrd"], "--output-labelmap needs --segmentation"),
    ):  # fmt: skip
        process = batch(*args)
        _out, err = process.communicate(timeout=300)
        assert process.returncode == 2 and "Traceback" not in err, err
        assert err.strip().splitlines()[-1].startswith("labelreg_batch.py: error: "), err
        assert message in err.strip().splitlines()[-1], err
    assert snapshot(d) == before


def test_sigterm_ends_the_batch_script_in_one_line_with_130_and_no_partial_file(pair_folder, tiny_model):
    d = pair_folder
    rows = "".join(f"mr.nii.gz,us.nii.gz,t{n}.h5\n" for n in range(40))
    (d / "cases.csv").write_text("moving,fixed,output_transform\n" + rows)
    process = batch("--cases", d / "cases.csv", "--model", tiny_model, "--device", "cpu")
    while " -> " not in process.stdout.readline():  # the first case is registered: the script is in its loop
        assert process.poll() is None, process.stderr.read()
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "labelreg_batch.py: interrupted" and "Traceback" not in err
    written = sorted(d.glob("t*.h5"))
    assert 1 <= len(written) < 40
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temporary file, no lock file left
    from LabelRegLib.core.transform_io import read_displacement

    for path in written:  # each complete
        read_displacement(path)


# ---------------------------------------------------------------- training
def test_a_training_never_replaces_what_it_was_not_asked_to(phantom_folder, tmp_path):
    run_dir = tmp_path / "run"
    base = ["train", "--data_dir", phantom_folder, "--output_dir", run_dir, "--total_iterations", "2", *TINY_NETWORK]
    assert run_labelreg(*base).returncode == 0
    refused(
        tmp_path,
        *base,
        match=f"--output_dir {run_dir}: holds a training already (checkpoint.pt); --resume continues it, --overwrite starts again",
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
        # as in a terminal, where Ctrl-C reaches the command: a test run from a background job inherits SIGINT ignored
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if os.name != "nt" else None,
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
