"""Gland segmentation, the glands alignment and the quality score (no shared data needed)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import run_labelreg
from LabelRegLib.core.errors import InputError, ModelFileError
from LabelRegLib.core.metrics import spearman
from LabelRegLib.core.spatial import resample_volume
from LabelRegLib.core.volume import Volume, resampled_geometry
from LabelRegLib.data.phantom import _rotation, make_phantom_pair
from LabelRegLib.registration.gland_alignment import align_glands
from LabelRegLib.registration.glands import Gland, GlandSegmenter, anti_aliased
from LabelRegLib.registration.quality import quality_score
from LabelRegLib.registration.registrar import Registrar


def _coarse_gland(label: Volume, spacing_mm: float = 3.5) -> Gland:
    """A true gland label as a predicted one: on a coarse grid over its field of view (with a margin)."""
    padded = label.padded(4)
    return Gland(resample_volume(padded, *resampled_geometry(padded.shape, padded.ijk_to_ras, spacing_mm)))


def _rigid(angles_deg, translation_mm, center) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = _rotation(np.deg2rad(angles_deg))
    matrix[:3, 3] = center + np.asarray(translation_mm) - matrix[:3, :3] @ center
    return matrix


@pytest.mark.parametrize("seed", [0, 3])
def test_the_glands_alignment_recovers_a_known_rotation_and_translation(seed):
    fixed = _coarse_gland(make_phantom_pair(seed).fixed_labels[0])
    center = fixed.centroid_ras
    true = _rigid([6.0, -4.0, 10.0], [7.0, -5.0, 3.0], center)  # fixed RAS -> moving RAS
    grid = fixed.probability
    moving = Gland(resample_volume(grid, grid.shape, true @ grid.ijk_to_ras, fixed_to_moving_ras=np.linalg.inv(true)))

    found = align_glands(moving, fixed, "rigid")

    relative = found[:3, :3] @ true[:3, :3].T
    angle_deg = np.degrees(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1, 1)))
    assert angle_deg <= 2.0
    inside = center + np.array([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0], [0, 0, 0]])  # points within the gland
    errors_mm = np.linalg.norm(
        inside @ found[:3, :3].T + found[:3, 3] - (inside @ true[:3, :3].T + true[:3, 3]), axis=1
    )
    assert errors_mm.max() <= 1.0
    shift = align_glands(moving, fixed, "translation")
    assert np.allclose(shift[:3, 3], moving.centroid_ras - center) and np.allclose(shift[:3, :3], np.eye(3))


def test_the_quality_score_is_higher_under_the_true_deformation_than_under_a_wrong_one(phantom):
    moving, fixed = _coarse_gland(phantom.moving_labels[0]), _coarse_gland(phantom.fixed_labels[0])
    wrong = phantom.true_displacement.with_array(
        phantom.true_displacement.array + np.array([8.0, -6.0, 5.0], np.float32)
    )

    right_score = quality_score(moving, fixed, phantom.true_displacement, threshold=0.8)
    wrong_score = quality_score(moving, fixed, wrong, threshold=0.8)

    assert right_score.dice > 0.9 and right_score.centroid_mm < 1.5
    assert wrong_score.dice < right_score.dice - 0.2 and wrong_score.centroid_mm > 8.0
    assert not right_score.flagged and wrong_score.flagged
    assert "check this registration" in wrong_score.text()


def test_a_missing_gland_scores_zero_and_is_flagged(phantom):
    fixed = _coarse_gland(phantom.fixed_labels[0])
    empty = Gland(fixed.probability.with_array(np.zeros_like(fixed.probability.array)))
    score = quality_score(empty, fixed, phantom.true_displacement, threshold=0.5)
    assert score.dice == 0.0 and np.isnan(score.centroid_mm) and score.flagged


def test_a_gland_not_found_is_flagged_also_by_a_model_without_a_threshold(phantom):
    """Issue 25, 10: "Dice 0.00, centroids nan mm" was not flagged when the gland model records no threshold."""
    fixed = _coarse_gland(phantom.fixed_labels[0])
    empty = Gland(fixed.probability.with_array(np.zeros_like(fixed.probability.array)))
    score = quality_score(fixed, empty, phantom.true_displacement, threshold=None)
    assert score.flagged and score.row()["quality_flag"] == 1
    assert score.text() == (
        "self-check: no gland found on the US, so the registration could not be checked - check it before relying on it"
    )
    assert not quality_score(fixed, fixed, phantom.true_displacement, threshold=None).flagged


def test_spearman_matches_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties take their mean rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1])
    assert np.isnan(spearman([1, 2], [2, 1]))


def test_anti_aliasing_smooths_only_along_axes_finer_than_the_grid():
    noise = np.random.default_rng(0).normal(10.0, 1.0, (30, 30, 30)).astype(np.float32)
    fine = Volume(noise, np.diag([1.0, 1.0, 4.0, 1.0]))  # 1 mm along i and j, 4 mm along k
    smoothed = anti_aliased(fine, 3.5).array
    assert abs(float(smoothed.mean()) - 10.0) < 0.05  # a normalised kernel
    assert smoothed.std() < 0.3 * noise.std()  # the speckle a point-sampled 3.5 mm grid would keep is gone
    # along k (4 mm, already coarser than 3.5) nothing is mixed: a pattern that varies only along k stays
    layered = fine.with_array(np.broadcast_to(np.arange(30, dtype=np.float32)[:, None, None] % 2, (30, 30, 30)))
    np.testing.assert_allclose(
        anti_aliased(layered, 3.5).array[:, 10:20, 10:20], layered.array[:, 10:20, 10:20], atol=1e-5
    )
    coarse = Volume(noise, np.diag([4.0, 4.0, 4.0, 1.0]))
    assert anti_aliased(coarse, 3.5) is coarse


def test_the_gland_model_finds_phantom_glands(gland_model, phantom):
    # as a registration finds them: the MR and the US in one batch (the US gland found alone, placed one coarse voxel
    # differently in the network's canvas, can land elsewhere: the model card's Limits)
    glands = GlandSegmenter(gland_model, "cpu").segment_pair(phantom.moving_image, phantom.fixed_image)
    for gland, label in zip(glands, (phantom.moving_labels[0], phantom.fixed_labels[0])):
        assert gland.found
        truth = _coarse_gland(label)
        assert np.linalg.norm(gland.centroid_ras - truth.centroid_ras) < 6.0


def test_a_registration_reports_its_quality_and_stage_times(gland_model, tiny_model, phantom):
    result = Registrar(tiny_model, "cpu", gland_model=gland_model).register(
        phantom.moving_image, phantom.fixed_image, "centers"
    )
    assert 0.0 <= result.quality.dice <= 1.0 and np.isfinite(result.quality.centroid_mm)
    assert len(result.glands) == 2
    assert {"segmentation", "network", "quality"} <= set(result.stage_s)
    glands = Registrar(tiny_model, "cpu", gland_model=gland_model).register(
        phantom.moving_image, phantom.fixed_image, "glands"
    )
    assert "alignment" in glands.stage_s and not np.allclose(glands.initial, result.initial)


def test_best_keeps_the_start_whose_self_check_is_better_and_is_the_default_of_a_centred_model(
    gland_model, tiny_model, phantom
):
    registrar = Registrar(tiny_model, "cpu", gland_model=gland_model)
    assert registrar.header["initial_alignment"] == "centers" and registrar.default_alignment() == "best"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny model's self-check warns
        each = [registrar.register(phantom.moving_image, phantom.fixed_image, start) for start in ("centers", "glands")]
        best = registrar.register(phantom.moving_image, phantom.fixed_image)
        auto = registrar.register(phantom.moving_image, phantom.fixed_image, "auto")  # the panel's default
    winner = max(each, key=lambda result: result.quality.dice)
    assert best.quality.dice == winner.quality.dice
    assert np.array_equal(best.displacement.array, winner.displacement.array)
    assert np.array_equal(auto.displacement.array, best.displacement.array)
    assert np.array_equal(best.initial, winner.initial)
    assert "alignment" in best.stage_s  # both starts ran, whichever won: only the glands start aligns
    assert Registrar(tiny_model, "cpu", gland_model=False).default_alignment() == "centers"


def test_the_glands_alignment_without_a_gland_model_is_refused(tiny_model, phantom):
    registrar = Registrar(tiny_model, "cpu", gland_model=False)
    assert registrar.register(phantom.moving_image, phantom.fixed_image).quality is None
    for alignment in ("glands", "best"):
        with pytest.raises(InputError, match=f"{alignment}.*needs a gland model"):
            registrar.register(phantom.moving_image, phantom.fixed_image, alignment)


def test_models_are_not_mixed_up(gland_model, tiny_model):
    with pytest.raises(ModelFileError, match="is a gland segmentation model, not a registration model"):
        Registrar(gland_model, "cpu")
    with pytest.raises(ModelFileError, match="is a registration model, not a gland segmentation model"):
        GlandSegmenter(tiny_model, "cpu")


def test_register_writes_the_glands_and_a_quality_report(gland_model, tiny_model, phantom_folder, tmp_path):
    case = sorted((phantom_folder / "moving_images").iterdir())[0].name
    report = tmp_path / "report.csv"
    pair = ["--moving", phantom_folder / "moving_images" / case, "--fixed", phantom_folder / "fixed_images" / case]
    models = ["--model", tiny_model, "--gland-model", gland_model]
    done = run_labelreg(
        "register",
        *pair,
        *models,
        "--output-transform",
        tmp_path / "t.h5",
        "--output-glands",
        tmp_path / "glands",
        "--report",
        report,
    )
    assert done.returncode == 0, done.stderr
    stem = case.split(".")[0]
    assert {p.name for p in (tmp_path / "glands").iterdir()} == {f"{stem}_mr_gland.nii.gz", f"{stem}_us_gland.nii.gz"}
    assert "self-check: predicted glands overlap with Dice" in done.stdout
    header, row = report.read_text().splitlines()
    assert header == "moving,fixed,runtime_s,device,quality_dice,quality_centroid_mm,quality_flag"
    again = run_labelreg("register", *pair, *models, "--output-glands", tmp_path / "glands")
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr


def test_the_glands_alignment_rescues_a_pair_whose_volume_centres_are_far_apart(gland_model):
    from LabelRegLib.core.metrics import dice
    from LabelRegLib.core.spatial import initial_alignment
    from LabelRegLib.registration.gland_alignment import glands_initial

    pair = make_phantom_pair(1003, fov_offset_mm=(18.0, -15.0, 12.0))  # the MR field of view far off the gland
    glands = GlandSegmenter(gland_model, "cpu").segment_pair(pair.moving_image, pair.fixed_image)
    fixed = pair.fixed_image

    def start_dice(matrix):
        moved = resample_volume(pair.moving_labels[0], fixed.shape, fixed.ijk_to_ras, matrix)
        return dice(moved.array, pair.fixed_labels[0].array)

    centers = start_dice(initial_alignment(pair.moving_image, fixed, "centers"))
    matrix, warned = glands_initial(pair.moving_image, fixed, *glands, "rigid")
    assert not warned
    assert centers < 0.3 and start_dice(matrix) > 0.7
