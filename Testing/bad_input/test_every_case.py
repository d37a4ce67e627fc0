"""Issue 14's bad inputs, one row each, run through ``labelreg``'s entry point in this process.

Every row asserts the four things a refusal must do: the exit code; one message line
``labelreg <command>: error: ...`` (argparse's own for bad flags) naming the file or
option and the problem; no traceback (an unexpected exception fails the test);
and the folders involved byte for byte, mode for mode, as they were (no input,
earlier output or temporary file changed or left behind). Cases that need a
process of their own (the Slicer batch script, signals, two processes) are in
``test_outputs.py`` beside this file; the input-file checks of the library in
``test_input_files.py``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from helpers import snapshot, train_tiny_model
from LabelRegLib import cli
from LabelRegLib.core.io import write_volume
from LabelRegLib.core.volume import Volume, make_ijk_to_ras
from LabelRegLib.data.phantom import make_phantom_pair
from LabelRegLib.nets.model_file import MODELS_DIR, read_model_payload, save_model
from LabelRegLib.registration.glands import DEFAULT_GLAND_MODEL_NAME

TRAIN = "train --data_dir {data} --output_dir {d}/run --num_channel_initial 4 --minibatch_size 2 --total_iterations 2"
REGISTER = "register --moving {d}/mr.nii.gz --fixed {d}/us.nii.gz --model {d}/model.pt"
CRAFTED = REGISTER.replace("model.pt", "crafted.pt") + " --output-transform {d}/t.h5"
GLAND_MODEL = MODELS_DIR / DEFAULT_GLAND_MODEL_NAME
GLANDS = "train-glands {data} --output {d}/glands.pt"
CROSSVAL = "crossval {d}/settings.ini --data_dir {data} --output {d}/cv --total_iterations 1 --minibatch_size 1"


@pytest.fixture(scope="module")
def earlier_run(phantom_folder, tmp_path_factory) -> Path:
    """A finished two-step training (model, checkpoint, config.ini, metrics) made with :data:`TRAIN`'s settings."""
    folder = tmp_path_factory.mktemp("earlier") / "run"
    train_tiny_model(phantom_folder, folder, freq_validation=1000, freq_model_save=1000, validation_fraction=0.1)
    return folder


@pytest.fixture
def workspace(tmp_path, tiny_model, earlier_run) -> Path:
    pair = make_phantom_pair(1001)
    write_volume(pair.moving_image, tmp_path / "mr.nii.gz")
    write_volume(pair.fixed_image, tmp_path / "us.nii.gz")
    write_volume(pair.moving_labels, tmp_path / "mr_labels.nii.gz")
    write_volume(pair.fixed_labels, tmp_path / "us_labels.nii.gz")
    shutil.copy(tiny_model, tmp_path / "model.pt")
    shutil.copytree(earlier_run, tmp_path / "run")
    return tmp_path


# ------------------------------------------------------------------ what some rows prepare in the workspace
def _image(d: Path, name: str, array, spacing_mm=1.0) -> None:
    write_volume(Volume(np.asarray(array, np.float32), make_ijk_to_ras([spacing_mm] * 3)), d / name)


def _model_with(d: Path, **header_changes) -> None:
    """``crafted.pt``: the tiny model with a changed header, its checksum valid (what a careless tool might write)."""
    from LabelRegLib.nets.model_file import build_from_header

    header, state = read_model_payload(d / "model.pt")
    network = build_from_header(header)
    network.load_state_dict(state)
    architecture = {**header["architecture"], **header_changes.pop("architecture", {})}
    save_model(d / "crafted.pt", network, {**header, **header_changes, "architecture": architecture})


def _one_header_byte(d: Path) -> None:
    """The intensity window's low percentile 1.0 -> 9.0 in the file's bytes (the pickle in the zip is stored as is)."""
    data = (d / "model.pt").read_bytes()
    assert data.count(b'"low": 1.0') == 1
    (d / "edited.pt").write_bytes(data.replace(b'"low": 1.0', b'"low": 9.0'))


def _ini(d: Path, text: str) -> None:
    (d / "settings.ini").write_text(text.format(d=d))


def _evil_checkpoint(d: Path) -> None:
    import torch

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {d}/pwned",))

    torch.save({"format": "labelreg-checkpoint", "network": RunsCode()}, d / "run" / "checkpoint.pt")


def _read_only_file(d: Path) -> None:
    (d / "earlier.h5").write_bytes(b"an earlier result")
    (d / "earlier.h5").chmod(0o444)


def _noise(shape, seed=0):
    return np.random.default_rng(seed).random(shape) * 100


def _split(d: Path, folds: int, seed: int = 0) -> None:
    """A cross-validation folder made with ``folds`` folds and ``seed`` (its split.json), interrupted."""
    (d / "cv" / "fold0").mkdir(parents=True)
    (d / "cv" / "split.json").write_text(json.dumps({"folds": folds, "seed": seed, "cases": []}))


def _huge_header(d: Path) -> None:
    """A NRRD header promising 4000^3 float voxels over a 100-byte data file."""
    (d / "huge.raw").write_bytes(bytes(100))
    (d / "huge.nhdr").write_text(
        "NRRD0004\ntype: float\ndimension: 3\nsizes: 4000 4000 4000\nendian: little\nencoding: raw\n"
        "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\ndata file: huge.raw\n"
    )


def _rgb_nifti(d: Path) -> None:
    import nibabel as nib

    rgb = np.zeros((30, 30, 30), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(d / "rgb.nii.gz"))


def _rgb_nrrd(d: Path) -> None:
    import SimpleITK as sitk

    sitk.WriteImage(sitk.Image([30, 30, 30], sitk.sitkVectorUInt8, 3), str(d / "rgb.nrrd"))


def _float64_overflow(d: Path) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(_noise((30, 30, 30)) * 1e300, np.eye(4)), str(d / "big64.nii.gz"))


def _far_us(d: Path) -> None:
    """The US 1 m away from the MR as its header places it."""
    pair = make_phantom_pair(1001)
    matrix = pair.fixed_image.ijk_to_ras.copy()
    matrix[:3, 3] += 1000.0
    write_volume(Volume(pair.fixed_image.array, matrix), d / "far_us.nii.gz")


SETUPS = {
    "split-2-folds": lambda d: _split(d, 2),
    "split-3-folds": lambda d: _split(d, 3),
    "no-config-ini": lambda d: (d / "run" / "config.ini").unlink(),
    "other-model": lambda d: (d / "other.pt").write_bytes(b"someone else's model"),
    "earlier-picture": lambda d: (d / "eval").mkdir() or (d / "eval" / "phantom003.png").write_bytes(b"a picture"),
    "csv-column-twice": lambda d: (d / "pairs.csv").write_text(
        "moving,fixed,moving,output_transform\n{0}/mr.nii.gz,{0}/us.nii.gz,{0}/mr.nii.gz,{0}/t.h5\n".format(d)
    ),
    "csv-long-row": lambda d: (d / "pairs.csv").write_text(
        "moving,fixed,output_transform\n{0}/mr.nii.gz,{0}/us.nii.gz,{0}/t.h5,{0}/extra.h5\n".format(d)
    ),
    "csv-missing-input": lambda d: (d / "pairs.csv").write_text(
        "moving,fixed,output_transform\n{0}/mr.nii.gz,{0}/none.nii.gz,{0}/t.h5\n".format(d)
    ),
    "csv-one-constant-row": lambda d: (
        _image(d, "us7.nii.gz", np.full((40, 40, 40), 7.0))
        or (d / "pairs.csv").write_text("moving,fixed,output_transform\nmr.nii.gz,us7.nii.gz,t.h5\n")
    ),
    "rgb-nifti": _rgb_nifti,
    "rgb-nrrd": _rgb_nrrd,
    "self-link": lambda d: os.symlink(d / "loop.nii.gz", d / "loop.nii.gz"),
    "float64-overflow": _float64_overflow,
    "huge-header": _huge_header,
    "mr-150mm": lambda d: _image(d, "mr150.nii.gz", _noise((40, 40, 40)), spacing_mm=150.0),
    "far-us": _far_us,
    "fifo": lambda d: os.mkfifo(d / "fifo.pt"),
    "truncated-model": lambda d: (d / "truncated.pt").write_bytes((d / "model.pt").read_bytes()[:5000]),
    "read-only": _read_only_file,
    "earlier": lambda d: (d / "earlier.h5").write_bytes(b"an earlier result"),
    "folder": lambda d: (d / "folder.h5").mkdir(),
    "a-file": lambda d: (d / "afile").write_text("x"),
    "read-only-folder": lambda d: (d / "locked").mkdir() or (d / "locked").chmod(0o555),
    "lock": lambda d: (d / "run" / ".labelreg-train.lock").write_text(str(os.getppid())),  # a live process
    "no-checkpoint": lambda d: (d / "run" / "checkpoint.pt").unlink(),
    "evil-checkpoint": _evil_checkpoint,
    "one-header-byte": _one_header_byte,
    "passes": lambda d: _model_with(d, inference_passes=10**9),
    "huge-shape": lambda d: _model_with(d, training_input_shape_kji=[100000, 30, 30]),
    "tiny-spacing": lambda d: _model_with(d, working_spacing_mm=0.001),
    "channels": lambda d: _model_with(d, architecture={"num_channel_initial": 4096}),
    "network-type-in-header": lambda d: _model_with(d, architecture={"network_type": "transformer"}),
    "levels": lambda d: _model_with(d, architecture={"ddf_levels": [0, 9]}),
    "norm": lambda d: _model_with(d, architecture={"norm": "layer"}),
    "unknown-architecture-key": lambda d: _model_with(d, architecture={"depth": 9}),
    "constant-us": lambda d: _image(d, "us.nii.gz", np.full((40, 40, 40), 7.0)),
    "zero-mr": lambda d: _image(d, "mr.nii.gz", np.zeros((40, 40, 40))),
    "3x3x3-us": lambda d: _image(d, "us.nii.gz", _noise((3, 3, 3))),
    "nan-us": lambda d: _image(d, "us.nii.gz", np.where(_noise((40, 40, 40)) > 99, np.nan, _noise((40, 40, 40)))),
    "deterministic-ture": lambda d: _ini(d, "[Data]\ndir_moving_image = {d}\n[Train]\ndeterministic = ture\n"),
    "network-type": lambda d: _ini(d, "[Data]\ndir_moving_image = {d}\n[Network]\nnetwork_type = transformer\n"),
    "dir-sav": lambda d: _ini(d, "[Inference]\ndir_moving_image = {d}\ndir_fixed_image = {d}\ndir_sav = {d}/out\n"),
    "csv-binary": lambda d: (d / "pairs.csv").write_bytes(bytes(range(256)) * 4),
    "csv-row": lambda d: (d / "pairs.csv").write_text(
        "moving,fixed,output_transform\n{0}/mr.nii.gz,,{0}/t.h5\n".format(d)
    ),
    "csv-column": lambda d: (d / "pairs.csv").write_text(
        "moving,fixed,output_transform,segmentation\n{0}/mr.nii.gz,{0}/us.nii.gz,{0}/t.h5,{0}/s.seg.nrrd\n".format(d)
    ),
}

# id, setup, command line, exit code, what the message says (regular expression; {d} the workspace)
CASES = [
    # --- data loss: an output on an input, on another output, on a file the user did not offer
    ("warped-image-on-moving", None, REGISTER + " --warped-image {d}/mr.nii.gz --overwrite", 2,
     "--warped-image {d}/mr.nii.gz: is also the --moving input"),
    ("transform-on-fixed", None, REGISTER + " --output-transform {d}/us.nii.gz --overwrite", 2,
     "--output-transform {d}/us.nii.gz: is also the --fixed input"),
    ("warped-label-on-moving-label", None,
     REGISTER + " --moving-label {d}/mr_labels.nii.gz --warped-label {d}/mr_labels.nii.gz --overwrite", 2,
     "--warped-label {d}/mr_labels.nii.gz: is also the --moving-label input"),
    ("model-on-input", None, REGISTER + " --output-transform {d}/model.pt", 2, "--output-transform {d}/model.pt: "),
    ("two-outputs-one-file", None, REGISTER + " --output-transform {d}/o.nii.gz --warped-image {d}/o.nii.gz", 2,
     "--warped-image {d}/o.nii.gz: is also the --output-transform output"),
    ("existing-output", "earlier", REGISTER + " --output-transform {d}/earlier.h5", 2,
     "--output-transform {d}/earlier.h5: exists; pass --overwrite to replace it"),
    ("read-only-output", "read-only", REGISTER + " --output-transform {d}/earlier.h5 --overwrite", 2,
     "--output-transform {d}/earlier.h5: is read-only"),
    ("model-save-on-an-image", None, TRAIN + " --file_model_save {d}/mr.nii.gz --output_dir {d}/new", 2,
     "--file_model_save {d}/mr.nii.gz: "),
    ("model-save-read-only", "read-only", TRAIN + " --file_model_save {d}/earlier.h5 --output_dir {d}/new", 2,
     "--file_model_save {d}/earlier.h5: "),
    ("train-over-a-training", None, TRAIN, 2, "--output_dir {d}/run: holds a training already"),
    ("two-trainings-one-folder", "lock", TRAIN + " --resume", 2, "--output_dir {d}/run: another training .* is writing"),
    ("resume-other-learning-rate", None, TRAIN + " --resume --learning_rate 0.5", 2,
     "--output_dir {d}/run: was trained with other settings \\(learning_rate"),
    ("resume-other-seed", None, TRAIN + " --resume --seed 7", 2, "--output_dir {d}/run: .*other settings \\(seed"),
    ("resume-other-minibatch", None, TRAIN + " --resume --minibatch_size 3", 2, "other settings \\(minibatch_size"),
    ("resume-without-checkpoint", "no-checkpoint", TRAIN + " --resume", 2,
     "--output_dir {d}/run: has no checkpoint.pt to resume"),
    # --- model files that mislead
    ("malicious-checkpoint", "evil-checkpoint", TRAIN + " --resume", 2,
     "{d}/run/checkpoint.pt: refused: .*GLOBAL.* it is not a LabelReg training checkpoint and must not be trusted"),
    ("one-header-byte", "one-header-byte", REGISTER.replace("model.pt", "edited.pt") + " --output-transform {d}/t.h5",
     2, "{d}/edited.pt: header or weights do not match the checksum"),
    # one row per bounded header field, each written with a valid checksum (what a careless tool might write)
    ("header-passes", "passes", CRAFTED, 2, "{d}/crafted.pt: header inference_passes = 1000000000 is out of range"),
    ("header-huge-shape", "huge-shape", CRAFTED, 2, "{d}/crafted.pt: header training_input_shape_kji = \\[100000, 30, 30\\] is out of range"),
    ("header-tiny-spacing", "tiny-spacing", CRAFTED, 2, "{d}/crafted.pt: header working_spacing_mm = 0.001 is out of range"),
    ("header-channels", "channels", CRAFTED, 2, "{d}/crafted.pt: header architecture num_channel_initial = 4096: allowed: 1 to 256"),
    ("header-network-type-in-header", "network-type-in-header", CRAFTED, 2, "{d}/crafted.pt: header architecture network_type = 'transformer': allowed: local"),
    ("header-levels", "levels", CRAFTED, 2, "{d}/crafted.pt: header architecture ddf_levels = \\[0, 9\\]: "),
    ("header-norm", "norm", CRAFTED, 2, "{d}/crafted.pt: header architecture norm = 'layer': allowed: "),
    ("header-unknown-architecture-key", "unknown-architecture-key", CRAFTED, 2, "{d}/crafted.pt: header architecture depth = 9: unknown"),
    # --- bad inputs that were accepted
    ("constant-us", "constant-us", REGISTER + " --output-transform {d}/t.h5", 2,
     "{d}/us.nii.gz: has no usable content: every voxel is 7"),
    ("zero-mr", "zero-mr", REGISTER + " --output-transform {d}/t.h5", 2,
     "{d}/mr.nii.gz: has no usable content: every voxel is 0"),
    ("3x3x3-us", "3x3x3-us", REGISTER + " --output-transform {d}/t.h5", 2, "{d}/us.nii.gz: is too small to register"),
    ("earlier-evaluation", None, "evaluate {data} --model {d}/model.pt --output {d}/run", 2,
     "--output {d}/run/metrics.csv: exists; pass --overwrite to replace it"),
    ("nan-us", "nan-us", REGISTER + " --output-transform {d}/t.h5", 2, "{d}/us.nii.gz: contains .* NaN"),
    ("label-on-another-grid", None,
     REGISTER + " --moving-label {d}/us_labels.nii.gz --warped-label {d}/o.nii.gz", 2,
     "{d}/us_labels.nii.gz: is not on the grid of the moving image"),
    ("negative-iterations", None, TRAIN + " --total_iterations -5 --output_dir {d}/new", 2,
     "total_iterations.*-5.*allowed"),
    ("deterministic-ture", "deterministic-ture", "train {d}/settings.ini --output_dir {d}/new", 2,
     "{d}/settings.ini.*deterministic.*ture"),
    ("inference-key-typo", "dir-sav", "register {d}/settings.ini", 2,
     "{d}/settings.ini: unknown key 'dir_sav' in section \\[Inference\\]"),
    ("evaluate-passes-0", None, "evaluate {data} --model {d}/model.pt --output {d}/eval --passes 0", 2,
     "--passes: '0' is not a whole number from 1 to 8"),
    # --- late errors and tracebacks
    ("read-only-output-folder", "read-only-folder", REGISTER + " --output-transform {d}/locked/t.h5", 2,
     "--output-transform {d}/locked/t.h5: .*read-only"),
    ("output-is-a-folder", "folder", REGISTER + " --output-transform {d}/folder.h5", 2, "is a folder, not a file"),
    ("parent-is-a-file", "a-file", REGISTER + " --output-transform {d}/afile/t.h5", 2,
     "{d}/afile/t.h5: .*afile is a file, not a folder"),
    ("pairs-missing", None, "register --pairs {d}/none.csv --model {d}/model.pt", 2, "{d}/none.csv: file not found"),
    ("pairs-binary", "csv-binary", "register --pairs {d}/pairs.csv --model {d}/model.pt", 2,
     "{d}/pairs.csv: is not a CSV text file"),
    ("pairs-bad-row", "csv-row", "register --pairs {d}/pairs.csv --model {d}/model.pt", 2,
     "{d}/pairs.csv: row 2: moving and fixed are both needed"),
    ("pairs-unknown-column", "csv-column", "register --pairs {d}/pairs.csv --model {d}/model.pt", 2,
     "{d}/pairs.csv: unknown column\\(s\\) segmentation"),
    ("cases-match-nothing", None, "evaluate {data} --model {d}/model.pt --output {d}/eval --cases nope", 2,
     "--cases: no case named nope"),
    ("bad-norm", None, TRAIN + " --norm layer --output_dir {d}/new", 2, "norm.*layer.*allowed"),
    ("bad-similarity", None, TRAIN + " --similarity_type mse --output_dir {d}/new", 2, "similarity_type.*mse.*allowed"),
    ("bad-network-type", "network-type", "train {d}/settings.ini --output_dir {d}/new", 2,
     "{d}/settings.ini.*network_type.*transformer.*allowed"),
    ("negative-learning-rate", None, TRAIN + " --learning_rate -1 --output_dir {d}/new", 2, "learning_rate.*-1"),
    ("minibatch-0", None, TRAIN + " --minibatch_size 0 --output_dir {d}/new", 2, "minibatch_size.*0"),
    ("evaluate-output-is-a-file", None, "evaluate {data} --model {d}/model.pt --output {d}/mr.nii.gz", 2,
     "--output {d}/mr.nii.gz: is a file, not a folder"),
    ("demo-output-is-a-file", None, "demo --model {d}/model.pt --output {d}/mr.nii.gz", 2,
     "--output {d}/mr.nii.gz: is a file, not a folder"),
    ("mirror-axis", None, REGISTER + " --output-transform {d}/t.h5 --mirror x", 2,
     "--mirror: 'x': give working-grid axes among i, j, k"),
    ("txt-warped-image", None, REGISTER + " --output-transform {d}/t.h5 --warped-image {d}/w.txt", 2,
     "--warped-image {d}/w.txt: unsupported file type '.txt'"),
    # ================= issue 25, items 4-11
    # --- 4: every option through the settings schema
    *[(f"glands-{flag.strip('-')}-{value}", None, GLANDS + f" {flag} {value}", 2, message) for flag, value, message in (
        ("--steps", "-5", "the command line: steps = -5: allowed: 1 to"),
        ("--samples-per-step", "0", "samples_per_step = 0: allowed: 2 to"),
        ("--crop-probability", "5", "crop_probability = 5.0: allowed: 0 to 1"),
        ("--phantom-pairs", "-1", "phantom_pairs = -1: allowed: 0 to"),
        ("--quality-dice-threshold", "7", "--quality-dice-threshold: '7' is not a number from 0 to 1"),
        ("--spacing-mm", "0", "spacing_mm = 0.0: allowed: 0.1 to 50 mm"),
        ("--learning-rate", "nan", "learning_rate = nan: must be a finite number"),
        ("--num-channel-initial", "0", "num_channel_initial = 0: allowed: 1 to 256"),
    )],
    ("empty-ddf-levels", None, TRAIN + " --ddf_levels [] --output_dir {d}/new", 2, "ddf_levels = \\[\\]: must name at least one"),
    ("empty-similarity-scales", None, TRAIN + " --similarity_scales [] --output_dir {d}/new", 2,
     "similarity_scales = \\[\\]: must name at least one"),
    ("minibatch-above-the-training-share", None, TRAIN + " --minibatch_size 6 --output_dir {d}/new", 2,
     "--minibatch_size: 6 pairs a step, but the training share holds 5 pairs"),
    # --- 5: resume checks what it resumes
    ("crossval-resume-other-folds", "split-2-folds", CROSSVAL + " --folds 3 --resume", 2,
     "--output {d}/cv: was made with 2 folds, seed 0 \\(split.json\\)"),
    ("crossval-resume-other-seed", "split-3-folds", CROSSVAL + " --folds 3 --seed 7 --resume", 2,
     "--output {d}/cv: was made with 3 folds, seed 0"),
    ("crossval-over-a-crossval", "split-3-folds", CROSSVAL + " --folds 3", 2, "--output {d}/cv: holds a cross-validation already"),
    ("resume-without-config-ini", "no-config-ini", TRAIN + " --resume", 2, "--output_dir {d}/run: has no config.ini"),
    ("resume-onto-another-model", "other-model", TRAIN + " --resume --file_model_save {d}/other.pt", 2,
     "--file_model_save {d}/other.pt: exists and was not written by the training in {d}/run"),
    # --- 6: every command's outputs protected
    ("evaluate-over-a-picture", "earlier-picture", "evaluate {data} --model {d}/model.pt --output {d}/eval", 2,
     "--output {d}/eval/phantom003.png: exists; pass --overwrite to replace it"),
    ("demo-into-a-training-folder", None, "demo --model {d}/model.pt --output {d}/run", 2,
     "--output {d}/run: holds files that the demo does not write \\(checkpoint.pt, config.ini"),
    # --- 7: the pairs CSV
    ("pairs-column-twice", "csv-column-twice", "register --pairs {d}/pairs.csv --model {d}/model.pt", 2,
     "{d}/pairs.csv: the header names column\\(s\\) moving twice"),
    ("pairs-row-longer-than-header", "csv-long-row", "register --pairs {d}/pairs.csv --model {d}/model.pt", 2,
     "{d}/pairs.csv: row 2: 4 values, but the header names 3 columns"),
    ("pairs-and-moving", "csv-row", "register --pairs {d}/pairs.csv --moving {d}/mr.nii.gz --model {d}/model.pt", 2,
     "--pairs {d}/pairs.csv: names the files of every pair; give --moving as a column of it instead"),
    ("pairs-missing-input", "csv-missing-input", "register --pairs {d}/pairs.csv --model {d}/model.pt", 2,
     "{d}/pairs.csv: row 2 fixed {d}/none.nii.gz: file not found"),
    ("pairs-single-row-names-its-row", "csv-one-constant-row", "register --pairs {d}/pairs.csv --model {d}/model.pt", 2,
     "{d}/pairs.csv: row 2: {d}/us7.nii.gz: has no usable content"),
    # --- 9: inputs that crashed
    ("rgb-nifti", "rgb-nifti", REGISTER.replace("mr.nii.gz", "rgb.nii.gz") + " --output-transform {d}/t.h5", 2,
     "{d}/rgb.nii.gz: is a colour or vector image \\(3 values a voxel\\)"),
    ("rgb-nrrd", "rgb-nrrd", REGISTER.replace("us.nii.gz", "rgb.nrrd") + " --output-transform {d}/t.h5", 2,
     "{d}/rgb.nrrd: is a colour or vector image"),
    ("self-link", "self-link", REGISTER.replace("mr.nii.gz", "loop.nii.gz") + " --output-transform {d}/t.h5", 2,
     "--moving {d}/loop.nii.gz: is a symbolic link that leads nowhere"),
    ("long-output-name", None, REGISTER + " --output-transform {d}/" + "a" * 250 + ".h5", 2,
     "has a name of 253 bytes, too long for its file system"),
    ("non-utf8-output-name", None, REGISTER + " --output-transform {d}/o\udcff.h5", 2,
     "has a name that is not UTF-8 text, which ITK cannot open"),
    ("float64-overflow", "float64-overflow", REGISTER.replace("mr.nii.gz", "big64.nii.gz") + " --output-transform {d}/t.h5",
     2, "{d}/big64.nii.gz: holds values up to .*, beyond the float32 range"),
    ("huge-header", "huge-header", REGISTER.replace("us.nii.gz", "huge.nhdr") + " --output-transform {d}/t.h5", 2,
     "{d}/huge.nhdr: is a 4000x4000x4000 image: reading it needs about 476.8 GiB"),
    ("gland-memory", "mr-150mm", REGISTER.replace("mr.nii.gz", "mr150.nii.gz") + " --output-transform {d}/t.h5", 2,
     "{d}/mr150.nii.gz: is too large to register here: .*the gland segmentation of each image's whole field of view"),
    # --- 10: no physical overlap
    ("no-physical-overlap", "far-us", REGISTER.replace("us.nii.gz", "far_us.nii.gz") + " --output-transform {d}/t.h5 --init physical",
     2, "{d}/mr.nii.gz: does not overlap {d}/far_us.nii.gz in space under the 'physical' initial alignment"),
    # --- 11: messages
    ("model-is-a-folder", None, REGISTER.replace("{d}/model.pt", "{d}/run") + " --output-transform {d}/t.h5", 2,
     "{d}/run: is a folder, not a model file"),
    ("model-is-a-fifo", "fifo", REGISTER.replace("model.pt", "fifo.pt") + " --output-transform {d}/t.h5", 2,
     "{d}/fifo.pt: is not a regular file \\(a FIFO, device or socket\\)"),
    ("data-dir-is-a-file", None, TRAIN.replace("{data}", "{d}/mr.nii.gz") + " --output_dir {d}/new", 2,
     "{d}/mr.nii.gz: is a file, not a folder; give the folder that holds moving_images/"),
    ("initial-model-is-a-gland-model", None, TRAIN + " --initial_model {glands} --output_dir {d}/new", 2,
     "is a 'gland-unet' model, not a registration network"),
    ("new-folder-existing-model-file", None, TRAIN + " --output_dir {d}/new --file_model_save {d}/model.pt", 2,
     "--file_model_save {d}/model.pt: exists; pass --overwrite to replace it"),
    ("truncated-initial-model-before-the-data", "truncated-model",
     TRAIN.replace("{data}", "{d}") + " --initial_model {d}/truncated.pt --output_dir {d}/new", 2,
     "{d}/truncated.pt: is truncated, damaged or not a model file"),
]  # fmt: skip


@pytest.mark.parametrize("name, setup, command, code, message", CASES, ids=[case[0] for case in CASES])
def test_a_bad_input_is_refused_in_one_line_and_changes_nothing(
    workspace, phantom_folder, name, setup, command, code, message
):
    d = workspace
    if setup:
        SETUPS[setup](d)
    if command.startswith("crossval"):
        _ini(d, "[Train]\ntotal_iterations = 1\n")
    before = snapshot(d, phantom_folder)
    argv = command.format(d=d, data=phantom_folder, glands=GLAND_MODEL).split()
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            exit_code = cli.main(argv)
        except SystemExit as error:  # argparse's refusal of a flag's value
            exit_code = error.code
    stderr = err.getvalue()
    assert exit_code == code, out.getvalue() + stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert lines and (lines[-1].startswith(f"labelreg {argv[0]}: error: ") or "usage:" in lines[0]), stderr
    assert re.search(message.format(d=re.escape(str(d))), lines[-1]), lines[-1]
    assert snapshot(d, phantom_folder) == before
    assert not (d / "pwned").exists()


def test_a_registration_this_machine_has_no_memory_for_is_refused_naming_the_size(workspace, monkeypatch):
    """The 512-cube US case, shrunk: the estimate (LabelRegLib/core/memory.py; its benchmark compares it with the
    measured peak) against a machine that has 0.5 GiB available."""
    monkeypatch.setattr("LabelRegLib.core.memory.available_ram_bytes", lambda: 2**29)
    d = workspace
    before = snapshot(d)
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        exit_code = cli.main(REGISTER.format(d=d).split() + ["--output-transform", str(d / "t.h5")])
    assert exit_code == 2
    assert f"labelreg register: error: {d}/us.nii.gz: is too large to register here: a " in err.getvalue()
    assert "GiB of memory and 0.5 GiB is available" in err.getvalue()
    assert snapshot(d) == before
