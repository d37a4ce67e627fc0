"""Losses and metrics: analytic values."""

import numpy as np
import pytest
import torch
from LabelRegLib.core.metrics import dice
from LabelRegLib.core.spatial import voxel_grid
from LabelRegLib.nets.losses import (
    DEFAULT_SCALES,
    bending_energy,
    gaussian_kernel1d,
    gradient_norm,
    multi_scale_loss,
    regulariser,
    separable_filter3d,
    single_scale_loss,
)

SHAPE = (12, 14, 16)


def _affine_field(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    offset = torch.randn(3, generator=generator, dtype=torch.float64) * 5
    grid = voxel_grid(SHAPE, dtype=torch.float64)
    return (torch.einsum("rc,cxyz->rxyz", matrix, grid) + offset.reshape(3, 1, 1, 1))[None]


def _smooth_random_field(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 3, *SHAPE, generator=generator, dtype=torch.float64)
    return separable_filter3d(noise, gaussian_kernel1d(2.0, torch.float64)) * 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bending_energy_of_affine_field_is_zero(seed):
    assert float(bending_energy(_affine_field(seed))) < 1e-6
    assert float(bending_energy(_smooth_random_field(seed))) > 1e-4


def test_gradient_norms_vanish_for_translation_only():
    translation = torch.ones(1, 3, *SHAPE, dtype=torch.float64) * torch.tensor(
        [1.5, -2.0, 0.3], dtype=torch.float64
    ).reshape(1, 3, 1, 1, 1)
    for kind in ("gradient-l2", "gradient-l1", "bending"):
        assert float(regulariser(translation, kind)) < 1e-12
        assert float(regulariser(_smooth_random_field(4), kind)) > 1e-4
    assert float(gradient_norm(_affine_field(0))) > 0


def test_unknown_regulariser_and_similarity_are_rejected():
    with pytest.raises(ValueError, match="regulariser_type"):
        regulariser(torch.zeros(1, 3, 4, 4, 4), "elastic")
    with pytest.raises(ValueError, match="similarity_type"):
        single_scale_loss(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 1, 2, 2, 2), "ncc")


def _ball(center, radius=4.0) -> torch.Tensor:
    grid = voxel_grid(SHAPE)
    distance = ((grid - torch.tensor(center, dtype=torch.float32).reshape(3, 1, 1, 1)) ** 2).sum(0).sqrt()
    return (distance <= radius).float()[None, None]


def test_dice_of_identical_labels_is_one_and_of_disjoint_is_zero():
    a, b = _ball((4, 4, 4)), _ball((11, 9, 7), radius=3)
    assert dice(a.numpy(), a.numpy()) == 1.0
    assert dice(a.numpy(), b.numpy()) == 0.0
    assert float(multi_scale_loss(a, a, "dice", [0])) == pytest.approx(0.0, abs=1e-6)
    # smoothed labels are soft, so the soft Dice of identical labels is < 1 at coarse scales (as in the original)
    assert float(multi_scale_loss(a, a, "dice", DEFAULT_SCALES)) < float(multi_scale_loss(a, b, "dice", DEFAULT_SCALES))
    assert float(single_scale_loss(a, b, "dice")) == pytest.approx(1.0, abs=1e-6)  # scale 0: disjoint
    assert float(multi_scale_loss(a, b, "dice", [0])) == pytest.approx(1.0, abs=1e-6)
    assert float(multi_scale_loss(a, b, "dice", DEFAULT_SCALES)) < 1.0  # smoothing makes them overlap
    for kind in ("jaccard", "cross-entropy", "mean-squared"):
        same = float(multi_scale_loss(a, a, kind))
        different = float(multi_scale_loss(a, b, kind))
        assert different > same >= 0


def test_gaussian_smoothing_keeps_mass_away_from_the_border():
    volume = torch.zeros(1, 1, 21, 21, 21)
    volume[0, 0, 10, 10, 10] = 1
    smoothed = separable_filter3d(volume, gaussian_kernel1d(2.0))
    assert float(smoothed.sum()) == pytest.approx(1.0, abs=1e-5)
    assert gaussian_kernel1d(0) is None
    assert np.isclose(float(gaussian_kernel1d(4.0).sum()), 1.0)
    assert gaussian_kernel1d(4.0).numel() == 2 * 12 + 1


@pytest.mark.parametrize("sigma", [1.0, 2.0, 16.0])
def test_matrix_smoothing_equals_zero_padded_convolution(sigma):
    import torch.nn.functional as F

    volume = torch.rand(2, 1, 9, 40, 23, dtype=torch.float64)
    kernel = gaussian_kernel1d(sigma, torch.float64)
    expected, n = volume, kernel.numel()
    for axis in range(3):
        shape, padding = [1, 1, 1], [0, 0, 0]
        shape[axis], padding[axis] = n, n // 2
        expected = F.conv3d(expected, kernel.reshape(1, 1, *shape), padding=tuple(padding))
    assert torch.allclose(separable_filter3d(volume, kernel), expected, atol=1e-12)
