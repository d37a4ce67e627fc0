"""Coordinate conventions: voxel <-> RAS displacements, TRE, Jacobian and folding."""

import numpy as np
import torch
from conftest import oblique_geometry
from LabelRegLib.core.metrics import dice, folding, tre_mm
from LabelRegLib.core.spatial import (
    ddf_ras_to_voxel,
    ddf_voxel_to_ras,
    folding_fraction,
    jacobian_determinant,
    resample_volume,
)
from LabelRegLib.core.volume import Volume, grid_center_ras, resampled_geometry


def test_ddf_voxel_ras_round_trip_is_exact_for_oblique_anisotropic_geometry():
    matrix = oblique_geometry()
    ddf = torch.randn(2, 3, 5, 6, 7, dtype=torch.float64)
    ras = ddf_voxel_to_ras(ddf, matrix)
    # a displacement of one voxel along i is the i column of the matrix, in mm
    unit = torch.zeros(1, 3, 1, 1, 1, dtype=torch.float64)
    unit[0, 0] = 1
    assert np.allclose(ddf_voxel_to_ras(unit, matrix)[0, :, 0, 0, 0].numpy(), matrix[:3, 0])
    assert torch.allclose(ddf_ras_to_voxel(ras, matrix), ddf, atol=1e-12)
    as_numpy = ddf_ras_to_voxel(ddf_voxel_to_ras(ddf.numpy(), matrix), matrix)
    assert np.allclose(as_numpy, ddf.numpy(), atol=1e-12)


def test_tre_under_the_phantom_own_deformation_is_below_half_a_millimetre(phantom):
    fixed = phantom.fixed_image
    for moving_label, fixed_label in zip(phantom.moving_labels, phantom.fixed_labels):
        warped = resample_volume(
            moving_label, fixed.shape, fixed.ijk_to_ras, displacement_ras=phantom.true_displacement.array
        )
        assert tre_mm(warped, fixed_label) < 0.5
    gland = resample_volume(
        phantom.moving_labels[0], fixed.shape, fixed.ijk_to_ras, displacement_ras=phantom.true_displacement.array
    )
    assert dice(gland.array, phantom.fixed_labels[0].array) > 0.95


def test_jacobian_of_identity_is_one_and_folding_is_detected():
    identity = torch.zeros(1, 3, 6, 7, 8, dtype=torch.float64)
    assert torch.allclose(jacobian_determinant(identity), torch.ones(1, 6, 7, 8, dtype=torch.float64))
    assert folding_fraction(identity) == 0.0
    folded = identity.clone()
    i = torch.arange(8, dtype=torch.float64)
    folded[0, 0, :, :, 3:6] = (-2.0 * (i[3:6] - 4)).reshape(1, 1, 3)  # i + u_i decreases in the middle: a fold
    assert 0 < folding_fraction(folded) < 1
    # the same field expressed in RAS mm on an oblique grid gives the same folding
    matrix = oblique_geometry()
    field_ras = ddf_voxel_to_ras(folded, matrix)[0].permute(1, 2, 3, 0).numpy()
    assert folding(Volume(field_ras, matrix)) == folding_fraction(folded)


def test_jacobian_of_a_scaling_is_its_determinant():
    scale = torch.tensor([1.1, 0.9, 1.2], dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in (5, 6, 7)], indexing="ij")[::-1])
    ddf = ((scale - 1).reshape(3, 1, 1, 1) * grid)[None]
    assert torch.allclose(jacobian_determinant(ddf), torch.full((1, 5, 6, 7), float(scale.prod()), dtype=torch.float64))


def test_resampled_geometry_keeps_direction_and_field_of_view_centre():
    matrix = oblique_geometry()
    shape, new_matrix = resampled_geometry((10, 20, 30), matrix, 1.5)
    assert np.allclose(np.linalg.norm(new_matrix[:3, :3], axis=0), 1.5)
    assert np.allclose(new_matrix[:3, :3] / 1.5, matrix[:3, :3] / np.linalg.norm(matrix[:3, :3], axis=0))
    assert np.allclose(grid_center_ras(shape, new_matrix), grid_center_ras((10, 20, 30), matrix))
    assert shape == (14, 17, 16)  # k: 10*2.1/1.5, j: 20*1.3/1.5, i: 30*0.8/1.5
