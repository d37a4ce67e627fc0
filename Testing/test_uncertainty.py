"""The fields' spread (registration/uncertainty.py) and how the two warnings are measured (evaluation/trust.py)."""

from __future__ import annotations

import numpy as np
import pytest


def test_fields_that_agree_have_no_spread_and_a_known_shift_gives_that_shift():
    from LabelRegLib.registration.uncertainty import field_spread_mm

    rng = np.random.default_rng(0)
    field = rng.normal(size=(4, 5, 6, 3)).astype(np.float32)
    assert np.array_equal(field_spread_mm([field]), np.zeros((4, 5, 6)))
    assert np.allclose(field_spread_mm([field] * 4), 0.0)
    shifted = field + np.array([3.0, 0.0, 4.0], dtype=np.float32)
    assert np.allclose(field_spread_mm([field, shifted]), 5.0, atol=1e-5)
    assert np.allclose(field_spread_mm([field, field, shifted, field]), 5.0, atol=1e-5), "the largest disagreement"


def test_the_spread_is_read_at_a_labels_centroid_on_the_spreads_grid(phantom):
    from LabelRegLib.core.volume import Volume
    from LabelRegLib.registration.uncertainty import spread_at, spread_at_label

    ijk_to_ras = np.diag([2.0, 2.0, 2.0, 1.0])
    ijk_to_ras[:3, 3] = [-10.0, 0.0, 5.0]
    spread = Volume(np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6), ijk_to_ras)  # [K, J, I]
    assert spread_at(spread, [-10 + 2 * 3, 0 + 2 * 1, 5 + 2 * 2]) == spread.array[2, 1, 3]
    assert spread_at(spread, [1000.0, 0.0, 5.0]) == spread.array[0, 0, 5], "clipped to the grid"
    assert np.isnan(spread_at(spread, [np.nan] * 3))
    label = Volume(np.zeros((4, 5, 6), np.float32), ijk_to_ras)
    label.array[2, 1, 3] = 1.0
    assert spread_at_label(spread, label) == spread.array[2, 1, 3]


class ZeroNetwork:
    """A stand-in network that predicts no displacement: every field is then its start's initial alignment."""

    min_input_shape = None

    def __call__(self, moving, fixed):
        import torch

        return torch.zeros((moving.shape[0], 3, *moving.shape[2:]), dtype=moving.dtype, device=moving.device)


def test_a_registrations_spread_is_zero_where_its_fields_agree_and_the_starts_gap_where_they_do_not(
    phantom, tiny_model, gland_model
):
    """Through the whole registrar: mirrored copies of one start agree exactly (the network predicts nothing); two
    starts that differ by a translation give that translation's length everywhere."""
    from LabelRegLib.registration.registrar import Registrar

    moving, fixed = phantom.moving_image, phantom.fixed_image
    registrar = Registrar(tiny_model, "cpu", mirror_axes="j", gland_model=gland_model)
    registrar.network = ZeroNetwork()
    alone = registrar.register(moving, fixed, "centers", warn=False, uncertainty=True)
    assert alone.uncertainty.shape == fixed.shape and np.allclose(alone.uncertainty.array, 0.0, atol=1e-4)
    assert np.allclose(alone.uncertainty.ijk_to_ras, fixed.ijk_to_ras)

    centres = registrar.register(moving, fixed, "centers", warn=False).initial
    glands = registrar.register(moving, fixed, "glands", warn=False).initial
    assert np.allclose(centres[:3, :3], np.eye(3)) and np.allclose(glands[:3, :3], np.eye(3)), "two translations"
    gap_mm = float(np.linalg.norm(centres[:3, 3] - glands[:3, 3]))
    assert gap_mm > 1.0, "the phantom's two starts differ"
    best = registrar.register(moving, fixed, "best", warn=False, uncertainty=True)
    assert np.allclose(best.uncertainty.array, gap_mm, atol=1e-3)
    assert not best.copies, "the copies are dropped once the spread is computed"


def test_the_spread_is_measured_per_landmark_and_its_ranking_uses_thresholds_from_the_other_folds():
    from LabelRegLib.evaluation.trust import LARGE_TRE_MM, uncertainty_ranking

    rows = []
    for fold in range(3):
        for n in range(10):
            tre = 2.0 + n  # 2 .. 11 mm
            rows.append({"case": f"c{fold}{n}", "landmark": 1, "fold": fold, "tre_mm_after": tre, "spread_mm": tre / 2})
            rows.append({"case": f"c{fold}{n}", "landmark": 0, "fold": fold, "tre_mm_after": 50.0, "spread_mm": 0.0})
    ranking = uncertainty_ranking(rows)
    assert ranking["n_landmarks"] == 30, "the gland rows are left out"
    assert ranking["spearman_spread_vs_tre"] == pytest.approx(1.0)
    assert ranking["auc_large_tre"] == pytest.approx(1.0) and ranking["large_tre_mm"] == LARGE_TRE_MM
    assert ranking["n_large_tre"] == 9  # 9, 10, 11 mm in each fold
    assert set(ranking["spread_threshold_mm_per_fold"]) == {"0", "1", "2"}
    assert ranking["n_flagged"] == 6 and ranking["tre_mm_median_flagged"] > ranking["tre_mm_median_unflagged"]
    assert uncertainty_ranking([{**row, "spread_mm": float("nan")} for row in rows]) == {}


def test_the_self_check_as_a_failure_detector_counts_flagged_failures_and_flagged_others():
    from LabelRegLib.evaluation.trust import FAILURE_TRE_MM, self_check_detector

    table = [
        {"quality_dice": 0.5, "tre_mm_after": FAILURE_TRE_MM + 5},  # failed, flagged
        {"quality_dice": 0.9, "tre_mm_after": FAILURE_TRE_MM + 1},  # failed, missed
        {"quality_dice": 0.6, "tre_mm_after": 4.0},  # fine, flagged
        {"quality_dice": 0.9, "tre_mm_after": 3.0},
        {"quality_dice": 0.8, "tre_mm_after": 5.0},
        {"quality_dice": 0.85, "tre_mm_after": 6.0},
    ]
    detector = self_check_detector(table, threshold=0.75)
    assert detector["n_failed"] == 2 and detector["share_of_failed_flagged"] == 0.5
    assert detector["share_of_others_flagged"] == 0.25


def test_roc_auc_is_the_chance_a_positive_outranks_a_negative():
    from LabelRegLib.core.metrics import roc_auc

    assert roc_auc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert roc_auc([4, 3, 2, 1], [False, False, True, True]) == 0.0
    assert roc_auc([1, 1, 1, 1], [False, True, False, True]) == 0.5, "ties count half"
    assert roc_auc([1, 3, 2, 4], [False, True, False, True]) == 1.0
    assert roc_auc([1, 2, 4, 3], [False, True, False, True]) == 0.5
    assert np.isnan(roc_auc([1, 2], [True, True]))
