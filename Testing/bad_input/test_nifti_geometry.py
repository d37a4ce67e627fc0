"""One geometry for every reader (issue 25, 2): a NIfTI whose sform and qform disagree is placed where ITK, and so
Slicer and the batch script, place it, by the command line too, with a warning naming the file."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from helpers import REPO, run_labelreg, subprocess_env
from LabelRegLib.core.io import read_volume, write_volume
from LabelRegLib.data.phantom import make_phantom_pair

SHIFT_MM = np.array([30.0, -20.0, 10.0])


def _with_shifted_sform(path):
    """Rewrite a NIfTI file so that its sform (code 'aligned') is its qform (code 'scanner') moved by SHIFT_MM:
    nibabel takes the sform, ITK the qform (ITK takes an sform only with the code 'scanner')."""
    image = nib.load(str(path))
    qform = image.header.get_qform()
    sform = qform.copy()
    sform[:3, 3] += SHIFT_MM
    copy = nib.Nifti1Image(np.asanyarray(image.dataobj), qform, image.header)
    copy.set_qform(qform, code=1)
    copy.set_sform(sform, code=2)
    nib.save(copy, str(path))
    return qform


def test_a_nifti_whose_sform_and_qform_disagree_is_read_as_itk_reads_it(tmp_path):
    pair = make_phantom_pair(1002)
    write_volume(pair.fixed_image, tmp_path / "us.nii.gz")
    qform = _with_shifted_sform(tmp_path / "us.nii.gz")
    with pytest.warns(
        UserWarning, match=r"us.nii.gz: its sform and qform disagree \(origins 37.4 mm apart\); placed by its qform"
    ):
        volume = read_volume(tmp_path / "us.nii.gz")
    itk = sitk.ReadImage(str(tmp_path / "us.nii.gz"))
    assert np.allclose(volume.ijk_to_ras, qform, atol=1e-4)
    assert np.allclose(volume.ijk_to_ras[:3, 3] * [-1, -1, 1], itk.GetOrigin(), atol=1e-3)


@pytest.mark.slow
def test_the_command_line_and_the_batch_script_agree_on_such_a_file(tmp_path):
    pair = make_phantom_pair(1002)
    write_volume(pair.moving_image, tmp_path / "mr.nii.gz")
    write_volume(pair.fixed_image, tmp_path / "us.nii.gz")
    _with_shifted_sform(tmp_path / "us.nii.gz")
    cli = run_labelreg(
        "register", "--moving", tmp_path / "mr.nii.gz", "--fixed", tmp_path / "us.nii.gz", "--init", "centers",
        "--output-transform", tmp_path / "cli.h5", "--warped-image", tmp_path / "warped.nii.gz",
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "labelreg register: warning: " in cli.stderr and "sform and qform disagree" in cli.stderr
    script = REPO / "LabelReg" / "Resources" / "Scripts" / "labelreg_batch.py"
    batch = subprocess.run(
        [sys.executable, str(script), "--moving", str(tmp_path / "mr.nii.gz"), "--fixed", str(tmp_path / "us.nii.gz"),
         "--init", "centers", "--output-transform", str(tmp_path / "batch.h5")],
        capture_output=True, text=True, env=subprocess_env(), timeout=600,
    )  # fmt: skip
    assert batch.returncode == 0, batch.stderr[-2000:]
    fields = [sitk.DisplacementFieldTransform(sitk.ReadTransform(str(tmp_path / f"{n}.h5"))) for n in ("cli", "batch")]
    grids = [f.GetDisplacementField() for f in fields]
    assert np.allclose(grids[0].GetOrigin(), grids[1].GetOrigin(), atol=1e-3)  # the same US grid, where ITK puts it
    difference = sitk.GetArrayFromImage(grids[0]) - sitk.GetArrayFromImage(grids[1])
    assert np.abs(difference).max() < 0.05  # mm: one registration, two readers
    # SimpleITK resampling through the written transform agrees with labelreg's own warped image
    moving, us = sitk.ReadImage(str(tmp_path / "mr.nii.gz")), sitk.ReadImage(str(tmp_path / "us.nii.gz"))
    resampled = sitk.GetArrayFromImage(sitk.Resample(moving, us, sitk.ReadTransform(str(tmp_path / "cli.h5"))))
    warped = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "warped.nii.gz")))
    inside = resampled != 0
    assert np.corrcoef(resampled[inside], warped[inside])[0, 1] > 0.95
