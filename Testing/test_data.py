"""Data folders: every problem is reported at once, naming the file; segmentations match by name."""

import numpy as np
import pytest
import SimpleITK as sitk
from LabelRegLib.core.io import write_volume
from LabelRegLib.core.sitk_geometry import to_sitk_image
from LabelRegLib.core.volume import Volume
from LabelRegLib.data.cases import DataError, load_case, load_data_folder
from LabelRegLib.data.phantom import write_phantom_folder


def test_shared_example_data_loads_completely(shared_data):
    cases = load_data_folder(shared_data)
    assert len(cases) == 90
    assert all(case.num_landmarks >= 2 for case in cases)


def test_every_problem_is_reported_at_once(tmp_path, phantom):
    write_phantom_folder(tmp_path, n_pairs=5)
    (tmp_path / "fixed_images" / "phantom000.nii.gz").rename(
        tmp_path / "fixed_images" / "other.nii.gz"
    )  # unmatched names
    write_volume(phantom.fixed_labels[:2], tmp_path / "fixed_labels" / "phantom001.nii.gz")  # landmark count
    image = tmp_path / "fixed_images" / "phantom002.nii.gz"
    write_volume(Volume(np.zeros((10, 10, 10), np.float32) + 1, np.eye(4)), image)  # label shape no longer matches
    (tmp_path / "moving_images" / "phantom003.nii.gz").write_bytes(b"garbage")  # unreadable
    nonbinary = [label.with_array(label.array * 3) for label in phantom.moving_labels]
    write_volume(nonbinary, tmp_path / "moving_labels" / "phantom004.nii.gz")  # not binary
    with pytest.raises(DataError) as caught:
        load_data_folder(tmp_path)
    problems = "\n".join(caught.value.problems)
    assert "phantom000" in problems and "other" in problems  # unmatched both ways
    assert "fixed_labels/phantom001.nii.gz: has 2 landmark(s)" in problems
    assert "fixed_labels/phantom002.nii.gz: label size" in problems
    assert "moving_images/phantom003.nii.gz: cannot be read" in problems
    assert "moving_labels/phantom004.nii.gz (landmark 0): is not a binary label" in problems
    assert len(caught.value.problems) >= 6


def test_missing_subfolder_is_reported(tmp_path):
    write_phantom_folder(tmp_path, n_pairs=1)
    for path in (tmp_path / "fixed_labels").iterdir():
        path.unlink()
    (tmp_path / "fixed_labels").rmdir()
    with pytest.raises(DataError, match="fixed_labels: missing folder"):
        load_data_folder(tmp_path)


def _write_segmentation(path, labels, names):
    """A Slicer-style .seg.nrrd with one layer per segment (segment n has label value n + 1)."""
    layers = np.zeros(labels[0].array.shape + (len(labels),), np.uint8)
    meta = []
    for index, (label, name) in enumerate(zip(labels, names)):
        layers[label.array > 0.5, index] = index + 1
        meta.append((name, index + 1, index))
    image = to_sitk_image(layers, labels[0].ijk_to_ras, is_vector=True)
    for index, (name, value, layer) in enumerate(meta):
        image.SetMetaData(f"Segment{index}_Name", name)
        image.SetMetaData(f"Segment{index}_LabelValue", str(value))
        image.SetMetaData(f"Segment{index}_Layer", str(layer))
    sitk.WriteImage(image, str(path), True)


def test_seg_nrrd_segments_are_matched_by_name(tmp_path, phantom):
    names = ["gland"] + [f"target{n}" for n in range(1, len(phantom.moving_labels))]
    write_volume(phantom.moving_image, tmp_path / "mr.nii.gz")
    write_volume(phantom.fixed_image, tmp_path / "us.nii.gz")
    _write_segmentation(tmp_path / "mr.seg.nrrd", phantom.moving_labels, names)
    order = list(reversed(range(len(names))))
    _write_segmentation(tmp_path / "us.seg.nrrd", [phantom.fixed_labels[n] for n in order], [names[n] for n in order])
    case = load_case(tmp_path / "mr.nii.gz", tmp_path / "us.nii.gz", tmp_path / "mr.seg.nrrd", tmp_path / "us.seg.nrrd")
    assert [label.name for label in case.fixed_labels] == names
    for expected, loaded in zip(phantom.fixed_labels, case.fixed_labels):
        assert np.array_equal(expected.array > 0.5, loaded.array > 0.5)
    _write_segmentation(tmp_path / "us.seg.nrrd", phantom.fixed_labels, ["prostate"] + names[1:])
    with pytest.raises(Exception, match="segment names do not match"):
        load_case(tmp_path / "mr.nii.gz", tmp_path / "us.nii.gz", tmp_path / "mr.seg.nrrd", tmp_path / "us.seg.nrrd")
