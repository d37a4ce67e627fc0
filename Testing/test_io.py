"""File boundary: LPS (SimpleITK) and RAS (nibabel) files with oblique geometry read the same."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import oblique_geometry
from LabelRegLib.core.io import read_array, read_labels, read_volume, write_volume
from LabelRegLib.core.sitk_geometry import LPS_TO_RAS
from LabelRegLib.core.volume import Volume


def _array_kji(shape=(7, 9, 11)):
    return np.random.default_rng(0).random(shape).astype(np.float32)


def _write_with_sitk(array_kji, ijk_to_ras, path):
    lps = LPS_TO_RAS @ ijk_to_ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(array_kji)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    image.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    sitk.WriteImage(image, str(path))


def _write_with_nibabel(array_kji, ijk_to_ras, path):
    nib.save(nib.Nifti1Image(np.transpose(array_kji, (2, 1, 0)), ijk_to_ras), str(path))


@pytest.mark.parametrize("sitk_suffix", [".nii.gz", ".nrrd", ".mha"])
def test_sitk_lps_and_nibabel_ras_files_give_the_same_volume(tmp_path, sitk_suffix):
    matrix = oblique_geometry()
    array = _array_kji()
    _write_with_sitk(array, matrix, tmp_path / f"lps{sitk_suffix}")
    _write_with_nibabel(array, matrix, tmp_path / "ras.nii.gz")
    from_sitk = read_volume(tmp_path / f"lps{sitk_suffix}")
    from_nibabel = read_volume(tmp_path / "ras.nii.gz")
    assert np.allclose(from_sitk.ijk_to_ras, matrix, atol=1e-5)
    assert np.allclose(from_nibabel.ijk_to_ras, matrix, atol=1e-5)
    assert np.allclose(from_sitk.ijk_to_ras, from_nibabel.ijk_to_ras, atol=1e-5)
    assert np.array_equal(from_sitk.array, from_nibabel.array)
    assert np.array_equal(from_sitk.array, array)
    assert np.allclose(from_sitk.spacing, [0.8, 1.3, 2.1])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_write_read_round_trip_keeps_geometry_and_values(tmp_path, suffix):
    volume = Volume(_array_kji(), oblique_geometry())
    write_volume(volume, tmp_path / f"v{suffix}")
    back = read_volume(tmp_path / f"v{suffix}")
    assert np.allclose(back.ijk_to_ras, volume.ijk_to_ras, atol=1e-5)
    assert np.array_equal(back.array, volume.array)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_4d_label_file_loads_as_landmark_volumes(tmp_path, suffix):
    matrix = oblique_geometry()
    labels = [
        Volume((np.arange(7 * 9 * 11).reshape(7, 9, 11) % (n + 2) == 0).astype(np.float32), matrix) for n in range(3)
    ]
    write_volume(labels, tmp_path / f"labels{suffix}")
    back = read_labels(tmp_path / f"labels{suffix}")
    assert len(back) == 3
    for original, loaded in zip(labels, back):
        assert np.array_equal(original.array, loaded.array)
        assert np.allclose(loaded.ijk_to_ras, matrix, atol=1e-5)
    array, _ = read_array(tmp_path / f"labels{suffix}")
    assert array.shape == (7, 9, 11, 3)


def test_example_data_reads_with_its_documented_shapes(shared_data):
    image = read_volume(shared_data / "fixed_images" / "obs000.nii.gz")
    assert image.shape[::-1] == (47, 63, 44)
    assert np.allclose(image.spacing, 1.5)
    labels = read_labels(shared_data / "moving_labels" / "obs000.nii.gz")
    assert 2 <= len(labels) <= 6 and labels[0].shape[::-1] == (69, 69, 64)
