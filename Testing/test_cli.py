"""The labelreg command: register, evaluate, ini compatibility, errors."""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import run_labelreg, with_empty_border
from LabelRegLib.core.io import read_labels, read_volume, write_volume
from LabelRegLib.core.metrics import dice
from LabelRegLib.core.sitk_geometry import from_sitk_image, to_sitk_image
from LabelRegLib.core.transform_io import read_displacement
from LabelRegLib.registration.registrar import Registrar, warp_volume


def test_register_writes_a_transform_that_simpleitk_applies_identically(phantom_folder, tiny_model, tmp_path):
    moving = phantom_folder / "moving_images" / "phantom000.nii.gz"
    fixed = phantom_folder / "fixed_images" / "phantom000.nii.gz"
    labels = phantom_folder / "moving_labels" / "phantom000.nii.gz"
    run = run_labelreg(
        "register",
        "--moving",
        moving,
        "--fixed",
        fixed,
        "--model",
        tiny_model,
        "--output-transform",
        tmp_path / "t.h5",
        "--warped-image",
        tmp_path / "warped.nrrd",
        "--moving-label",
        labels,
        "--warped-label",
        tmp_path / "labels.nii.gz",
    )
    assert run.returncode == 0, run.stderr
    warped = read_volume(tmp_path / "warped.nrrd")
    fixed_volume = read_volume(fixed)
    assert warped.same_geometry(fixed_volume)
    # SimpleITK with the written transform reproduces the warped image
    transform = sitk.ReadTransform(str(tmp_path / "t.h5"))
    moving_volume = read_volume(moving)
    resampled = sitk.Resample(
        to_sitk_image(moving_volume.array, moving_volume.ijk_to_ras),
        to_sitk_image(fixed_volume.array, fixed_volume.ijk_to_ras),
        transform,
        sitk.sitkLinear,
    )
    assert np.abs(from_sitk_image(resampled).array - warped.array).max() < 1e-2
    # the in-process registration gives the same field
    field = read_displacement(tmp_path / "t.h5")
    result = Registrar(tiny_model, "cpu").register(moving_volume, fixed_volume)
    assert np.abs(field.array - result.displacement.array).max() < 1e-4
    warped_labels = read_labels(tmp_path / "labels.nii.gz")
    assert len(warped_labels) == len(read_labels(labels))
    assert dice(warped_labels[0].array, warp_volume(read_labels(labels)[0], result.displacement).array) == 1.0


def test_test_time_mirroring_defaults_to_the_axes_the_model_was_trained_mirrored_along(tiny_model):
    """The bundled model was trained on pairs mirrored along j: it is mirrored along j unless told otherwise; the tiny
    model, trained without mirroring, is not; ``--mirror none`` turns it off."""
    from LabelRegLib.cli import build_parser

    assert Registrar(None, "cpu", gland_model=False).mirror_axes == "j"
    assert Registrar(None, "cpu", "", gland_model=False).mirror_axes == ""
    assert Registrar(tiny_model, "cpu", gland_model=False).mirror_axes == ""
    for flag, axes in (([], None), (["--mirror", "none"], ""), (["--mirror", "ij"], "ij")):
        assert (
            build_parser().parse_args(["register", "--moving", "m.nii.gz", "--fixed", "f.nii.gz", *flag]).mirror == axes
        )


def test_register_many_pairs_from_csv(phantom_folder, tiny_model, tmp_path):
    table = tmp_path / "pairs.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["moving", "fixed", "output_transform"])
        for name in ("phantom001", "phantom002"):
            writer.writerow(
                [
                    phantom_folder / "moving_images" / f"{name}.nii.gz",
                    phantom_folder / "fixed_images" / f"{name}.nii.gz",
                    tmp_path / f"{name}.nii.gz",
                ]
            )
    run = run_labelreg("register", "--pairs", table, "--model", tiny_model)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count(" s on cpu") == 2
    for name in ("phantom001", "phantom002"):
        assert read_displacement(tmp_path / f"{name}.nii.gz").array.shape[-1] == 3
    # nothing wrong with the inputs; the tiny model's registrations may be flagged by the self-check, rightly
    assert all("self-check" in line for line in run.stderr.splitlines() if "warning" in line)


def test_register_warns_of_a_us_larger_than_the_training_volumes_and_still_writes_the_transform(
    phantom_folder, tiny_model, tmp_path
):
    fixed = read_volume(phantom_folder / "fixed_images" / "phantom000.nii.gz")
    write_volume(with_empty_border(fixed, 4), tmp_path / "wide_us.nii.gz")
    run = run_labelreg(
        "register",
        "--moving",
        phantom_folder / "moving_images" / "phantom000.nii.gz",
        "--fixed",
        tmp_path / "wide_us.nii.gz",
        "--model",
        tiny_model,
        "--output-transform",
        tmp_path / "t.h5",
    )
    assert run.returncode == 0, run.stderr
    assert (
        f"labelreg register: warning: {tmp_path}/wide_us.nii.gz: its field of view is 54x63x58 voxels at the model's working spacing, larger than the 46x55x50"
        in run.stderr
    )
    assert (tmp_path / "t.h5").is_file()


def test_register_bad_input_names_the_file_and_writes_nothing(phantom_folder, tiny_model, tmp_path):
    run = run_labelreg(
        "register",
        "--moving",
        tmp_path / "absent.nii.gz",
        "--fixed",
        phantom_folder / "fixed_images" / "phantom000.nii.gz",
        "--model",
        tiny_model,
        "--output-transform",
        tmp_path / "t.h5",
    )
    assert run.returncode == 2
    assert "absent.nii.gz: file not found" in run.stderr
    assert not (tmp_path / "t.h5").exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    run = run_labelreg(
        "register",
        "--moving",
        phantom_folder / "moving_images" / "phantom000.nii.gz",
        "--fixed",
        phantom_folder / "fixed_images" / "phantom000.nii.gz",
        "--model",
        junk,
        "--output-transform",
        tmp_path / "t.h5",
    )
    assert run.returncode == 2 and "junk.pt: is truncated, damaged or not a model file" in run.stderr
    assert list(tmp_path.iterdir()) == [junk]


def test_evaluate_writes_metrics_summary_and_pictures(phantom_folder, tiny_model, tmp_path):
    run = run_labelreg(
        "evaluate",
        phantom_folder,
        "--model",
        tiny_model,
        "--output",
        tmp_path / "eval",
        "--cases",
        "phantom000,phantom001",
    )
    assert run.returncode == 0, run.stderr
    with open(tmp_path / "eval" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert (
        list(rows[0])
        == (
            "case landmark dice_before dice_after tre_mm_before tre_mm_after folding runtime_s "
            "quality_dice quality_centroid_mm quality_flag "  # the self-check of the bundled gland model
            "gland_dice_mr gland_dice_us gland_centroid_mm_mr gland_centroid_mm_us"  # its glands against the true ones
        ).split()
    )
    assert {row["case"] for row in rows} == {"phantom000", "phantom001"}
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    for key in (
        "n_pairs",
        "gland_dice_median",
        "gland_dice_before_median",
        "tre_mm_median",
        "tre_mm_before_median",
        "folding_max",
        "runtime_s_median",
        "spearman_quality_dice_vs_tre",
        "spearman_quality_centroid_vs_tre",
    ):
        assert key in summary
    assert summary["n_pairs"] == 2
    assert sorted(p.name for p in (tmp_path / "eval").glob("*.png")) == ["phantom000.png", "phantom001.png"]


ORIGINAL_INI = """
[Data]
dir_moving_image = {data}/moving_images
dir_fixed_image = {data}/fixed_images
dir_moving_label = {data}/moving_labels
dir_fixed_label = {data}/fixed_labels

[Network]
network_type = local

[Loss]
similarity_type = dice
similarity_scales = [0, 1, 2, 4, 8, 16]
regulariser_type = bending
regulariser_weight = 0.5

[Train]
total_iterations = 2
minibatch_size = 2
learning_rate = 1e-5
freq_info_print = 1
freq_model_save = 500
file_model_save = {out}/model.pt
output_dir = {out}
num_channel_initial = 4

[Inference]
file_model_saved = {out}/model.pt
dir_moving_image = {data}/moving_images
dir_fixed_image = {data}/fixed_images
dir_save = {out}/inference

# for test only
dir_moving_label = {data}/moving_labels
dir_fixed_label = {data}/fixed_labels
"""


def test_original_ini_trains_and_infers(phantom_folder, tmp_path):
    ini = tmp_path / "config_demo.ini"
    ini.write_text(ORIGINAL_INI.format(data=phantom_folder, out=tmp_path / "run"))
    run = run_labelreg("train", ini)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "run" / "model.pt").is_file()
    resolved = (tmp_path / "run" / "config.ini").read_text()
    assert "similarity_scales = [0, 1, 2, 4, 8, 16]" in resolved and "regulariser_weight = 0.5" in resolved
    run = run_labelreg("infer", ini)
    assert run.returncode == 0, run.stderr
    outputs = sorted(p.name for p in (tmp_path / "run" / "inference").iterdir())
    assert (
        "phantom000_ddf.nii.gz" in outputs
        and "phantom000_warped_image.nii.gz" in outputs
        and "phantom000_warped_label.nii.gz" in outputs
    )


def test_flags_override_ini_and_unknown_keys_are_named(phantom_folder, tmp_path):
    from LabelRegLib.core.config import train_config_from_ini
    from LabelRegLib.core.errors import InputError

    ini = tmp_path / "c.ini"
    ini.write_text(ORIGINAL_INI.format(data=phantom_folder, out=tmp_path / "run"))
    config = train_config_from_ini(ini)
    assert (
        config.similarity_scales == [0, 1, 2, 4, 8, 16]
        and config.learning_rate == 1e-5
        and config.total_iterations == 2
    )
    ini.write_text("[Train]\ntotal_iteration: 5\n")
    with pytest.raises(InputError, match=r"c\.ini: unknown key 'total_iteration' in section \[Train\]"):
        train_config_from_ini(ini)
    run = run_labelreg("train", "--help")
    for flag in (
        "--similarity_scales",
        "--regulariser_weight",
        "--validation_fraction",
        "--working_spacing",
        "--initial_alignment",
        "--seed",
        "--device",
        "--resume",
        "--progress-json",
    ):
        assert flag in run.stdout
