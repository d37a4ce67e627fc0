"""LabelRegTraining: train LabelReg registration networks from folders of images and segmentations.

Training runs in a separate process (``labelreg train ... --progress-json`` with
Slicer's Python), never in the GUI thread; the logic reads its JSON lines
without blocking, fills a table node with the curves (saved with the scene),
stops the whole process tree on Stop and resumes from the last checkpoint.
A finished model is offered in the LabelReg module at once.
"""

import atexit
import json
import logging
import os
import pathlib
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Annotated

import vtk

import slicer
from slicer import vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

def pathText(value) -> str:
    """A path parameter as text; "" when it is unset (None, "" or Path("."))."""
    text = str(value) if value is not None else ""
    return "" if text in ("", ".") else text


TABLE_COLUMNS = ["step", "loss", "similarity", "regulariser", "val_dice", "val_tre_mm", "val_folding", "elapsed_s"]


#
# LabelRegTraining
#
class LabelRegTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LabelReg Training")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]
        self.parent.dependencies = ["LabelReg"]
        self.parent.contributors = ["LabelReg developers"]
        self.parent.helpText = _(
            "Train an MR to ultrasound registration network from a folder with moving_images/, fixed_images/, "
            "moving_labels/ and fixed_labels/ (same file names; NIfTI, NRRD, MHA or .seg.nrrd segmentations), "
            "watch it learn, stop and resume it, then register with it in the LabelReg module. "
            "Method: Y. Hu et al., Medical Image Analysis 49:1-13, 2018."
        )
        self.parent.acknowledgementText = _("After the label-reg tutorial of Yipeng Hu and colleagues.")


#
# LabelRegTrainingParameterNode
#
@parameterNodeWrapper
class LabelRegTrainingParameterNode:
    # ctkPathLineEdit binds pathlib.Path parameters; an unset path is Path() (".")
    dataFolder: pathlib.Path
    movingImagesFolder: pathlib.Path
    fixedImagesFolder: pathlib.Path
    movingLabelsFolder: pathlib.Path
    fixedLabelsFolder: pathlib.Path
    outputModel: pathlib.Path
    initialModel: pathlib.Path  # optional: fine-tune this model (e.g. the bundled one) instead of starting from scratch
    networkType: Annotated[str, Choice(["local", "global", "composite"])] = "local"
    numChannels: Annotated[int, WithinRange(2, 64)] = 16
    iterations: Annotated[int, WithinRange(1, 1000000)] = 2000
    minibatchSize: Annotated[int, WithinRange(1, 64)] = 4
    learningRate: Annotated[float, WithinRange(1e-7, 1.0)] = 1e-4
    similarityType: Annotated[str, Choice(["dice", "jaccard", "cross-entropy", "mean-squared"])] = "dice"
    regulariserType: Annotated[str, Choice(["bending", "gradient-l2", "gradient-l1"])] = "bending"
    regulariserWeight: Annotated[float, WithinRange(0.0, 100.0)] = 0.5
    validationFraction: Annotated[float, WithinRange(0.0, 0.9)] = 0.1
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    progressTable: vtkMRMLTableNode
    status: str = ""


#
# LabelRegTrainingWidget
#
class LabelRegTrainingWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: binds the .ui to the parameter node, polls the logic on a timer. No computation here."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._timer = None

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LabelRegTraining.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LabelRegTrainingLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.startButton.connect("clicked(bool)", lambda: self.onStart(resume=False))
        self.ui.resumeButton.connect("clicked(bool)", lambda: self.onStart(resume=True))
        self.ui.stopButton.connect("clicked(bool)", self.onStop)
        self.ui.checkDataButton.connect("clicked(bool)", self.onCheckData)
        self._timer = qt.QTimer()
        self._timer.setInterval(500)
        self._timer.connect("timeout()", self.onTimer)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._timer:
            self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        running = self.logic.isRunning
        p = self._parameterNode
        hasData = bool(p and (pathText(p.dataFolder) or pathText(p.movingImagesFolder)))
        hasOutput = bool(p and pathText(p.outputModel))
        self.ui.startButton.enabled = hasData and hasOutput and not running
        self.ui.resumeButton.enabled = hasData and hasOutput and not running and self.logic.canResume(pathText(p.outputModel))
        self.ui.stopButton.enabled = running
        self.ui.statusLabel.text = p.status if p else ""
        if p and p.progressTable and self.ui.plotWidget.mrmlPlotViewNode() is None:
            self.ui.plotWidget.setMRMLPlotViewNode(self.logic.plotViewNode(p.progressTable))

    def onCheckData(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not check the data."), waitCursor=True):
            self.ui.dataSummaryLabel.text = self.logic.summariseData(self._parameterNode)[0]

    def onStart(self, resume: bool) -> None:
        with slicer.util.tryWithErrorDisplay(_("Training could not start."), waitCursor=True):
            import LabelReg

            if not LabelReg.LabelRegLogic.ensureDependencies(askUser=True):
                return
            summary, problems = self.logic.summariseData(self._parameterNode)
            self.ui.dataSummaryLabel.text = summary
            if problems:
                raise ValueError(_("Fix the data first:") + "\n" + "\n".join(problems))
            self.logic.start(self._parameterNode, resume=resume)
            self._timer.start()
            self._updateButtons()

    def onStop(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not stop the training."), waitCursor=True):
            self.logic.stop()
            self._updateButtons()

    def onTimer(self) -> None:
        self.logic.poll()
        progress = self.logic.progress
        self.ui.progressBar.value = int(100 * progress.get("step", 0) / max(1, progress.get("total", 1)))
        self.ui.latestLabel.text = self.logic.latestText()
        if not self.logic.isRunning:
            self._timer.stop()
        self._updateButtons()


#
# LabelRegTrainingLogic
#
class LabelRegTrainingLogic(ScriptedLoadableModuleLogic):
    """Starts, watches, stops and resumes a training process; callable without any GUI.

    ``poll()`` must be called regularly (the panel does it every 0.5 s): it
    reads the process's progress lines without blocking, adds rows to the
    progress table node, updates the parameter node's status and notices the
    end of the process (finished, stopped, or crashed).
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.process = None
        self.progress = {}
        self.state = "idle"  # idle, running, stopping, stopped, finished, crashed
        self._lines = queue.Queue()
        self._stderrTail = []
        self._parameterNode = None
        self._stopRequested = False

    def getParameterNode(self):
        return LabelRegTrainingParameterNode(super().getParameterNode())

    # ---------------------------------------------------------------- data
    @staticmethod
    def _folders(p) -> dict:
        return {
            "moving_images": pathText(p.movingImagesFolder) or None,
            "fixed_images": pathText(p.fixedImagesFolder) or None,
            "moving_labels": pathText(p.movingLabelsFolder) or None,
            "fixed_labels": pathText(p.fixedLabelsFolder) or None,
        }

    def summariseData(self, parameterNode) -> tuple:
        """``(text, problems)``: pairs found, landmarks per pair, and every problem (the checks of ``labelreg train``)."""
        from collections import Counter

        from LabelRegLib.data import load_cases, resolve_folders, scan_case_files

        folders = resolve_folders(pathText(parameterNode.dataFolder) or None, **self._folders(parameterNode))
        caseFiles, problems = scan_case_files(folders)
        cases, loadProblems = load_cases(caseFiles)
        problems = problems + loadProblems
        if not caseFiles and not problems:
            problems.append(_("no image pairs found"))
        landmarks = Counter(case.num_landmarks for case in cases)
        text = _("{pairs} usable pair(s); landmarks per pair: {landmarks}").format(
            pairs=len(cases), landmarks=", ".join(f"{n} ({count} pairs)" for n, count in sorted(landmarks.items())) or "-")
        if problems:
            text += "\n" + _("{n} problem(s):").format(n=len(problems)) + "\n" + "\n".join(problems)
        return text, problems

    # ---------------------------------------------------------------- process
    @staticmethod
    def outputDirectory(outputModel: str) -> str:
        """Training files (checkpoint, curves, metrics) go beside the model, in <model name>_training/."""
        base = os.path.splitext(os.path.abspath(outputModel))[0]
        return base + "_training"

    def canResume(self, outputModel: str) -> bool:
        return bool(outputModel) and os.path.isfile(os.path.join(self.outputDirectory(outputModel), "checkpoint.pt"))

    def command(self, p, resume: bool) -> list:
        """The ``labelreg train`` command line for the parameter node's settings."""
        python = shutil.which("PythonSlicer") or sys.executable
        outputModel = pathText(p.outputModel)
        args = [python, "-m", "LabelRegLib.cli", "train", "--progress-json",
                "--output_dir", self.outputDirectory(outputModel), "--file_model_save", os.path.abspath(outputModel),
                "--network_type", p.networkType, "--num_channel_initial", str(p.numChannels), "--total_iterations", str(p.iterations),
                "--minibatch_size", str(p.minibatchSize), "--learning_rate", repr(float(p.learningRate)),
                "--similarity_type", p.similarityType, "--regulariser_type", p.regulariserType, "--regulariser_weight", repr(float(p.regulariserWeight)),
                "--validation_fraction", repr(float(p.validationFraction)), "--device", p.device,
                "--freq_info_print", "1", "--freq_model_save", str(max(1, min(100, p.iterations // 10)))]
        if pathText(p.initialModel):
            args += self.fineTuningArguments(pathText(p.initialModel))
        if pathText(p.dataFolder):
            args += ["--data_dir", pathText(p.dataFolder)]
        for flag, value in (("--dir_moving_image", p.movingImagesFolder), ("--dir_fixed_image", p.fixedImagesFolder),
                            ("--dir_moving_label", p.movingLabelsFolder), ("--dir_fixed_label", p.fixedLabelsFolder)):
            if pathText(value):
                args += [flag, pathText(value)]
        return args + (["--resume"] if resume else [])

    @staticmethod
    def fineTuningArguments(initialModel: str) -> list:
        """``labelreg train`` flags that start from ``initialModel``, with the architecture, working spacing and
        initial alignment its header records (they override the panel's network choices: the weights need them)."""
        from LabelRegLib.model_file import read_model_header
        from LabelRegLib.training import model_settings_flags

        return ["--initial_model", os.path.abspath(initialModel), *model_settings_flags(read_model_header(initialModel))]

    def start(self, parameterNode, resume: bool = False) -> None:
        """Start (or resume) training in a new process group; returns at once."""
        if self.isRunning:
            raise RuntimeError(_("A training is already running; stop it first."))
        outputModel = pathText(parameterNode.outputModel)
        if not outputModel:
            raise ValueError(_("Choose the output model file."))
        if resume and not self.canResume(outputModel):
            raise ValueError(_("There is no checkpoint to resume in {folder}").format(folder=self.outputDirectory(outputModel)))
        self._parameterNode = parameterNode
        if not parameterNode.progressTable:
            parameterNode.progressTable = self._newTable()
        if not resume:
            parameterNode.progressTable.RemoveAllColumns()
            self._addColumns(parameterNode.progressTable)
        env = dict(os.environ)
        moduleDir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join([os.path.join(moduleDir, "LabelReg"), env.get("PYTHONPATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(self.command(parameterNode, resume), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                        start_new_session=True)  # its own process group: Stop ends the whole tree
        self.state = "running"
        atexit.register(self.stop)  # closing Slicer (or Python) ends the training too; no orphaned process
        self._stopRequested = False
        self._stderrTail = []
        self.progress = {}
        self._lines = queue.Queue()
        for stream, kind in ((self.process.stdout, "out"), (self.process.stderr, "err")):
            threading.Thread(target=self._read, args=(stream, kind), daemon=True).start()
        parameterNode.status = _("Training started (process {pid})").format(pid=self.process.pid)

    def _read(self, stream, kind) -> None:
        for line in stream:
            self._lines.put((kind, line.rstrip("\n")))
        self._lines.put((kind, None))

    @property
    def isRunning(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """End the training process tree (SIGTERM, then SIGKILL); the last checkpoint stays usable for Resume."""
        if not self.isRunning:
            return
        self._stopRequested = True
        self.state = "stopping"
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout / 2)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait(timeout=timeout / 2)
        self.poll()

    def poll(self) -> None:
        """Read what the process printed so far (never blocks) and react to its end."""
        p = self._parameterNode
        if p is None:
            return
        while True:
            try:
                kind, line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                continue
            if kind == "err":
                self._stderrTail = (self._stderrTail + [line])[-20:]
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            self._handle(record, p)
        if self.process is not None and self.process.poll() is not None and self.state in ("running", "stopping"):
            self._finish(p)

    def _handle(self, record: dict, p) -> None:
        event = record.get("event")
        if event == "start":
            self.progress = {"step": record["step"], "total": record["total"]}
        elif event == "step":
            self.progress.update(record)
            self._appendRow(p.progressTable, record)
            p.status = self.latestText()
        elif event == "validation":
            self.progress.update(record)
            if record.get("step") == 0:
                self._appendRow(p.progressTable, record)

    def _finish(self, p) -> None:
        code = self.process.returncode
        if code == 0:
            self.state = "finished"
            p.status = _("Finished: model written to {path}").format(path=pathText(p.outputModel))
            import LabelReg

            LabelReg.LabelRegLogic.addModel(os.path.abspath(pathText(p.outputModel)))
        elif self._stopRequested:
            self.state = "stopped"
            p.status = _("Stopped at step {step}; Resume continues from the last checkpoint.").format(step=self.progress.get("step", 0))
        else:
            self.state = "crashed"
            reason = _("killed by signal {n}").format(n=-code) if code < 0 else _("exit code {n}").format(n=code)
            p.status = _("The training process ended unexpectedly ({reason}).").format(reason=reason) + "\n" + "\n".join(self._stderrTail[-5:])
            logging.error(p.status)

    def latestText(self) -> str:
        r = self.progress
        if "step" not in r:
            return ""
        text = _("step {step}/{total}").format(step=r["step"], total=r.get("total", "?"))
        if "loss" in r:
            text += _(", loss {loss:.4f}").format(loss=r["loss"])
        if "val_dice" in r:
            text += _(", validation Dice {dice:.3f}, TRE {tre:.1f} mm").format(dice=r["val_dice"], tre=r["val_tre_mm"])
        if "eta_s" in r:
            text += _(", ETA {minutes:.1f} min").format(minutes=r["eta_s"] / 60)
        return text

    # ---------------------------------------------------------------- curves
    @staticmethod
    def _newTable():
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "LabelReg training curves")
        LabelRegTrainingLogic._addColumns(table)
        return table

    @staticmethod
    def _addColumns(table) -> None:
        for name in TABLE_COLUMNS:
            column = vtk.vtkDoubleArray()
            column.SetName(name)
            table.AddColumn(column)

    @staticmethod
    def _appendRow(table, record: dict) -> None:
        row = table.AddEmptyRow()
        for index, name in enumerate(TABLE_COLUMNS):
            value = record.get(name)
            table.GetTable().GetColumn(index).SetValue(row, float("nan") if value is None else float(value))
        table.GetTable().Modified()
        table.Modified()

    @staticmethod
    def plotChartNode(table):
        """A plot of the loss and the validation Dice against the step (created once, saved with the scene)."""
        name = f"{table.GetName()} plot"
        chart = slicer.mrmlScene.GetFirstNodeByName(name)
        if chart is not None:
            return chart
        chart = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
        for column in ("loss", "val_dice"):
            series = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", column)
            series.SetAndObserveTableNodeID(table.GetID())
            series.SetXColumnName("step")
            series.SetYColumnName(column)
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
        chart.SetXAxisTitle("step")
        return chart

    @classmethod
    def plotViewNode(cls, table):
        """The plot view node showing :meth:`plotChartNode` (what the panel's plot widget displays)."""
        name = f"{table.GetName()} plot view"
        view = slicer.mrmlScene.GetFirstNodeByName(name)
        if view is None:
            view = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotViewNode", name)
        view.SetPlotChartNodeID(cls.plotChartNode(table).GetID())
        return view


#
# LabelRegTrainingTest
#
class LabelRegTrainingTest(ScriptedLoadableModuleTest):
    """Self-test: train a tiny network on phantoms, stop, resume, finish, register with it in LabelReg."""

    def setUp(self):
        import tempfile

        self.folder = tempfile.mkdtemp(prefix="labelreg-training-test-")
        from LabelRegLib.mrml import node_ids

        self.nodesBefore = node_ids(slicer.mrmlScene)

    def tearDown(self):
        """Remove every node the test added, and its temporary folder."""
        from LabelRegLib.mrml import remove_nodes_added_since

        remove_nodes_added_since(slicer.mrmlScene, self.nodesBefore)
        shutil.rmtree(self.folder, ignore_errors=True)

    def runTest(self):
        self.setUp()
        try:
            self.test_TrainStopResumeRegister()
        finally:
            self.tearDown()

    @staticmethod
    def waitFor(logic, condition, timeout=300.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logic.poll()
            if condition():
                return True
            slicer.app.processEvents()
            time.sleep(0.2)
        return False

    def test_TrainStopResumeRegister(self):
        from LabelRegLib.phantom import make_phantom_pair, write_phantom_folder

        self.delayDisplay("Training a tiny network on phantom data")
        data = os.path.join(self.folder, "data")
        write_phantom_folder(data, n_pairs=4)
        logic = LabelRegTrainingLogic()
        p = logic.getParameterNode()
        p.dataFolder, p.outputModel = pathlib.Path(data), pathlib.Path(self.folder) / "tiny.pt"
        p.numChannels, p.iterations, p.minibatchSize, p.validationFraction, p.device = 4, 6, 2, 0.25, "cpu"
        self.assertEqual(logic.summariseData(p)[1], [])
        logic.start(p)
        self.assertTrue(self.waitFor(logic, lambda: logic.canResume(str(p.outputModel)) and logic.progress.get("step", 0) >= 2), "a checkpoint was written")
        logic.stop()
        self.assertEqual(logic.state, "stopped")
        stoppedAt = logic.progress["step"]
        logic.start(p, resume=True)
        self.assertTrue(self.waitFor(logic, lambda: not logic.isRunning and logic.state in ("finished", "crashed")))
        self.assertEqual(logic.state, "finished", p.status)
        self.assertGreater(logic.progress["step"], stoppedAt - 1)

        import LabelReg
        from LabelRegLib.mrml import update_volume_node

        pair = make_phantom_pair(1001)
        moving = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MR")
        fixed = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "US")
        update_volume_node(moving, pair.moving_image)
        update_volume_node(fixed, pair.fixed_image)
        self.assertTrue(os.path.abspath(p.outputModel) in LabelReg.LabelRegLogic.extraModels)
        transform = LabelReg.LabelRegLogic().register(moving, fixed, modelPath=str(p.outputModel), device="cpu")
        self.assertIsNotNone(transform)
        self.delayDisplay("Trained, stopped, resumed, finished and registered")
