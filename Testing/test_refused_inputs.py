"""Inputs without usable content, model headers out of bounds, and options that would be silently ignored."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import run_labelreg
from LabelRegLib.errors import InputError, ModelFileError
from LabelRegLib.io import write_volume
from LabelRegLib.model_file import build_from_header, read_model_payload, save_model
from LabelRegLib.phantom import make_phantom_pair
from LabelRegLib.registration import Registrar
from LabelRegLib.volume import Volume, make_ijk_to_ras


@pytest.fixture(scope="module")
def registrar(tiny_model):
    return Registrar(tiny_model, "cpu")


def test_images_without_usable_content_are_refused(registrar):
    pair = make_phantom_pair(1001)
    constant = pair.fixed_image.with_array(np.full(pair.fixed_image.shape, 7.0, np.float32))
    with pytest.raises(InputError, match="has no usable content: every voxel is 7"):
        registrar.register(pair.moving_image, constant)
    zeros = pair.moving_image.with_array(np.zeros(pair.moving_image.shape, np.float32))
    with pytest.raises(InputError, match="has no usable content: every voxel is 0"):
        registrar.register(zeros, pair.fixed_image)
    tiny = Volume(np.random.default_rng(0).random((3, 3, 3)).astype(np.float32), make_ijk_to_ras([1.0] * 3), "tiny US")
    with pytest.raises(
        InputError, match="tiny US: is too small to register: .* the network needs at least 16 along each axis"
    ):
        registrar.register(pair.moving_image, tiny)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"inference_passes": 10**9}, "header inference_passes = 1000000000 is out of range"),
        ({"working_spacing_mm": 0.001}, "header working_spacing_mm = 0.001 is out of range"),
        ({"training_input_shape_kji": [100000, 30, 30]}, "header training_input_shape_kji = .* is out of range"),
        (
            {"architecture": {"num_channel_initial": 4096}},
            "header architecture num_channel_initial = 4096: allowed: 1 to 256",
        ),
        (
            {"architecture": {"network_type": "transformer"}},
            "header architecture network_type = 'transformer': allowed: local",
        ),
        ({"architecture": {"depth": 9}}, "header architecture depth = 9: unknown"),
    ],
)
def test_a_model_header_out_of_bounds_is_refused_before_anything_is_built(tiny_model, tmp_path, change, message):
    header, state = read_model_payload(tiny_model)
    network = build_from_header(header)
    network.load_state_dict(state)
    header = {**header, **change, "architecture": {**header["architecture"], **change.get("architecture", {})}}
    save_model(tmp_path / "crafted.pt", network, header)
    with pytest.raises(ModelFileError, match=f"crafted.pt: {message}"):
        read_model_payload(tmp_path / "crafted.pt")


def test_labels_on_another_grid_and_options_that_would_be_ignored_are_refused(phantom_folder, tiny_model, tmp_path):
    pair = make_phantom_pair(1001)
    write_volume(pair.moving_image, tmp_path / "mr.nii.gz")
    write_volume(pair.fixed_image, tmp_path / "us.nii.gz")
    write_volume(pair.fixed_labels, tmp_path / "us_labels.nii.gz")  # the US grid, not the MR's
    run = run_labelreg(
        "register",
        "--moving",
        tmp_path / "mr.nii.gz",
        "--fixed",
        tmp_path / "us.nii.gz",
        "--model",
        tiny_model,
        "--moving-label",
        tmp_path / "us_labels.nii.gz",
        "--warped-label",
        tmp_path / "out.nii.gz",
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"{tmp_path}/us_labels.nii.gz: is not on the grid of the moving image" in run.stderr
    assert not (tmp_path / "out.nii.gz").exists()
    run = run_labelreg(
        "evaluate", phantom_folder, "--model", tiny_model, "--output", tmp_path / "eval", "--passes", "0"
    )
    assert run.returncode == 2 and "'0' is not a whole number from 1 to 8" in run.stderr
    run = run_labelreg(
        "evaluate", phantom_folder, "--model", tiny_model, "--output", tmp_path / "eval", "--cases", "phantom000,nope"
    )
    assert run.returncode == 2 and f"--cases: no case named nope in {phantom_folder}" in run.stderr
