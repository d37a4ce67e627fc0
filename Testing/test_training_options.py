"""Training options beyond the original: shifts, mirroring, gamma, fine-tuning from a model file, weight averages
(moving and stochastic), a stepped learning rate."""

import numpy as np
import pytest
import torch
from helpers import tiny_trainer, train_tiny_model
from LabelRegLib.core.config import TrainConfig
from LabelRegLib.core.errors import InputError, ModelFileError
from LabelRegLib.nets.model_file import read_model_payload
from LabelRegLib.training.trainer import Trainer, learning_rate


def _loaded_trainer(data_dir, **settings) -> Trainer:
    return Trainer(TrainConfig(data_dir=str(data_dir), num_channel_initial=4, **settings))


def test_a_mirrored_pair_mirrors_both_images_and_every_label_together(phantom_folder):
    trainer = _loaded_trainer(phantom_folder, corner_scale=0.0)
    case = trainer.data.train_idx[0]
    landmarks = list(range(len(trainer.data.pairs[case].moving_labels)))
    plain = {"thetas": None, "flip_dims": [], "gammas": None}
    moving, fixed = trainer.data.sample(case, landmarks, plain)
    flipped_moving, flipped_fixed = trainer.data.sample(case, landmarks, {**plain, "flip_dims": [3]})
    assert torch.equal(flipped_moving, moving.flip(3)) and torch.equal(flipped_fixed, fixed.flip(3))
    # the same correspondence: each label keeps its overlap with its partner after mirroring
    for n in range(1, moving.shape[1]):
        assert float((flipped_moving[0, n] * flipped_fixed[0, n]).sum()) == pytest.approx(
            float((moving[0, n] * fixed[0, n]).sum())
        )


def test_gamma_changes_image_contrast_but_not_labels_or_range(phantom_folder):
    trainer = _loaded_trainer(phantom_folder, corner_scale=0.0)
    case = trainer.data.train_idx[0]
    plain = {"thetas": None, "flip_dims": [], "gammas": None}
    moving, fixed = trainer.data.sample(case, [0], plain)
    gamma_moving, gamma_fixed = trainer.data.sample(case, [0], {**plain, "gammas": (0.5, 2.0)})
    assert torch.equal(gamma_moving[:, 1:], moving[:, 1:]) and torch.equal(gamma_fixed[:, 1:], fixed[:, 1:])
    assert torch.allclose(gamma_moving[:, 0], moving[:, 0] ** 0.5) and torch.allclose(
        gamma_fixed[:, 0], fixed[:, 0] ** 2.0
    )
    assert 0 <= float(gamma_moving[:, 0].min()) and float(gamma_moving[:, 0].max()) <= 1


def test_augmentation_draws_only_what_is_switched_on(phantom_folder):
    trainer = _loaded_trainer(phantom_folder, corner_scale=0.0, flip_axes="ij")
    drawn = trainer.augmentation.draw([trainer.data.train_idx[0]] * 64, trainer.data, torch.Generator().manual_seed(0))
    assert all(a["thetas"] is None and a["gammas"] is None for a in drawn)
    assert {tuple(a["flip_dims"]) for a in drawn} == {
        (),
        (4,),
        (3,),
        (4, 3),
    }  # i -> dim 4, j -> dim 3, each half the time


@pytest.mark.parametrize("option, side", [("translation_mm", 0), ("fixed_translation_mm", 1)])
def test_a_translation_shifts_only_its_side_within_the_range_in_mm(phantom_folder, option, side):
    trainer = _loaded_trainer(phantom_folder, corner_scale=0.0, **{option: 5.0})
    case = trainer.data.train_idx[0]
    drawn = trainer.augmentation.draw([case] * 64, trainer.data, torch.Generator().manual_seed(0))
    identity = torch.eye(3, 4)
    assert all(
        torch.equal(a["thetas"][1 - side], identity) and torch.equal(a["thetas"][side][:, :3], identity[:, :3])
        for a in drawn
    )
    shifts_mm = torch.stack([a["thetas"][side][:, 3] for a in drawn]).double() * trainer.data.normalised_unit_mm(case)
    assert float(shifts_mm.abs().max()) <= 5.0 and float(shifts_mm.abs().max()) > 4.0
    # one normalised unit is half the training grid's extent: the phantom grid's spacing times (size - 1) / 2
    spacing = float(np.linalg.norm(trainer.data.pairs[case].ijk_to_ras[:3, 0]))
    assert float(trainer.data.normalised_unit_mm(case)[0]) == pytest.approx(
        spacing * (trainer.data.train_shape[2] - 1) / 2
    )


def test_with_both_translations_on_each_side_gets_its_own_shift(phantom_folder):
    trainer = _loaded_trainer(phantom_folder, corner_scale=0.0, translation_mm=5.0, fixed_translation_mm=5.0)
    drawn = trainer.augmentation.draw([trainer.data.train_idx[0]] * 8, trainer.data, torch.Generator().manual_seed(0))
    moving_shifts, fixed_shifts = (torch.stack([a["thetas"][side][:, 3] for a in drawn]) for side in (0, 1))
    assert (
        bool((moving_shifts != 0).all())
        and bool((fixed_shifts != 0).all())
        and not torch.equal(moving_shifts, fixed_shifts)
    )


def test_an_unknown_flip_axis_is_refused_by_name():
    with pytest.raises(InputError, match="flip_axes = 'jx': allowed: the letters i, j and k"):
        Trainer(TrainConfig(flip_axes="jx"))


def test_fine_tuning_starts_from_the_initial_model_weights(phantom_folder, tmp_path):
    start = train_tiny_model(phantom_folder, tmp_path / "start", steps=2, norm="instance")
    # learning rate 0 (and no batch statistics): the run must end exactly where it started, weight average included
    tuned = train_tiny_model(
        phantom_folder,
        tmp_path / "tuned",
        steps=2,
        norm="instance",
        initial_model=str(start),
        learning_rate=0.0,
        ema_decay=0.9,
    )
    before, after = read_model_payload(start)[1], read_model_payload(tuned)[1]
    assert before.keys() == after.keys()
    for name in before:
        assert torch.equal(before[name], after[name]), name
    training = read_model_payload(tuned)[0]["training"]
    assert training["initial_model"] == str(start)
    assert training["initial_model_training"] == read_model_payload(start)[0]["training"]  # the recipe of both stages


def test_an_initial_model_of_another_architecture_is_refused_naming_the_file(phantom_folder, tmp_path):
    start = train_tiny_model(phantom_folder, tmp_path / "start", steps=1)
    with pytest.raises(ModelFileError, match="start.*architecture"):
        train_tiny_model(phantom_folder, tmp_path / "wider", steps=1, initial_model=str(start), num_channel_initial=8)
    assert not (tmp_path / "wider" / "model.pt").exists()


def test_the_saved_model_is_the_weight_average(phantom_folder, tmp_path):
    plain = train_tiny_model(phantom_folder, tmp_path / "plain", steps=3, learning_rate=1e-2, seed=3)
    averaged = train_tiny_model(
        phantom_folder, tmp_path / "averaged", steps=3, learning_rate=1e-2, seed=3, ema_decay=0.5, model_float16=True
    )
    plain_weights, averaged_weights = read_model_payload(plain)[1], read_model_payload(averaged)[1]
    assert any(
        not torch.equal(plain_weights[name].half(), averaged_weights[name])
        for name in plain_weights
        if plain_weights[name].is_floating_point()
    )
    header = read_model_payload(averaged)[0]
    assert header["training"]["ema_decay"] == 0.5
    assert (
        header["storage"] == "float16" and averaged_weights["encoder.down.0.conv0.conv.weight"].dtype == torch.float16
    )


def test_the_saved_model_is_the_equal_weight_mean_of_the_stochastic_weight_average_snapshots(phantom_folder, tmp_path):
    settings = dict(learning_rate=1e-2, seed=3, norm="instance")
    # snapshots at steps 2, 4 and 6: the networks that runs of 2, 4 and 6 steps save
    snapshots = [
        read_model_payload(train_tiny_model(phantom_folder, tmp_path / f"plain{steps}", steps=steps, **settings))[1]
        for steps in (2, 4, 6)
    ]
    averaged = train_tiny_model(phantom_folder, tmp_path / "swa", steps=7, swa_start=2, swa_every=2, **settings)
    weights = read_model_payload(averaged)[1]
    for name in weights:
        assert torch.allclose(weights[name], sum(s[name] for s in snapshots) / 3, rtol=1e-5, atol=1e-7), name
    training = read_model_payload(averaged)[0]["training"]
    assert (training["swa_start"], training["swa_every"], training["swa_snapshots"]) == (2, 2, 3)
    with pytest.raises(InputError, match="swa_every = 0: allowed: 1 to"):
        Trainer(TrainConfig(swa_start=10, swa_every=0))


def test_the_learning_rate_drops_by_the_decay_after_each_milestone_and_the_optimizer_uses_it(phantom_folder, tmp_path):
    schedule = TrainConfig(learning_rate=1e-3, learning_rate_milestones=[2, 5], learning_rate_decay=0.5)
    assert [learning_rate(schedule, step) for step in range(7)] == pytest.approx(
        [1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4]
    )

    trainer = tiny_trainer(
        phantom_folder,
        tmp_path,
        steps=3,
        minibatch_size=1,
        learning_rate=1e-3,
        learning_rate_milestones=[2],
        learning_rate_decay=0.5,
    )
    header = read_model_payload(trainer.run())[0]
    assert [group["lr"] for group in trainer.optimizer.param_groups] == [5e-4]  # the third step ran at the decayed rate
    assert header["training"]["learning_rate_milestones"] == [2] and header["training"]["learning_rate_decay"] == 0.5


def test_the_segmentation_head_reads_the_localnet_features_on_the_fixed_grid():
    from LabelRegLib.nets.networks import GlobalNet, LocalNet
    from LabelRegLib.nets.segmentation_head import GlandSegmentationHead

    network = LocalNet(num_channel_initial=4, norm="instance")
    head = GlandSegmentationHead(network)
    moving, fixed = torch.rand(2, 1, 30, 25, 21), torch.rand(2, 1, 19, 27, 23)  # padded inside the network to 32^3
    with torch.no_grad():
        network(moving, fixed)
        probabilities = head(fixed.shape[2:])
    assert (
        probabilities.shape == (2, 2, 19, 27, 23)
        and 0 <= float(probabilities.min())
        and float(probabilities.max()) <= 1
    )
    with pytest.raises(ValueError, match="LocalNet with DDF level 0"):
        GlandSegmentationHead(GlobalNet(num_channel_initial=4))
    with pytest.raises(ValueError, match="LocalNet with DDF level 0"):
        GlandSegmentationHead(LocalNet(num_channel_initial=4, ddf_levels=[1, 2]))


def test_the_segmentation_task_learns_but_stays_out_of_the_model_file(phantom_folder, tmp_path):
    model = train_tiny_model(
        phantom_folder,
        tmp_path / "run",
        steps=30,
        learning_rate=3e-3,
        norm="instance",
        label_sampling="all",
        segmentation_weight=1.0,
        freq_info_print=1,
    )
    plain = train_tiny_model(phantom_folder, tmp_path / "plain", steps=1, norm="instance")
    assert read_model_payload(model)[1].keys() == read_model_payload(plain)[1].keys()  # the registration network only
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["segmenter"]
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    rows = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    losses = [float(row["segmentation"]) for row in rows if row["segmentation"]]  # the step-0 validation row has none
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1, losses
