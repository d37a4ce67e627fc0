"""LabelReg's Slicer logic on Slicer's real MRML classes (slicer-core), through LabelRegLib/slicer/standalone.py."""

import csv
import re
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import vtk
from helpers import REPO, subprocess_env, with_empty_border
from LabelRegLib.core.io import write_volume
from LabelRegLib.core.metrics import dice, tre_mm
from LabelRegLib.core.sitk_geometry import LPS_TO_RAS
from LabelRegLib.core.volume import Volume
from LabelRegLib.data.phantom import make_phantom_pair
from LabelRegLib.registration.registrar import Registrar, warp_volume

slicer_standalone = pytest.importorskip("LabelRegLib.slicer.standalone")


def _matrix(array):
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(array[r, c]))
    return m


def _volume_node(slicer, volume: Volume, name: str, parent=None, node_class="vtkMRMLScalarVolumeNode"):
    """A volume node showing ``volume`` in world RAS; under ``parent`` (a linear transform node) its own geometry compensates."""
    from LabelRegLib.slicer.mrml import update_volume_node

    node = slicer.mrmlScene.AddNewNodeByClass(node_class, name)
    local = volume
    if parent is not None:
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        world = np.array([[to_world.GetElement(r, c) for c in range(4)] for r in range(4)])
        local = volume.with_array(volume.array)
        local.ijk_to_ras = np.linalg.inv(world) @ volume.ijk_to_ras
        node.SetAndObserveTransformNodeID(parent.GetID())
    update_volume_node(node, local)
    return node


def _phantom_scene(slicer, seed=1002):
    """Oblique anisotropic US; MR under a parent linear transform; MR segmentation (gland + landmark 1) under it too."""
    pair = make_phantom_pair(seed, oblique=True)
    parent = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "MR pose")
    pose = np.eye(4)
    angle = np.deg2rad(10)
    pose[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    pose[:3, 3] = [5.0, -3.0, 12.0]
    parent.SetMatrixTransformToParent(_matrix(pose))
    moving = _volume_node(slicer, pair.moving_image, "MR", parent)
    fixed = _volume_node(slicer, pair.fixed_image, "US")
    labels = np.zeros(pair.moving_image.shape, np.uint8)
    labels[pair.moving_labels[0].array > 0.5] = 1
    labels[pair.moving_labels[1].array > 0.5] = 2
    labelmap = _volume_node(
        slicer, pair.moving_image.with_array(labels), "MR labels", parent, "vtkMRMLLabelMapVolumeNode"
    )
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "MR segmentation")
    segmentation.SetAndObserveTransformNodeID(parent.GetID())
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    slicer.mrmlScene.RemoveNode(labelmap)
    return pair, moving, fixed, segmentation, parent


def _node_volume(slicer, node) -> Volume:
    from LabelRegLib.slicer.mrml import volume_from_node

    return volume_from_node(node, node.GetName())


def test_logic_registers_a_phantom_and_the_exported_labelmap_matches_the_engine(slicer, scene, LabelReg):
    pair, moving, fixed, segmentation, _parent = _phantom_scene(slicer)
    logic = LabelReg.LabelRegLogic()
    transform = logic.register(moving, fixed, segmentationNode=segmentation, createLabelmap=True)
    assert transform.IsA("vtkMRMLGridTransformNode")
    assert moving.GetTransformNodeID() == transform.GetID() and segmentation.GetTransformNodeID() == transform.GetID()
    labelmap = _node_volume(slicer, logic.lastLabelmapNode)
    assert labelmap.same_geometry(pair.fixed_image)
    gland_after = labelmap.with_array((labelmap.array > 0).astype(np.float32))
    landmark_after = labelmap.with_array((labelmap.array == 2).astype(np.float32))

    # the engine alone, on the same pair in world coordinates
    result = Registrar(None, "cpu").register(pair.moving_image, pair.fixed_image)
    # Slicer resamples labelmaps with nearest-neighbour interpolation; so does the engine here
    engine_gland = warp_volume(pair.moving_labels[0], result.displacement, "nearest")
    engine_landmark = warp_volume(pair.moving_labels[1], result.displacement, "nearest")
    target_gland, target_landmark = pair.fixed_labels[0], pair.fixed_labels[1]
    before_gland = warp_volume(
        pair.moving_labels[0],
        result.displacement.with_array(np.zeros_like(result.displacement.array) + result.initial[:3, 3]),
    )
    before_landmark = warp_volume(
        pair.moving_labels[1],
        result.displacement.with_array(np.zeros_like(result.displacement.array) + result.initial[:3, 3]),
    )

    slicer_dice, engine_dice = dice(gland_after.array, target_gland.array), dice(engine_gland.array, target_gland.array)
    slicer_tre, engine_tre = tre_mm(landmark_after, target_landmark), tre_mm(engine_landmark, target_landmark)
    print(
        f"gland Dice before {dice(before_gland.array, target_gland.array):.4f} slicer {slicer_dice:.4f} engine {engine_dice:.4f}; "
        f"landmark TRE before {tre_mm(before_landmark, target_landmark):.3f} slicer {slicer_tre:.3f} engine {engine_tre:.3f}"
    )
    assert slicer_dice > dice(before_gland.array, target_gland.array)
    assert slicer_tre < tre_mm(before_landmark, target_landmark)
    assert slicer_dice == pytest.approx(engine_dice, abs=1e-3)
    assert slicer_tre == pytest.approx(engine_tre, abs=1e-3)


def test_the_predicted_glands_and_the_quality_score_reach_the_scene(slicer, scene, LabelReg):
    pair, moving, fixed, _segmentation, _parent = _phantom_scene(slicer)
    us_pose = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "US pose")
    fixed.SetAndObserveTransformNodeID(us_pose.GetID())  # identity: the US's frame is kept, not its position
    logic = LabelReg.LabelRegLogic()
    transform = logic.register(moving, fixed, showGlands=True)

    quality = logic.modelCatalogue().registrar(None, "auto").glands is not None
    assert quality, "the bundled gland model is loaded by default"
    assert 0.0 <= float(transform.GetAttribute("LabelReg.QualityDice")) <= 1.0
    assert float(transform.GetAttribute("LabelReg.QualityCentroidMm")) >= 0.0
    assert transform.GetAttribute("LabelReg.QualityFlag") in ("0", "1")
    assert "self-check" in logic.lastStatus
    mr_gland, us_gland = logic.lastGlandNodes
    assert mr_gland.GetTransformNodeID() == transform.GetID(), "the MR gland moves with the MR"
    assert us_gland.GetTransformNodeID() == us_pose.GetID(), "the US gland stays in the US's frame"
    assert mr_gland.GetSegmentation().GetNumberOfSegments() == 1
    # shown where the engine found it: the US gland's centre in world RAS
    labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportAllSegmentsToLabelmapNode(us_gland, labelmap)
    shown = _node_volume(slicer, labelmap)
    engine = Registrar(None, "cpu").register(pair.moving_image, pair.fixed_image)
    assert tre_mm(shown.with_array((shown.array > 0).astype(np.float32)), engine.glands[1].probability) < 2.0
    slicer.mrmlScene.RemoveNode(labelmap)

    count = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    logic.register(moving, fixed, transform, showGlands=True)
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == count, "the gland nodes are reused"


def test_a_us_larger_than_the_model_was_trained_on_registers_with_the_warning_in_the_status(slicer, scene, LabelReg):
    pair, moving, fixed_node, _segmentation, _parent = _phantom_scene(slicer)
    wide = _volume_node(slicer, with_empty_border(pair.fixed_image, 12), "wide US")  # 15 mm more on every side
    logic = LabelReg.LabelRegLogic()
    transform = logic.register(moving, wide)
    assert transform.IsA("vtkMRMLGridTransformNode")
    field_of_view, *others = logic.lastWarnings
    assert "larger than the 26x38x28 the model was trained at" in field_of_view
    # the registration of so wide a US is poor (the model card's Limits): the self-check may flag it as well
    assert all("self-check" in message for message in others)
    assert logic.lastStatus.startswith("Registered in") and logic.lastStatus.endswith(logic.lastWarnings[-1])
    # the phantom itself is smaller than the training volumes: padded, no field-of-view warning; one self-check line
    # (a warning for this oblique phantom: Dice 0.71, below the gland model's threshold 0.75)
    logic.register(moving, fixed_node, transform)
    done, quality = logic.lastStatus.splitlines()
    (flagged,) = logic.lastWarnings
    assert "self-check: predicted glands overlap with Dice 0.71" in flagged and "below 0.75" in flagged
    assert done.startswith("Registered in") and quality == f"Warning: {flagged}"
    # the network's share of the time, not the whole engine's (segmentation, two starts, self-checks)
    seconds, network = (float(number) for number in re.findall(r"([0-9.]+) s\b", done))
    assert 0 < network < seconds


def _grid_transform_node(slicer, displacement: Volume):
    from LabelRegLib.slicer.mrml import set_grid_transform

    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode", "known field")
    set_grid_transform(node, displacement)
    return node


def test_grid_transform_node_moves_points_exactly_as_the_field_and_simpleitk_reads_its_file(slicer, scene, tmp_path):
    pair = make_phantom_pair(3, oblique=True)
    field = pair.true_displacement
    node = _grid_transform_node(slicer, field)
    transform = node.GetTransformFromParent()
    rng = np.random.default_rng(0)
    ijk = np.c_[rng.uniform(2, np.array(field.shape[::-1]) - 3, (50, 3)), np.ones(50)]
    points = (field.ijk_to_ras @ ijk.T).T[:, :3]
    expected = points + np.array([resample_point(field, p) for p in points])
    moved = np.array([transform.TransformPoint(p) for p in points])
    assert np.abs(moved - expected).max() < 0.01
    # at voxel centres the field's own vectors, exactly
    centre = field.ijk_to_ras @ np.array([7, 9, 11, 1.0])
    assert np.allclose(transform.TransformPoint(centre[:3]), centre[:3] + field.array[11, 9, 7], atol=1e-4)
    # written by Slicer's transform storage node, read by SimpleITK as the same mapping (in LPS)
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storage.SetFileName(str(tmp_path / "field.h5"))
    assert storage.WriteData(node)
    itk = sitk.ReadTransform(str(tmp_path / "field.h5"))
    flip = np.diag(LPS_TO_RAS)[:3]
    moved_itk = np.array([np.array(itk.TransformPoint(tuple(p * flip))) * flip for p in points])
    assert np.abs(moved_itk - expected).max() < 0.01


def resample_point(field: Volume, point: np.ndarray) -> np.ndarray:
    """Trilinear value of a vector field at a RAS point (reference for the tests)."""
    from LabelRegLib.core.spatial import resample_volume

    single = np.eye(4)
    single[:3, 3] = point
    return resample_volume(field, (1, 1, 1), single).array[0, 0, 0]


def test_mr_points_under_the_transform_land_on_the_us_landmarks(slicer, scene, LabelReg):
    """Biopsy targets placed on the MR follow the transform onto the US (Slicer inverts the grid itself)."""
    from LabelRegLib.core.metrics import centroid_ras
    from LabelRegLib.slicer.mrml import set_grid_transform

    pair, moving, fixed, _segmentation, _parent = _phantom_scene(slicer, seed=1002)
    logic = LabelReg.LabelRegLogic()
    transform = logic.register(moving, fixed)
    # the known deformation, put into the same node by the same code path, with the MR's parent folded in
    from LabelRegLib.registration.worker import to_moving_frame
    from LabelRegLib.slicer.mrml import transform_to_world

    known = to_moving_frame(pair.true_displacement, np.linalg.inv(transform_to_world(_parent, "MR pose")))
    points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "targets")
    points.SetAndObserveTransformNodeID(_parent.GetID())
    for label in pair.moving_labels[1:]:
        world = centroid_ras(label)
        local = np.linalg.inv(transform_to_world(_parent, "MR pose")) @ np.r_[world, 1]
        points.AddControlPoint(vtk.vtkVector3d(*local[:3]))
    landed_network = _world_points(points, transform)
    set_grid_transform(transform, known)
    landed_known = _world_points(points, transform)
    targets = np.array([centroid_ras(label) for label in pair.fixed_labels[1:]])
    assert np.linalg.norm(landed_known - targets, axis=1).max() < 1.0
    before = np.array([centroid_ras(label) for label in pair.moving_labels[1:]]) - (
        pair.moving_image.center_ras - pair.fixed_image.center_ras
    )
    print(
        "target error mm: centres-aligned",
        np.linalg.norm(before - targets, axis=1).round(2),
        "network",
        np.linalg.norm(landed_network - targets, axis=1).round(2),
    )


def _world_points(markups, transform) -> np.ndarray:
    markups.SetAndObserveTransformNodeID(transform.GetID())
    world = np.zeros(3)
    result = []
    for index in range(markups.GetNumberOfControlPoints()):
        markups.GetNthControlPointPositionWorld(index, world)
        result.append(world.copy())
    return np.array(result)


def test_live_update_reruns_into_the_same_node_and_frames_do_not_queue(slicer, scene, LabelReg, monkeypatch):
    pair, moving, fixed, _segmentation, _parent = _phantom_scene(slicer, seed=1003)
    logic = LabelReg.LabelRegLogic()
    transform = logic.register(moving, fixed)
    fields = [slicer.util.arrayFromGridTransform(transform).copy()]
    statuses = []
    logic.startLiveUpdate(moving, fixed, transform, onUpdate=statuses.append)
    for shift in (2, 4, 6):  # three frames, each after the previous registration finished
        slicer.util.updateVolumeFromArray(fixed, np.roll(pair.fixed_image.array, shift, axis=2))
        assert logic.waitForLiveResults(timeout=60)
        fields.append(slicer.util.arrayFromGridTransform(transform).copy())
    assert logic.registrationCount == 4 and len(statuses) == 3
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLGridTransformNode") == 1
    assert all(not np.array_equal(a, b) for a, b in zip(fields, fields[1:]))
    assert "live latency" in logic.lastStatus
    assert moving.GetTransformNodeID() == transform.GetID()
    fixed.SetName("renamed US")  # not a new frame: no registration
    assert logic.waitForLiveResults(timeout=60) and logic.liveStatistics["frames"] == 3
    logic.stopLiveUpdate()

    # the network runs in the worker process: while it registers a frame the main thread goes on and more frames
    # arrive; they are not queued: one more registration runs, on the latest frame, and no frame is registered twice
    engine = logic.engine()
    sent = []
    monkeypatch.setattr(engine, "submit", lambda request, submit=engine.submit: sent.append(request) or submit(request))
    count = logic.registrationCount
    logic.startLiveUpdate(moving, fixed, transform)
    for shift in range(9, 15):  # the first goes to the worker at once, the others arrive while it runs
        slicer.util.updateVolumeFromArray(fixed, np.roll(pair.fixed_image.array, shift, axis=2))
    assert logic.waitForLiveResults(timeout=60)
    logic.stopLiveUpdate()
    stats = logic.liveStatistics
    frames = [request["fixed"].array for request in sent if request.get("op") != "load"]
    assert len(frames) == 2 and np.array_equal(frames[1], np.roll(pair.fixed_image.array, 14, axis=2))
    assert (stats["frames"], stats["processed"], stats["dropped"]) == (6, 2, 4)
    assert logic.registrationCount == count + 2 and len(stats["latency_s"]) == 2


def _write_case(slicer, pair, folder):

    write_volume(pair.moving_image, folder / f"{pair.name}_mr.nii.gz")
    write_volume(pair.fixed_image, folder / f"{pair.name}_us.nrrd")
    labels = np.zeros(pair.moving_image.shape, np.uint8)
    labels[pair.moving_labels[0].array > 0.5] = 1
    labels[pair.moving_labels[1].array > 0.5] = 2
    labelmap = _volume_node(
        slicer, pair.moving_image.with_array(labels), "labels", node_class="vtkMRMLLabelMapVolumeNode"
    )
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(folder / f"{pair.name}_mr.seg.nrrd"))
    assert storage.WriteData(segmentation)
    slicer.mrmlScene.Clear(0)


def test_batch_script_under_plain_python_matches_the_logic(slicer, scene, LabelReg, tmp_path):
    from LabelRegLib.cli import main
    from LabelRegLib.core.io import read_volume
    from LabelRegLib.core.metrics import centroid_ras
    from LabelRegLib.core.point_files import read_points
    from LabelRegLib.core.transform_io import read_displacement

    pairs = [make_phantom_pair(seed) for seed in (1001, 1002)]
    rows = []
    for pair in pairs:
        _write_case(slicer, pair, tmp_path)
        rows.append(
            {
                "moving": tmp_path / f"{pair.name}_mr.nii.gz",
                "fixed": tmp_path / f"{pair.name}_us.nrrd",
                "output_transform": tmp_path / f"{pair.name}.h5",
                "segmentation": tmp_path / f"{pair.name}_mr.seg.nrrd",
                "output_segmentation": tmp_path / f"{pair.name}_on_us.seg.nrrd",
                "output_labelmap": tmp_path / f"{pair.name}_labels_on_us.nrrd",
                "moving_points": tmp_path / f"{pair.name}_targets.csv",
                "points_on_fixed": tmp_path / f"{pair.name}_targets_on_us.csv",
            }
        )
        centroids = [centroid_ras(label) for label in pair.moving_labels[1:]]
        rows[-1]["moving_points"].write_text(
            "label,r,a,s\n" + "".join(f"landmark {n},{p[0]},{p[1]},{p[2]}\n" for n, p in enumerate(centroids, 1))
        )
    with open(tmp_path / "cases.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    script = REPO / "LabelReg" / "Resources" / "Scripts" / "labelreg_batch.py"
    run = subprocess.run(
        [sys.executable, str(script), "--cases", str(tmp_path / "cases.csv")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("Registered in") == 2
    logic = LabelReg.LabelRegLogic()
    for pair, row in zip(pairs, rows):
        moving = _volume_node(slicer, read_volume(row["moving"]), "MR")
        fixed = _volume_node(slicer, read_volume(row["fixed"]), "US")
        transform = logic.register(moving, fixed)
        from LabelRegLib.slicer.mrml import grid_transform_displacement

        ours = grid_transform_displacement(transform)
        written = read_displacement(row["output_transform"])
        assert written.same_geometry(ours, atol=1e-3)
        assert np.abs(written.array - ours.array).max() < 1e-3
        labelmap = read_volume(row["output_labelmap"])
        assert labelmap.same_geometry(pair.fixed_image, atol=1e-3)
        assert {0.0, 1.0, 2.0} >= set(np.unique(labelmap.array))
        assert row["output_segmentation"].is_file()
        # the targets on the US: as labelreg map-points --to us maps them through the written transform
        assert main(["map-points", "--transform", str(row["output_transform"]), "--points",
                     str(row["moving_points"]), "--output", str(tmp_path / "check.csv"), "--to", "us",
                     "--overwrite"]) == 0  # fmt: skip
        assert np.allclose(read_points(row["points_on_fixed"]).ras, read_points(tmp_path / "check.csv").ras, atol=1e-3)
        slicer.mrmlScene.Clear(0)


def test_mr_targets_shown_on_the_us_are_where_map_points_puts_them(slicer, scene, LabelReg, tmp_path):
    """Issue 27: a point list of MR targets (in the MR's frame, under its pose) goes under the output transform:
    Slicer inverts the grid itself, and the targets it shows on the US are map-points --to us within 0.1 mm,
    after registering again too."""
    from LabelRegLib.cli import main
    from LabelRegLib.core.metrics import centroid_ras
    from LabelRegLib.core.point_files import read_points

    pair, moving, fixed, _segmentation, parent = _phantom_scene(slicer)
    to_local = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformFromWorld(to_local)
    local = np.array([[to_local.GetElement(r, c) for c in range(4)] for r in range(4)])
    targets = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "biopsy targets")
    targets.SetAndObserveTransformNodeID(parent.GetID())
    for n, label in enumerate(pair.moving_labels[1:], 1):  # the landmarks' centres, in the MR's own frame
        targets.AddControlPoint(*(local[:3, :3] @ centroid_ras(label) + local[:3, 3]), f"landmark {n}")
    logic = LabelReg.LabelRegLogic()
    transform = logic.register(moving, fixed, targetsNode=targets)
    transform = logic.register(moving, fixed, transform, targetsNode=targets)  # again: the targets follow
    assert targets.GetTransformNodeID() == transform.GetID()
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storage.SetFileName(str(tmp_path / "mr_to_us.h5"))
    assert storage.WriteData(transform)
    count = targets.GetNumberOfControlPoints()
    rows = [f"{targets.GetNthControlPointLabel(n)},{','.join(map(str, targets.GetNthControlPointPosition(n)))}"
            for n in range(count)]  # fmt: skip
    (tmp_path / "targets.csv").write_text("label,r,a,s\n" + "\n".join(rows) + "\n")
    assert main(["map-points", "--transform", str(tmp_path / "mr_to_us.h5"), "--points", str(tmp_path / "targets.csv"),
                 "--output", str(tmp_path / "on_us.csv"), "--to", "us"]) == 0  # fmt: skip
    shown = np.array([targets.GetNthControlPointPositionWorld(n) for n in range(count)])
    assert np.linalg.norm(shown - read_points(tmp_path / "on_us.csv").ras, axis=-1).max() < 0.1


def test_bad_input_gives_clear_messages_and_leaves_no_nodes(slicer, scene, LabelReg, tmp_path):
    from LabelRegLib.core.errors import DeviceError, InputError, ModelFileError

    pair, moving, fixed, segmentation, _parent = _phantom_scene(slicer)
    logic = LabelReg.LabelRegLogic()
    before = scene.GetNumberOfNodes()

    def check(error_type, match, *args, **kwargs):
        with pytest.raises(error_type, match=match):
            logic.register(*args, **kwargs)
        assert scene.GetNumberOfNodes() == before
        assert moving.GetTransformNodeID() == _parent.GetID()

    check(InputError, "moving volume: no volume selected", None, fixed)
    check(InputError, "fixed volume: no volume selected", moving, None)
    flat = _volume_node(slicer, Volume(np.zeros((1, 20, 20), np.float32), np.eye(4)), "flat US")
    empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty US")
    before = scene.GetNumberOfNodes()
    check(InputError, "fixed volume 'flat US'.*not a 3D volume", moving, flat)
    check(InputError, "fixed volume 'empty US'.*has no image data", moving, empty)
    junk = tmp_path / "notes.pt"
    junk.write_text("not a model")
    check(ModelFileError, "notes.pt: is truncated, damaged or not a model file", moving, fixed, modelPath=str(junk))
    import os

    import torch

    class RunsCode:
        def __reduce__(self):
            return (os.system, ("touch /tmp/labelreg-slicer-pwned",))

    torch.save({"format": "labelreg-model", "header": RunsCode()}, tmp_path / "evil.pt")
    check(ModelFileError, "evil.pt: refused", moving, fixed, modelPath=str(tmp_path / "evil.pt"))
    assert not os.path.exists("/tmp/labelreg-slicer-pwned")
    if not torch.cuda.is_available():
        check(DeviceError, "'cuda' was requested but is not available", moving, fixed, device="cuda")
    other = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "elsewhere")
    before = scene.GetNumberOfNodes()
    check(InputError, "elsewhere.*not in the moving volume's frame", moving, fixed, segmentationNode=other)


def test_the_self_test_runs_and_cleans_up(slicer, scene, LabelReg):
    before = scene.GetNumberOfNodes()
    LabelReg.LabelRegTest().runTest()
    assert scene.GetNumberOfNodes() == before


def test_slicer_reads_files_like_the_engine(slicer, scene, tmp_path):
    from conftest import oblique_geometry
    from LabelRegLib.core.io import read_volume

    volume = Volume(np.random.default_rng(1).random((7, 9, 11)).astype(np.float32), oblique_geometry())
    for suffix in (".nii.gz", ".nrrd"):
        write_volume(volume, tmp_path / f"v{suffix}")
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
        storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        storage.SetFileName(str(tmp_path / f"v{suffix}"))
        assert storage.ReadData(node)
        from_slicer = _node_volume(slicer, node)
        assert np.allclose(from_slicer.ijk_to_ras, read_volume(tmp_path / f"v{suffix}").ijk_to_ras, atol=1e-5)
        assert np.array_equal(from_slicer.array, volume.array)
