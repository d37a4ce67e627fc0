"""The settings schema: one definition per setting, every source of settings generated from it and checked."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
from helpers import run_labelreg
from LabelRegLib.core.config import (
    TrainConfig,
    config_from,
    sections,
    train_config_from_ini,
    training_record,
    write_ini,
)
from LabelRegLib.core.errors import InputError

# The original tutorial's config_demo.ini (YipengHu/label-reg): its sections, keys and "key: value" style.
TUTORIAL_INI = """[Data]
dir_moving_image: {data}/train/mr_images
dir_fixed_image: {data}/train/us_images
dir_moving_label: {data}/train/mr_labels
dir_fixed_label: {data}/train/us_labels


[Network]
network_type: local


[Loss]
similarity_type: dice
similarity_scales: [0, 1, 2, 4, 8, 16]
regulariser_type: bending
regulariser_weight: 0.5


[Train]
total_iterations: 10000
minibatch_size: 4
learning_rate: 1e-5
freq_info_print: 100
freq_model_save: 500
file_model_save: {data}/model.ckpt


[Inference]
file_model_saved: {data}/model.ckpt
dir_moving_image: {data}/test/mr_images
dir_fixed_image: {data}/test/us_images
dir_save: {data}/

# for test only
dir_moving_label: {data}/test/mr_labels
dir_fixed_label: {data}/test/us_labels
"""


def test_the_tutorials_config_demo_ini_reads_as_it_meant(tmp_path):
    ini = tmp_path / "config_demo.ini"
    ini.write_text(TUTORIAL_INI.format(data=tmp_path))
    config = train_config_from_ini(ini)
    assert (
        config.dir_moving_image == f"{tmp_path}/train/mr_images"
        and config.dir_fixed_label == f"{tmp_path}/train/us_labels"
    )
    assert (config.network_type, config.similarity_type, config.similarity_scales, config.regulariser_type) == (
        "local",
        "dice",
        [0, 1, 2, 4, 8, 16],
        "bending",
    )
    assert (config.regulariser_weight, config.total_iterations, config.minibatch_size, config.learning_rate) == (
        0.5,
        10000,
        4,
        1e-5,
    )
    assert (config.freq_info_print, config.freq_model_save, config.file_model_save) == (
        100,
        500,
        f"{tmp_path}/model.ckpt",
    )


def test_help_and_the_ini_reader_know_exactly_the_settings():
    names = {f.name for f in fields(TrainConfig)}
    assert {key for keys in sections().values() for key in keys} == names
    run = run_labelreg("train", "--help")
    flags = set(re.findall(r"--([a-z0-9_]+) V", run.stdout))
    assert flags == names, sorted(flags ^ names)
    assert "[Loss] label similarity (dice, jaccard, cross-entropy, mean-squared; default dice)" in " ".join(
        run.stdout.split()
    )


def test_written_settings_read_back_the_same(tmp_path):
    config = TrainConfig(
        norm="instance",
        ddf_levels=[0, 2],
        deterministic=True,
        flip_axes="j",
        learning_rate_milestones=[10, 20],
        working_spacing=2.5,
    )
    write_ini(config, tmp_path / "config.ini")
    assert train_config_from_ini(tmp_path / "config.ini") == config


@pytest.mark.parametrize(
    "section, line, message",
    [
        ("Train", "label_sampling = al", "label_sampling = 'al': allowed: one, all"),
        ("Train", "deterministic = ture", "deterministic = 'ture': cannot be read; allowed: true or false"),
        ("Train", "total_iterations = -5", r"total_iterations = -5: allowed: 1 to 1e\+08 steps"),
        ("Network", "network_type = loca", "network_type = 'loca': allowed: local, global, composite"),
        (
            "Network",
            "num_channel_initial = 4.5",
            "num_channel_initial = '4.5': cannot be read; allowed: a whole number",
        ),
        ("Loss", "similarity_scales = [0, 1.5]", r"similarity_scales = \[0, 1.5\]: must be a list of whole numbers"),
        ("Loss", "regulariser_weight = nan", "regulariser_weight = nan: must be a finite number"),
        ("Train", "learning_rate = -1e-4", "learning_rate = -0.0001: allowed: 0 to 1"),
        ("Train", "flip_axes = x", "flip_axes = 'x': allowed: the letters i, j and k"),
        ("Train", "device = gpu", "device = 'gpu': allowed: auto, cpu, cuda, mps or cuda:N"),
        ("Train", "validation_fraction = 1.5", "validation_fraction = 1.5: allowed: 0 to 0.9"),
        ("Train", "total_iteration = 5", r"unknown key 'total_iteration' in section \[Train\]"),
        (
            "Trian",
            "total_iterations = 5",
            r"unknown section \[Trian\]; allowed: \[Data\], \[Network\], \[Loss\], \[Train\], \[Inference\]",
        ),
    ],
)
def test_a_bad_setting_in_a_file_is_refused_naming_the_file_key_value_and_what_is_allowed(
    tmp_path, section, line, message
):
    ini = tmp_path / "settings.ini"
    ini.write_text(f"[{section}]\n{line}\n")
    with pytest.raises(InputError, match=f"^{re.escape(str(ini))}: {message}"):
        train_config_from_ini(ini)


def test_a_bad_flag_is_refused_naming_the_flag(tmp_path):
    with pytest.raises(InputError, match="the command line: minibatch_size = 0: allowed: 1 to 1024"):
        config_from(None, {"minibatch_size": "0"})
    with pytest.raises(InputError, match="the command line: seed = 'abc': cannot be read; allowed: a whole number"):
        config_from(None, {"seed": "abc"})
    assert config_from(None, {"device": "cuda:1", "norm": "instance"}).device == "cuda:1"


def test_the_command_line_says_what_is_wrong_in_one_line(tmp_path):
    run = run_labelreg("train", "--data_dir", tmp_path, "--norm", "batchnorm")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert (
        run.stderr.strip()
        == "labelreg train: error: the command line: norm = 'batchnorm': allowed: batch, instance, none"
    )


def test_a_typo_in_an_inference_key_is_refused(tmp_path):
    ini = tmp_path / "infer.ini"
    ini.write_text("[Inference]\nfile_model_saved = m.pt\ndir_sav = out\n")
    run = run_labelreg("register", ini)
    assert run.returncode == 2 and "unknown key 'dir_sav' in section [Inference]" in run.stderr


def test_the_model_header_records_every_setting_that_shapes_the_model():
    record = training_record(TrainConfig())
    assert {"network_type", "norm", "similarity_scales", "learning_rate", "corner_scale", "seed"} <= set(record)
    assert not {"data_dir", "output_dir", "file_model_save", "device", "freq_model_save"} & set(record)
