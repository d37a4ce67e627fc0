"""LabelRegTraining's logic on real MRML (slicer-core): a real training process, watched, stopped, resumed."""

import os
import signal
import time

import pytest
import torch
from LabelRegLib.data.phantom import make_phantom_pair, write_phantom_folder
from LabelRegLib.slicer.training_panel import can_resume, output_directory

slicer_standalone = pytest.importorskip("LabelRegLib.slicer.standalone")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def modules():
    slicer = slicer_standalone.install()
    import LabelReg
    import LabelRegTraining

    return slicer, LabelReg, LabelRegTraining


def _parameters(logic, data, model, iterations=40):
    p = logic.getParameterNode()
    p.dataFolder, p.outputModel = str(data), str(model)
    p.numChannels, p.iterations, p.minibatchSize, p.validationFraction, p.device = 4, iterations, 2, 0.25, "cpu"
    return p


def _wait(logic, condition, timeout=300):
    from LabelRegLib.slicer.self_tests import wait_for

    return wait_for(logic, condition, timeout)


def _process_tree(pid) -> list:
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def test_start_stop_resume_finish_and_register(modules, phantom_folder, tmp_path, request):
    slicer, LabelReg, LabelRegTraining = modules
    logic = LabelRegTraining.LabelRegTrainingLogic()
    p = _parameters(logic, phantom_folder, tmp_path / "model.pt", iterations=80)
    assert logic.summariseData(p)[1] == []
    request.addfinalizer(logic.stop)
    logic.start(p)
    table = p.progressTable
    assert table is not None and table.GetNumberOfRows() == 0
    assert _wait(logic, lambda: table.GetNumberOfRows() >= 3 and can_resume(str(p.outputModel))), p.status
    tree = _process_tree(logic.process.pid)
    started = time.monotonic()
    logic.stop()
    assert time.monotonic() - started < 5
    assert logic.state == "stopped" and not any(member.is_running() for member in tree)
    checkpoint = torch.load(os.path.join(output_directory(str(p.outputModel)), "checkpoint.pt"), weights_only=True)
    assert checkpoint["step"] >= 1
    rows_before = table.GetNumberOfRows()

    logic.start(p, resume=True)
    assert _wait(logic, lambda: logic.state in ("finished", "crashed")), p.status
    assert logic.state == "finished", p.status
    steps = [table.GetTable().GetValue(r, 0).ToDouble() for r in range(table.GetNumberOfRows())]
    assert table.GetNumberOfRows() > rows_before
    assert steps[rows_before] > checkpoint["step"]  # the step count continues
    assert steps[-1] == 80
    assert os.path.realpath(p.outputModel) in LabelReg.LabelRegLogic.modelCatalogue().extra
    labels = [path for _, path in LabelReg.LabelRegLogic.modelCatalogue().models()]
    assert os.path.realpath(p.outputModel) in labels
    chart = logic.plotChartNode(table)
    assert chart.GetNumberOfPlotSeriesNodes() == 2 and logic.plotChartNode(table) is chart
    assert (
        slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLPlotViewNode") == 0
    )  # shown in the layout's plot view, no view of its own

    from LabelRegLib.slicer.mrml import update_volume_node

    pair = make_phantom_pair(1001)
    moving = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MR")
    fixed = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "US")
    update_volume_node(moving, pair.moving_image)
    update_volume_node(fixed, pair.fixed_image)
    transform = LabelReg.LabelRegLogic().register(moving, fixed, modelPath=str(p.outputModel), device="cpu")
    assert slicer.util.arrayFromGridTransform(transform).shape == pair.fixed_image.shape + (3,)


def test_the_training_survives_the_scene_closing_and_its_table_deleted(modules, phantom_folder, tmp_path, request):
    """Issue 24, 3: closing the scene resets the parameter node, and the user may delete the table: the training
    goes on, its curves go on in a new table holding every row, and the finished model is the real file."""
    slicer, LabelReg, LabelRegTraining = modules
    logic = LabelRegTraining.LabelRegTrainingLogic()
    request.addfinalizer(logic.stop)
    p = _parameters(logic, phantom_folder, tmp_path / "model.pt", iterations=30)
    logic.start(p)
    assert _wait(logic, lambda: p.progressTable.GetNumberOfRows() >= 2), p.status
    slicer.mrmlScene.Clear(0)  # the scene closes: the parameter node is reset, the table is gone
    assert _wait(logic, lambda: logic.getParameterNode().progressTable is not None), logic.getParameterNode().status
    slicer.mrmlScene.RemoveNode(logic.getParameterNode().progressTable)  # the user deletes the new table too
    assert _wait(logic, lambda: logic.state in ("finished", "crashed")), logic.getParameterNode().status
    p = logic.getParameterNode()
    assert logic.state == "finished" and p.status.startswith("Finished: model written to"), p.status
    table = p.progressTable
    steps = [table.GetTable().GetValue(r, 0).ToDouble() for r in range(table.GetNumberOfRows())]
    assert steps[-1] == 30 and steps == sorted(steps) and len(steps) >= 30  # every row, none twice
    extra = LabelReg.LabelRegLogic.modelCatalogue().extra
    assert os.path.realpath(tmp_path / "model.pt") in extra and os.path.realpath("") not in extra


def test_fine_tuning_starts_from_the_chosen_model_with_its_architecture(modules, phantom_folder, tmp_path, request):
    from LabelRegLib.nets.model_file import read_model_payload

    slicer, LabelReg, LabelRegTraining = modules
    start = LabelReg.LabelRegLogic.modelCatalogue().bundled
    logic = LabelRegTraining.LabelRegTrainingLogic()
    p = _parameters(logic, phantom_folder, tmp_path / "tuned.pt", iterations=2)
    p.numChannels, p.networkType, p.initialModel = 4, "global", start  # panel settings that the model overrides
    request.addfinalizer(logic.stop)
    logic.start(p)
    assert _wait(logic, lambda: logic.state in ("finished", "crashed")), p.status
    assert logic.state == "finished", p.status
    header = read_model_payload(tmp_path / "tuned.pt")[0]
    bundled = read_model_payload(start)[0]
    assert (
        header["architecture"] == bundled["architecture"]
        and header["working_spacing_mm"] == bundled["working_spacing_mm"]
    )
    assert header["training"]["initial_model"] == os.path.abspath(start)


def test_bad_folders_are_reported_before_any_process_starts(modules, tmp_path):
    _slicer, _LabelReg, LabelRegTraining = modules
    logic = LabelRegTraining.LabelRegTrainingLogic()
    process = logic.process  # the session's training process (another test's, or none)
    write_phantom_folder(tmp_path / "data", n_pairs=3)
    pair = make_phantom_pair(0)
    from LabelRegLib.core.io import write_volume

    write_volume(
        pair.fixed_labels[:2], tmp_path / "data" / "fixed_labels" / "phantom001.nii.gz"
    )  # landmark-count mismatch
    (tmp_path / "data" / "fixed_images" / "phantom002.nii.gz").rename(
        tmp_path / "data" / "fixed_images" / "other.nii.gz"
    )  # unmatched
    p = _parameters(logic, tmp_path / "data", tmp_path / "model.pt")
    text, problems = logic.summariseData(p)
    assert any("phantom001.nii.gz: has 2 landmark(s)" in line for line in problems)
    assert any("other" in line for line in problems) and any("phantom002" in line for line in problems)
    assert "problem(s)" in text and "usable pair(s)" in text
    p.dataFolder = tmp_path / "nothing"
    text, problems = logic.summariseData(p)
    assert any("moving_images: missing folder" in line for line in problems)
    assert logic.process is process


def test_a_training_killed_from_outside_is_reported(modules, phantom_folder, tmp_path, request):
    _slicer, _LabelReg, LabelRegTraining = modules
    logic = LabelRegTraining.LabelRegTrainingLogic()
    request.addfinalizer(logic.stop)
    p = _parameters(logic, phantom_folder, tmp_path / "model.pt", iterations=500)
    logic.start(p)
    assert _wait(logic, lambda: logic.progress.get("step", 0) >= 1), p.status
    os.kill(logic.process.pid, signal.SIGKILL)
    assert _wait(logic, lambda: logic.state == "crashed", timeout=30)
    assert "ended unexpectedly (killed by signal 9)" in p.status


def test_training_self_test(modules):
    slicer, _LabelReg, LabelRegTraining = modules
    before = slicer.mrmlScene.GetNumberOfNodes()
    LabelRegTraining.LabelRegTrainingTest().runTest()
    assert slicer.mrmlScene.GetNumberOfNodes() <= before + 2  # the parameter node may stay, as in Slicer
