"""What the MRML harness alone could not see (issue 17): each test names the defect it guards against.

Static checks read the module files and ``.ui`` files (Qt cannot run here); process, thread and
import checks run for real; MRML checks run on slicer-core through LabelRegLib/slicer/standalone.py.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import pytest
from helpers import REPO, subprocess_env

slicer_standalone = pytest.importorskip("LabelRegLib.slicer.standalone")
TRAINING = REPO / "LabelRegTraining" / "LabelRegTraining.py"
LABELREG = REPO / "LabelReg" / "LabelReg.py"


@pytest.fixture(scope="module")
def slicer():
    return slicer_standalone.install()


@pytest.fixture(scope="module")
def modules(slicer):
    import LabelReg
    import LabelRegTraining

    return LabelReg, LabelRegTraining


@pytest.fixture
def scene(slicer):
    slicer.mrmlScene.Clear(0)
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(0)


def _run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    prelude = f"import sys; sys.path.insert(0, {str(REPO / 'LabelReg')!r})\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
        **kwargs,
    )


# ---------------------------------------------------------------- 2. stop on every platform, never outlive Slicer
def test_module_files_use_no_unix_only_process_calls_and_launch_through_slicer():
    source = TRAINING.read_text()
    for unix_only in ("os.killpg", "os.getpgid", "signal.SIGKILL", "start_new_session"):
        assert unix_only not in source, f"LabelRegTraining.py uses {unix_only}, which does not exist on Windows"
    assert "slicer.util.launchConsoleProcess(" in source


_TREE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("with_psutil", [True, False])
def test_stop_ends_the_whole_process_tree(with_psutil, monkeypatch):
    from LabelRegLib.core import processes
    from LabelRegLib.core.processes import process_alive
    from LabelRegLib.slicer.training_process import TrainingProcess

    if not with_psutil:
        monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil -> ImportError: the pgrep fallback
    training = TrainingProcess()
    training.start([sys.executable, "-u", "-c", _TREE])
    deadline = time.monotonic() + 30
    while not training.output_tail and time.monotonic() < deadline:
        training.poll()
        time.sleep(0.05)
    grandchild = int(training.output_tail[0])
    assert process_alive(grandchild)
    training.stop(timeout=5)
    assert training.state == "stopped" and training.process.returncode != 0
    deadline = time.monotonic() + 5
    while process_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(grandchild), "the training's own child processes end too"
    assert processes.end_process_tree  # (the function both paths went through)


def test_windows_stop_ends_the_tree_with_taskkill(monkeypatch):
    """Without psutil on Windows, the tree is ended by ``taskkill /T /F`` (checked here by the command it runs)."""
    from LabelRegLib.core import processes

    calls = []
    monkeypatch.setitem(sys.modules, "psutil", None)
    monkeypatch.setattr(processes.os, "name", "nt")
    monkeypatch.setattr(processes.subprocess, "run", lambda command, **kwargs: calls.append((command, kwargs)))

    class Finished:
        pid = 4242

        def wait(self, timeout=None):
            return 0

    processes.end_process_tree(Finished(), timeout=1)
    assert calls[0][0] == ["taskkill", "/F", "/T", "/PID", "4242"]
    assert calls[0][1]["creationflags"] == processes.CREATE_NO_WINDOW


@pytest.mark.slow
@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_training_ends_when_the_application_that_started_it_is_gone(phantom_folder, tmp_path, sigint):
    """Also when the training inherits SIGINT ignored (an application started from a background job)."""
    import signal

    from LabelRegLib.core.processes import launch_hidden
    from LabelRegLib.slicer.training_process import TrainingProcess, train_command

    if sigint == "ignored" and os.name == "nt":
        pytest.skip("POSIX signal dispositions")
    application = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])

    def ignoring_sigint(arguments):
        return subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip

    training = TrainingProcess(launch_hidden if sigint == "default" else ignoring_sigint)
    training.start(
        train_command(
            sys.executable,
            [
                "--data_dir",
                str(phantom_folder),
                "--output_dir",
                str(tmp_path / "run"),
                "--total_iterations",
                "100000",
                "--num_channel_initial",
                "4",
                "--device",
                "cpu",
            ],
            parent_pid=application.pid,
        )
    )
    try:
        deadline = time.monotonic() + 120
        while "step" not in training.progress and time.monotonic() < deadline:
            training.poll()
            time.sleep(0.1)
        assert training.is_running, training.output_tail
        application.kill()  # the application crashes: no atexit, no Stop
        application.wait()
        deadline = time.monotonic() + 30
        while training.is_running and time.monotonic() < deadline:
            time.sleep(0.1)
        training.poll()
        assert not training.is_running and training.process.returncode == 130
        assert any("interrupted" in line for line in training.output_tail), training.output_tail
        assert not any("Traceback" in line for line in training.output_tail)
    finally:
        training.stop()
        application.kill()


# ---------------------------------------------------------------- 3. optional path fields can be cleared
def test_no_path_field_is_bound_to_the_parameter_node_and_the_widget_syncs_each(modules):
    """CTK emits no currentPathChanged for an empty text: a bound ctkPathLineEdit can never be cleared."""
    _LabelReg, LabelRegTraining = modules

    ui = ET.parse(REPO / "LabelRegTraining" / "Resources" / "UI" / "LabelRegTraining.ui")
    path_edits = {w.get("name") for w in ui.iter("widget") if w.get("class") == "ctkPathLineEdit"}
    for widget in ui.iter("widget"):
        if widget.get("class") == "ctkPathLineEdit":
            bound = [p for p in widget.findall("property") if p.get("name") == "SlicerParameterName"]
            assert not bound, f"{widget.get('name')} is bound to the parameter node"
    assert set(LabelRegTraining.PATH_FIELDS.values()) == path_edits
    # issue 24, 4: CTK signals a path only while it matches the filter (`*.pt` -> `.*\.pt?$`), so backspacing left
    # "name." in the parameter; the combo box's editTextChanged gives every text, the empty one too
    source = TRAINING.read_text()
    assert '.comboBox().connect(\n                "editTextChanged(QString)"' in source or re.search(
        r'comboBox\(\)\.connect\(\s*"editTextChanged\(QString\)"', source
    )
    assert '"validInputChanged(bool)"' not in source and '"currentPathChanged(QString)"' not in source
    hints = LabelRegTraining.LabelRegTrainingParameterNode.allParameters
    for parameter in LabelRegTraining.PATH_FIELDS:
        assert hints[parameter] is str, f"{parameter}: an unset pathlib.Path shows as '.'"


def test_a_cleared_start_from_model_trains_from_scratch(slicer, scene, modules, tmp_path):
    _LabelReg, LabelRegTraining = modules
    logic = LabelRegTraining.LabelRegTrainingLogic()
    p = logic.getParameterNode()
    p.dataFolder, p.outputModel = str(tmp_path / "data"), str(tmp_path / "model.pt")
    p.initialModel = _LabelReg.LabelRegLogic.modelCatalogue().bundled
    assert "--initial_model" in logic.trainArguments(p, resume=False)
    p.initialModel = ""  # what the widget writes when the field is cleared
    assert "--initial_model" not in logic.trainArguments(p, resume=False)


def test_the_shared_panel_binds_on_enter_releases_on_exit_and_rebinds_after_the_scene_closes(
    slicer, scene, modules, monkeypatch
):
    """LabelRegLib.slicer.panel on a real scene (its close events) and slicer.util's VTKObservationMixin; Qt's
    part (loading the .ui, parameterNodeWrapper's GUI connection) recorded instead of run."""
    from LabelRegLib.slicer.panel import ParameterNodePanel

    LabelReg, _LabelRegTraining = modules
    calls = []
    monkeypatch.setattr(slicer.util, "loadUI", lambda path: type("Ui", (), {"setMRMLScene": lambda self, s: None})())
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda widget: "ui")

    class Widget:
        layout = type("Layout", (), {"addWidget": lambda self, w: None})()
        parent = type("Parent", (), {"isEntered": True})()
        resourcePath = staticmethod(lambda relative: relative)

    node_class = type(LabelReg.LabelRegLogic().getParameterNode())
    monkeypatch.setattr(node_class, "connectGui", lambda n, ui: calls.append(("connect", ui)) or 1, raising=False)
    monkeypatch.setattr(node_class, "disconnectGui", lambda n, tag: calls.append(("disconnect", tag)), raising=False)

    widget = Widget()
    panel = ParameterNodePanel(
        widget,
        "UI/LabelReg.ui",
        LabelReg.LabelRegLogic(),
        lambda caller, event: calls.append("modified"),
        onBound=lambda: calls.append("bound"),
        beforeSceneClose=lambda: calls.append("closing"),
    )
    assert widget.ui == "ui" and widget._parameterNode is None
    panel.bind()
    assert calls == [("connect", "ui"), "bound", "modified"] and widget._parameterNode is panel.node
    panel.node.applyToMoving = False
    assert calls[-1] == "modified"
    calls.clear()
    panel.release()  # exit: the node stays, the GUI and the observer go
    panel.node.applyToMoving = True
    assert calls == [("disconnect", 1)] and widget._parameterNode is not None
    calls.clear()
    panel.bind()
    calls.clear()
    slicer.mrmlScene.Clear(0)  # start and end of a scene close
    assert calls[:2] == ["closing", ("disconnect", 1)]
    assert calls[2:] == [("connect", "ui"), "bound", "modified"], "bound again after the close (module shown)"
    panel.cleanup()
    calls.clear()
    slicer.mrmlScene.Clear(0)
    assert calls == [], "observes nothing after cleanup"


# ---------------------------------------------------------------- 4. self-tests without torch and nibabel
def test_self_tests_skip_with_a_reason_where_torch_and_nibabel_are_missing():
    result = _run_python("""
        sys.modules["torch"] = None  # as on the extension build machines: import torch fails
        sys.modules["nibabel"] = None
        from LabelRegLib.slicer import standalone as slicer_standalone
        slicer_standalone.install()
        import LabelReg, LabelRegTraining
        LabelReg.LabelRegTest().runTest()
        LabelRegTraining.LabelRegTrainingTest().runTest()
    """)
    assert result.returncode == 0, result.stderr
    assert "LabelReg self-test skipped: torch, nibabel not installed" in result.stdout
    assert "LabelRegTraining self-test skipped: torch, nibabel not installed" in result.stdout


def test_every_user_action_that_reads_images_or_trains_checks_the_dependencies_first():
    tree = ast.parse(TRAINING.read_text())
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LabelRegTrainingWidget")
    for name, action in (("onCheckData", "self.logic.checkData"), ("onStart", "self.logic.start")):
        method = ast.unparse(next(f for f in widget.body if isinstance(f, ast.FunctionDef) and f.name == name))
        assert "ensureDependencies" in method, name
        assert method.index("ensureDependencies") < method.index(action), (
            f"{name} reads data before checking the dependencies"
        )
        assert "summariseData" not in method, f"{name} reads every image on the main thread (issue 24, 7)"
    register = ast.unparse(
        next(
            f
            for f in next(
                n
                for n in ast.parse(LABELREG.read_text()).body
                if isinstance(n, ast.ClassDef) and n.name == "LabelRegWidget"
            ).body
            if isinstance(f, ast.FunctionDef) and f.name == "onRegisterButton"
        )
    )
    assert register.index("ensureDependencies") < register.index("self.logic.register")


# ---------------------------------------------------------------- 5. opening a panel imports no torch
def test_opening_the_panels_imports_no_torch_and_reads_no_weights():
    result = _run_python("""
        from LabelRegLib.slicer import standalone as slicer_standalone
        slicer_standalone.install()
        import LabelReg, LabelRegTraining
        from LabelRegLib.nets import model_file
        model_file.read_model_payload = None  # reading the weights here would fail
        logic = LabelReg.LabelRegLogic()
        logic.getParameterNode()
        catalogue = logic.modelCatalogue()
        for label, path in catalogue.models():
            print(label, catalogue.summary(path))
        print(catalogue.device_summary())
        LabelRegTraining.LabelRegTrainingLogic().getParameterNode()
        assert "torch" not in sys.modules, "torch was imported"
    """)
    assert result.returncode == 0, result.stderr
    assert "Bundled LocalNet (default) local net, 16 channels" in result.stdout
    assert "devices: listed after the first registration" in result.stdout


def test_the_header_read_without_torch_is_the_checked_header(tiny_model, tmp_path):
    from LabelRegLib.core.errors import ModelFileError
    from LabelRegLib.nets.model_file import default_model_path, peek_model_header, read_model_header

    for path in (default_model_path(), tiny_model):
        assert peek_model_header(path) == read_model_header(path)
    (tmp_path / "notes.pt").write_text("not a model")
    with pytest.raises(ModelFileError, match="notes.pt: is truncated, damaged or not a model file"):
        peek_model_header(tmp_path / "notes.pt")


# ---------------------------------------------------------------- 6. live mode keeps the main thread free
class _Engine:
    """An engine that finishes a request only when the test says so (the worker's client, by its methods)."""

    def __init__(self):
        self.requests, self.finished = [], {}

    def submit(self, request):
        self.requests.append(request)
        return len(self.requests)

    def result(self, job_id):
        return self.finished.pop(job_id, None)

    def forget(self, job_id):
        self.finished.pop(job_id, None)

    def finish(self, value=None, error=None):
        from LabelRegLib.registration.worker_client import JobResult

        job = len(self.requests)
        self.finished[job] = JobResult(job, value, error, 0.0, time.perf_counter())


def test_live_frames_go_to_the_engine_one_at_a_time_the_latest_wins_none_twice():
    from LabelRegLib.slicer.frame_queue import LatestFrameQueue

    engine = _Engine()
    queue = LatestFrameQueue(engine, lambda frame: {"fixed": frame})
    queue.submit(0)
    for frame in range(1, 6):  # arrive while frame 0 is at the engine
        queue.submit(frame)
        assert queue.poll() == []
    assert [r["fixed"] for r in engine.requests] == [0]
    engine.finish("zero")
    (first,) = queue.poll()  # frame 0's reply; the latest waiting frame (5) goes to the engine at once
    assert (first.frame_id, first.value) == (1, "zero") and [r["fixed"] for r in engine.requests] == [0, 5]
    engine.finish("five")
    (second,) = queue.poll()
    assert second.frame_id == 6 and second.latency_s >= 0 and queue.idle
    assert (queue.submitted, queue.processed, queue.dropped) == (6, 2, 4)


def test_a_failing_frame_is_reported_to_the_owner():
    from LabelRegLib.slicer.frame_queue import LatestFrameQueue

    engine = _Engine()
    queue = LatestFrameQueue(engine, lambda frame: {"fixed": frame})
    queue.submit(0)
    engine.finish(error=ZeroDivisionError("division by zero"))
    (result,) = queue.poll()
    assert isinstance(result.error, ZeroDivisionError) and result.value is None


# ---------------------------------------------------------------- 7. no node leaks, visible results
def _phantom_nodes(slicer):
    from LabelRegLib.data.phantom import make_phantom_pair
    from LabelRegLib.slicer.mrml import add_phantom_nodes

    return add_phantom_nodes(slicer.mrmlScene, make_phantom_pair(1001))


def _count_by_class(scene) -> Counter:
    return Counter(scene.GetNthNode(i).GetClassName() for i in range(scene.GetNumberOfNodes()))


def test_registering_again_updates_the_same_outputs_each_with_a_display_node(slicer, scene, modules, monkeypatch):
    """Issue 24, 9: the hardened copy and the labelmap are made once and updated; the labelmap keeps the
    segments' names and colours (its colour table is kept, and replaced, not piled up)."""
    LabelReg, _ = modules
    moving, fixed, segmentation = _phantom_nodes(slicer)
    segmentation.GetSegmentation().GetNthSegment(0).SetColor(0.1, 0.9, 0.2)
    logic = LabelReg.LabelRegLogic()
    before = _count_by_class(scene)
    transform, outputs = None, set()
    for _ in range(3):
        transform = logic.register(
            moving, fixed, transform, segmentationNode=segmentation, segmentationMode="harden", createLabelmap=True
        )
        outputs |= {transform, logic.lastCarriedSegmentationNode, logic.lastLabelmapNode}
    assert len(outputs) == 3, "each registration updated the same three output nodes"
    added = _count_by_class(scene) - before
    display = {
        "vtkMRMLGridTransformNode": "vtkMRMLTransformDisplayNode",
        "vtkMRMLSegmentationNode": "vtkMRMLSegmentationDisplayNode",
        "vtkMRMLLabelMapVolumeNode": "vtkMRMLLabelMapVolumeDisplayNode",
    }
    expected = Counter(node.GetClassName() for node in outputs) + Counter(
        display[node.GetClassName()] for node in outputs
    )
    expected["vtkMRMLColorTableNode"] = 1  # the labelmap's, naming and colouring its values as the segments
    assert added == expected, f"added {dict(added)}, declared {dict(expected)}"
    for node in outputs:
        assert node.GetDisplayNode() is not None, f"{node.GetName()} has no display node"
    colours = logic.lastLabelmapNode.GetDisplayNode().GetColorNode()
    rgba = [0.0] * 4
    colours.GetColor(1, rgba)
    assert colours.GetColorName(1) == "gland" and np.allclose(rgba[:3], (0.1, 0.9, 0.2), atol=0.01)

    # the error path: a failure after the outputs were started leaves the scene as it was
    import LabelRegLib.registration.registrar

    logic = LabelReg.LabelRegLogic(inProcess=True)  # the failure is planted in this process

    def broken(*args, **kwargs):
        raise RuntimeError("resampling failed")

    monkeypatch.setattr(LabelRegLib.registration.registrar, "resample_volume", broken)  # the labelmap's resampling
    moving.SetAndObserveTransformNodeID(None)
    segmentation.RemoveNodeReferenceIDs("labelRegOnUS")
    segmentation.RemoveNodeReferenceIDs("labelRegLabelmapOnUS")
    counts = _count_by_class(scene)
    with pytest.raises(RuntimeError, match="resampling failed"):
        logic.register(moving, fixed, segmentationNode=segmentation, segmentationMode="harden", createLabelmap=True)
    assert _count_by_class(scene) == counts and moving.GetTransformNodeID() is None


# ---------------------------------------------------------------- 8. a retrained model is loaded again
def test_a_model_file_rewritten_in_place_is_loaded_again(tmp_path, tiny_model):
    from LabelRegLib.nets.model_file import default_model_path
    from LabelRegLib.registration.model_catalogue import ModelCatalogue

    path = tmp_path / "model.pt"
    shutil.copy(tiny_model, path)
    catalogue = ModelCatalogue()
    first = catalogue.registrar(path, "cpu")
    assert catalogue.registrar(path, "cpu") is first  # unchanged file: the loaded model is reused
    shutil.copy(default_model_path(), path)  # retrained into the same file
    second = catalogue.registrar(path, "cpu")
    assert second is not first
    assert (
        second.header["architecture"]["num_channel_initial"]
        == 16
        != first.header["architecture"]["num_channel_initial"]
    )
    assert len(catalogue._registrars) == 1  # the stale model was let go


# ---------------------------------------------------------------- 9. the training finds the extension's LabelRegLib
def test_the_training_command_runs_from_an_installed_layout(tmp_path):
    """An installed extension puts the scripted modules side by side (no ../LabelReg folder), and Slicer's Python
    knows nothing of a checkout: the command the module builds must find LabelRegLib by itself."""
    installed = tmp_path / "lib" / "Slicer-5.8" / "qt-scripted-modules"
    shutil.copytree(
        REPO / "LabelReg" / "LabelRegLib", installed / "LabelRegLib", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(
        REPO / "LabelReg" / "Resources" / "Models",
        installed / "Resources" / "Models",
        ignore=shutil.ignore_patterns("*.pt"),
    )
    for module in (LABELREG, TRAINING):
        shutil.copy(module, installed / module.name)
    slicer_python = tmp_path / "PythonSlicer"  # a Python without this checkout's editable install on its path
    slicer_python.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    slicer_python.chmod(0o755)
    code = f"""
        import os, subprocess, sys
        sys.path.insert(0, {str(installed)!r})
        from LabelRegLib.slicer import standalone as slicer_standalone
        slicer_standalone.install()
        import LabelRegTraining
        assert LabelRegTraining.__file__.startswith({str(installed)!r}), LabelRegTraining.__file__
        logic = LabelRegTraining.LabelRegTrainingLogic()
        p = logic.getParameterNode()
        p.dataFolder, p.outputModel = {str(tmp_path / "data")!r}, {str(tmp_path / "model.pt")!r}
        command = [{str(slicer_python)!r}, *logic.command(p, False)[1:], "--help"]
        env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname({str(installed)!r}), "LabelReg"))  # what a source layout gives
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd={str(tmp_path)!r})
        print(result.returncode, result.stdout[:200], result.stderr[-500:])
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("0 usage: labelreg train"), result.stdout


# ---------------------------------------------------------------- 10. the panel trains with the bundled model's recipe
def test_the_panel_with_default_settings_trains_exactly_the_recipe(slicer, scene, modules, tmp_path):
    from dataclasses import asdict, fields

    from LabelRegLib.cli import build_parser
    from LabelRegLib.cli.train import train_config
    from LabelRegLib.core.config import train_config_from_ini

    _LabelReg, LabelRegTraining = modules
    logic = LabelRegTraining.LabelRegTrainingLogic()
    p = logic.getParameterNode()
    p.dataFolder, p.outputModel = str(tmp_path / "data"), str(tmp_path / "model.pt")
    from_panel = asdict(train_config(build_parser().parse_args(["train", *logic.trainArguments(p, resume=False)])))
    recipe = asdict(train_config_from_ini(logic.recipePath()))
    data_and_output = {
        "data_dir",
        "dir_moving_image",
        "dir_fixed_image",
        "dir_moving_label",
        "dir_fixed_label",
        "output_dir",
        "file_model_save",
    }
    differing = {key for key in recipe if recipe[key] != from_panel[key]}
    assert differing <= data_and_output, {key: (recipe[key], from_panel[key]) for key in differing - data_and_output}
    assert (
        from_panel["norm"] == "instance" and from_panel["working_spacing"] == 2.5
    )  # not the tutorial's BatchNorm at full resolution
    assert from_panel["data_dir"] == p.dataFolder and from_panel["file_model_save"] == os.path.abspath(p.outputModel)
    import typing

    from LabelRegLib.core.config import TrainConfig

    schema = {f.name: f.metadata for f in fields(TrainConfig)}
    for parameter, key in LabelRegTraining.PANEL_SETTINGS.items():  # the panel offers what the schema allows
        hint = LabelRegTraining.LabelRegTrainingParameterNode.allParameters[parameter]
        extras = typing.get_args(hint)[1:] if typing.get_origin(hint) is typing.Annotated else ()
        offered = [getattr(extra, "choices", None) for extra in extras if hasattr(extra, "choices")]
        if offered and key != "device":
            assert tuple(offered[0]) == schema[key]["choices"], parameter
    p.iterations, p.numChannels = 7, 8  # the panel's fields override the recipe
    overridden = asdict(train_config(build_parser().parse_args(["train", *logic.trainArguments(p, resume=False)])))
    assert (overridden["total_iterations"], overridden["num_channel_initial"], overridden["norm"]) == (7, 8, "instance")


# ---------------------------------------------------------------- 11. Slicer conventions
def test_the_moving_frame_is_a_node_reference_and_the_status_is_not_saved(slicer, scene, modules):
    LabelReg, _ = modules
    moving, fixed, _segmentation = _phantom_nodes(slicer)
    parent = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "MR pose")
    moving.SetAndObserveTransformNodeID(parent.GetID())
    logic = LabelReg.LabelRegLogic()
    transform = logic.register(moving, fixed)
    from LabelRegLib.slicer.mrml_outputs import MOVING_PARENT_REFERENCE

    assert transform.GetNodeReferenceID(MOVING_PARENT_REFERENCE) == parent.GetID()
    assert transform.GetAttribute("LabelReg.MovingParentTransformID") is None
    logic.register(moving, fixed, transform)  # the MR is under the transform now: its frame comes from the reference
    assert moving.GetTransformNodeID() == transform.GetID()
    assert "status" not in LabelReg.LabelRegParameterNode.allParameters
    assert "hardenTransform(" not in LABELREG.read_text()
    for source in (LABELREG, TRAINING, REPO / "CMakeLists.txt", REPO / "LabelReg.s4ext"):
        assert "LabelReg developers" not in source.read_text(), f"{source.name} names a placeholder as contributors"


def test_dependencies_are_installed_only_after_asking_with_a_minimum_torch(slicer, modules, monkeypatch):
    import importlib.util
    import types

    LabelReg, _ = modules
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("torch", "nibabel") else real_find_spec(name, *a)
    )
    asked, installed = [], []
    monkeypatch.setattr(
        slicer.util, "confirmOkCancelDisplay", lambda text, *a, **k: asked.append(text) or False, raising=False
    )
    monkeypatch.setattr(slicer.util, "pip_install", lambda requirement: installed.append(requirement), raising=False)
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)
    with pytest.raises(RuntimeError, match="needs the PyTorch extension. Install it in the Extensions Manager"):
        LabelReg.LabelRegLogic.ensureDependencies(askUser=True)

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None):
            installed.append(f"torch{torchVersionRequirement}")
            return object()

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    assert LabelReg.LabelRegLogic.ensureDependencies(askUser=True) is False  # the user declined
    assert installed == [] and "PyTorch >=2.1" in asked[-1]
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, *a, **k: asked.append(text) or True)
    assert LabelReg.LabelRegLogic.ensureDependencies(askUser=True) is True
    assert installed == ["torch>=2.1", "nibabel"] and "nibabel" in asked[-1]


# ---------------------------------------------------------------- 12. thin module files
@pytest.mark.parametrize("path", [LABELREG, TRAINING], ids=lambda p: p.name)
def test_module_methods_orchestrate_in_a_few_dozen_lines(path):
    tree = ast.parse(path.read_text())
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and not n.name.endswith("Test")):
        for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            length = method.end_lineno - method.lineno + 1
            assert length <= 60, f"{cls.name}.{method.name} is {length} lines: move the work into LabelRegLib"
    assert not re.search(r"^import (threading|queue|subprocess|signal|atexit)", path.read_text(), re.M), (
        "process and thread work lives in LabelRegLib"
    )
