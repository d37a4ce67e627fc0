"""The warper and the resampling: known transforms are undone, identity is exact."""

import numpy as np
import pytest
import torch
from LabelRegLib.core.metrics import centroid_ras
from LabelRegLib.core.spatial import (
    affine_warp,
    initial_alignment,
    normalised_affine_to_voxel,
    random_affine,
    resample_volume,
    sample_linear,
    voxel_grid,
    warp,
)


def _interior(shape, margin):
    return tuple(slice(margin, n - margin) for n in shape)


def _affine_ddf(matrix: np.ndarray, shape) -> torch.Tensor:
    """Voxel DDF of p -> matrix @ p (4x4 on (i, j, k))."""
    grid = voxel_grid(shape, dtype=torch.float64)
    m = torch.as_tensor(matrix)
    moved = torch.einsum("rc,cxyz->rxyz", m[:3, :3], grid) + m[:3, 3, None, None, None]
    return (moved - grid)[None]


def _rms_position_error(forward: np.ndarray, inverse: np.ndarray, shape, margin: int) -> float:
    """Warp the coordinate images by forward then inverse; RMS distance (voxels) from identity, interior only."""
    grid = voxel_grid(shape, dtype=torch.float64)[None]
    moved = warp(grid, _affine_ddf(forward, shape))
    back = warp(moved, _affine_ddf(inverse, shape))
    error = (back - grid)[0][(slice(None), *_interior(shape, margin))]
    return float(torch.sqrt((error**2).sum(0).mean()))


def test_identity_ddf_returns_input_exactly(phantom):
    image = torch.as_tensor(phantom.moving_image.array)[None, None]
    assert torch.equal(warp(image, torch.zeros(1, 3, *image.shape[2:])), image)


def test_known_translation_is_undone(phantom):
    shape = phantom.moving_image.shape
    forward = np.eye(4)
    forward[:3, 3] = [2.3, -1.7, 0.6]
    inverse = np.linalg.inv(forward)
    assert _rms_position_error(forward, inverse, shape, margin=4) < 0.1
    # and on the phantom itself: a translated-then-untranslated gland keeps its centroid
    label = torch.as_tensor(phantom.moving_labels[0].array, dtype=torch.float64)[None, None]
    there = warp(label, _affine_ddf(forward, shape))
    back = warp(there, _affine_ddf(inverse, shape))
    original = phantom.moving_labels[0]
    moved_back = original.with_array(back[0, 0].numpy())
    spacing = original.spacing.min()
    assert np.linalg.norm(centroid_ras(moved_back) - centroid_ras(original)) / spacing < 0.1


def test_known_affine_is_undone(phantom):
    shape = phantom.moving_image.shape
    center = (np.array(shape[::-1]) - 1) / 2
    angle = np.deg2rad(7.0)
    linear = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]) @ np.diag(
        [1.05, 0.97, 1.02]
    )
    forward = np.eye(4)
    forward[:3, :3] = linear
    forward[:3, 3] = center - linear @ center + [1.2, -0.8, 0.5]
    assert _rms_position_error(forward, np.linalg.inv(forward), shape, margin=8) < 0.1


def test_sampling_at_integer_coordinates_and_border_clamping():
    image = torch.arange(4 * 5 * 6, dtype=torch.float32).reshape(1, 1, 4, 5, 6)
    coords = voxel_grid((4, 5, 6))[None]
    assert torch.equal(sample_linear(image, coords), image)
    outside = torch.tensor([-3.0, 100.0, 2.0]).reshape(1, 3, 1, 1, 1)  # i < 0, j > max
    assert float(sample_linear(image, outside)) == float(image[0, 0, 2, 4, 0])


def test_random_affine_moves_corners_inwards_within_scale():
    generator = torch.Generator().manual_seed(3)
    theta = random_affine(16, corner_scale=0.1, generator=generator)
    corners = torch.tensor([[-1.0, -1, -1, 1], [-1, -1, 1, 1], [-1, 1, -1, 1], [1, -1, -1, 1]])
    moved = torch.einsum("brc,nc->bnr", theta, corners)
    shift = (moved - corners[:, :3]) * (-corners[:, :3])  # positive = inwards
    assert float(shift.min()) >= -1e-5 and float(shift.max()) <= 0.1 + 1e-5
    assert float(shift.std()) > 0.01  # actually random
    # identity theta maps voxel indices to themselves
    identity = normalised_affine_to_voxel(torch.eye(3, 4)[None], (7, 8, 9))
    assert torch.allclose(identity[0], torch.eye(4), atol=1e-6)
    image = torch.rand(1, 1, 7, 8, 9)
    assert torch.allclose(affine_warp(image, torch.eye(3, 4)[None]), image, atol=1e-5)


def test_initial_alignment_centers_and_physical(phantom):
    moving, fixed = phantom.moving_image, phantom.fixed_image
    centers = initial_alignment(moving, fixed, "centers")
    assert np.allclose(centers[:3, :3], np.eye(3))
    assert np.allclose(centers[:3, :3] @ fixed.center_ras + centers[:3, 3], moving.center_ras)
    assert np.array_equal(initial_alignment(moving, fixed, "physical"), np.eye(4))
    with pytest.raises(ValueError, match="alignment"):
        initial_alignment(moving, fixed, "corners")


def test_resample_volume_onto_own_grid_is_identity(oblique_phantom):
    fixed = oblique_phantom.fixed_image
    same = resample_volume(fixed, fixed.shape, fixed.ijk_to_ras)
    assert np.allclose(same.array, fixed.array, atol=1e-3)
