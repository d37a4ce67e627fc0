"""Bad input raises an error that names the file and the problem."""

import nibabel as nib
import numpy as np
import pytest
from LabelRegLib.core.errors import InputError
from LabelRegLib.core.io import read_labels, read_volume, write_volume
from LabelRegLib.core.volume import Volume
from LabelRegLib.data.cases import load_case


def _write(path, array, affine=np.eye(4)):
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


@pytest.fixture
def good_case(tmp_path, phantom):
    paths = {}
    for key, value in [
        ("moving_image", phantom.moving_image),
        ("fixed_image", phantom.fixed_image),
        ("moving_label", phantom.moving_labels),
        ("fixed_label", phantom.fixed_labels),
    ]:
        paths[key] = tmp_path / f"{key}.nii.gz"
        write_volume(value, paths[key])
    return paths


def test_good_case_loads(good_case, phantom):
    case = load_case(**good_case)
    assert case.num_landmarks == len(phantom.moving_labels)


def test_2d_image_is_rejected(tmp_path):
    path = _write(tmp_path / "slice.nii.gz", np.zeros((20, 30), np.float32))
    with pytest.raises(InputError, match=r"slice\.nii\.gz.*2D"):
        read_volume(path)
    flat = _write(tmp_path / "flat.nii.gz", np.zeros((20, 30, 1), np.float32))
    with pytest.raises(InputError, match=r"flat\.nii\.gz.*not a 3D volume"):
        read_volume(flat)


def test_landmark_count_mismatch_names_both_files(good_case, phantom):
    write_volume(phantom.fixed_labels[:2], good_case["fixed_label"])
    with pytest.raises(
        InputError,
        match=r"fixed_label\.nii\.gz: has 2 landmark\(s\) but the moving label file .*moving_label\.nii\.gz has \d",
    ):
        load_case(**good_case)


def test_nan_intensities_are_rejected(tmp_path):
    array = np.ones((8, 9, 10), np.float32)
    array[2, 3, 4] = np.nan
    path = _write(tmp_path / "nan.nii.gz", array)
    with pytest.raises(InputError, match=r"nan\.nii\.gz: contains 1 NaN"):
        read_volume(path)


def test_empty_label_is_rejected(tmp_path):
    labels = np.zeros((8, 9, 10, 2), np.float32)
    labels[2:4, 2:4, 2:4, 0] = 1  # landmark 1 stays empty
    path = _write(tmp_path / "labels.nii.gz", labels)
    with pytest.raises(InputError, match=r"labels\.nii\.gz \(landmark 1\): is an empty label"):
        read_labels(path)


def test_missing_file_is_named(tmp_path, good_case):
    with pytest.raises(InputError, match=r"nothere\.nii\.gz: file not found"):
        read_volume(tmp_path / "nothere.nii.gz")
    good_case["moving_image"] = tmp_path / "gone.nrrd"
    with pytest.raises(InputError, match=r"gone\.nrrd: file not found"):
        load_case(**good_case)


def test_unreadable_and_unsupported_files(tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=r"broken\.nii\.gz: cannot be read as an image"):
        read_volume(broken)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match=r"notes\.txt: unsupported file type"):
        read_volume(text)


def test_label_on_another_grid_than_its_image(good_case, phantom):
    shifted = [Volume(label.array, phantom.moving_image.ijk_to_ras) for label in phantom.fixed_labels]
    shifted = [Volume(np.pad(label.array, 1), label.ijk_to_ras) for label in shifted]
    write_volume(shifted, good_case["fixed_label"])
    with pytest.raises(InputError, match=r"fixed_label\.nii\.gz: label size .* differs"):
        load_case(**good_case)


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.nii.gz"
    target.write_bytes(b"previous content")
    with pytest.raises(Exception):
        write_volume(Volume(np.zeros((2, 2, 2), dtype=object)), target)  # nibabel cannot store objects
    assert target.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]
