"""LabelRegTraining: train LabelReg registration networks from folders of images and segmentations.

Training runs in a separate process (``labelreg train ... --progress-json``
with Slicer's Python, launched by ``slicer.util.launchConsoleProcess``), never
in the GUI thread. ``LabelRegLib.training_process`` does the process work
(progress lines read without blocking, Stop ends the whole process tree on
Windows, macOS and Linux, the training ends with Slicer); this file only puts
the progress into a table node (saved with the scene), the status line and
the plot, and offers the finished model in the LabelReg module.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
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

TABLE_COLUMNS = ["step", "loss", "similarity", "regulariser", "val_dice", "val_tre_mm", "val_folding", "elapsed_s"]
# The panel's settings and the `labelreg train` keys they override in the recipe (labelreg_localnet.ini);
# the parameter class's defaults are the recipe's values (a test compares them).
PANEL_SETTINGS = {
    "networkType": "network_type",
    "numChannels": "num_channel_initial",
    "iterations": "total_iterations",
    "minibatchSize": "minibatch_size",
    "learningRate": "learning_rate",
    "similarityType": "similarity_type",
    "regulariserType": "regulariser_type",
    "regulariserWeight": "regulariser_weight",
    "validationFraction": "validation_fraction",
    "device": "device",
}
# Path fields: (parameter, ctkPathLineEdit). Not bound through SlicerParameterName: CTK emits no
# currentPathChanged for an empty text, so a bound field could never be cleared; the widget syncs them.
PATH_FIELDS = {
    "dataFolder": "dataFolderPathLineEdit",
    "movingImagesFolder": "movingImagesPathLineEdit",
    "fixedImagesFolder": "fixedImagesPathLineEdit",
    "movingLabelsFolder": "movingLabelsPathLineEdit",
    "fixedLabelsFolder": "fixedLabelsPathLineEdit",
    "outputModel": "outputModelPathLineEdit",
    "initialModel": "initialModelPathLineEdit",
}


class LabelRegTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LabelReg Training")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]
        self.parent.dependencies = ["LabelReg"]
        self.parent.contributors = ["The LabelReg project"]
        self.parent.helpText = _(
            "Train an MR to ultrasound registration network from a folder with moving_images/, fixed_images/, "
            "moving_labels/ and fixed_labels/ (same file names; NIfTI, NRRD, MHA or .seg.nrrd segmentations), "
            "watch it learn, stop and resume it, then register with it in the LabelReg module. "
            "Method: Y. Hu et al., Medical Image Analysis 49:1-13, 2018."
        )
        self.parent.acknowledgementText = _("After the label-reg tutorial of Yipeng Hu and colleagues.")


@parameterNodeWrapper
class LabelRegTrainingParameterNode:
    # paths as text, "" = unset (see PATH_FIELDS)
    dataFolder: str = ""
    movingImagesFolder: str = ""
    fixedImagesFolder: str = ""
    movingLabelsFolder: str = ""
    fixedLabelsFolder: str = ""
    outputModel: str = ""
    initialModel: str = ""  # optional: fine-tune this model (e.g. the bundled one) instead of starting from scratch
    networkType: Annotated[str, Choice(["local", "global", "composite"])] = "local"
    numChannels: Annotated[int, WithinRange(2, 64)] = 16
    iterations: Annotated[int, WithinRange(1, 1000000)] = 2300
    minibatchSize: Annotated[int, WithinRange(1, 64)] = 4
    learningRate: Annotated[float, WithinRange(1e-7, 1.0)] = 1e-4
    similarityType: Annotated[str, Choice(["dice", "jaccard", "cross-entropy", "mean-squared"])] = "dice"
    regulariserType: Annotated[str, Choice(["bending", "gradient-l2", "gradient-l1"])] = "bending"
    regulariserWeight: Annotated[float, WithinRange(0.0, 100.0)] = 0.5
    validationFraction: Annotated[float, WithinRange(0.0, 0.9)] = 0.1
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    progressTable: vtkMRMLTableNode
    status: str = ""


class LabelRegTrainingWidget(ScriptedLoadableModuleWidget):
    """The panel: binds the .ui to the parameter node, polls the logic on a timer. No computation here."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self._timer = None  # polls the training process while it runs
        self.logic = None
        self.panel = None  # the .ui bound to the parameter node, made in setup() (LabelRegLib.slicer_panel)
        self._parameterNode = None  # kept current by self.panel

    def setup(self) -> None:
        import qt
        from LabelRegLib.slicer_panel import ParameterNodePanel

        ScriptedLoadableModuleWidget.setup(self)
        self._timer = qt.QTimer()
        self._timer.setInterval(500)
        self._timer.connect("timeout()", self.onTimer)
        self.logic = LabelRegTrainingLogic()
        self.panel = ParameterNodePanel(self, "UI/LabelRegTraining.ui", self.logic, self._updateGUI)
        for name, widgetName in PATH_FIELDS.items():
            pathEdit = getattr(self.ui, widgetName)
            # currentPathChanged for a valid path, validInputChanged when the text becomes empty (or invalid)
            pathEdit.connect(
                "currentPathChanged(QString)", lambda _text, n=name, w=pathEdit: self.onPathEdited(n, w.currentPath)
            )
            pathEdit.connect(
                "validInputChanged(bool)", lambda _valid, n=name, w=pathEdit: self.onPathEdited(n, w.currentPath)
            )
        self.ui.startButton.connect("clicked(bool)", lambda: self.onStart(resume=False))
        self.ui.resumeButton.connect("clicked(bool)", lambda: self.onStart(resume=True))
        self.ui.stopButton.connect("clicked(bool)", self.onStop)
        self.ui.checkDataButton.connect("clicked(bool)", self.onCheckData)
        slicer.app.connect("aboutToQuit()", self.logic.stop)  # the training ends with Slicer
        self.panel.bind()

    def cleanup(self) -> None:
        if self._timer:
            self._timer.stop()
        self.panel.cleanup()

    def enter(self) -> None:
        self.panel.bind()

    def exit(self) -> None:
        self.panel.release()

    def onPathEdited(self, name: str, text: str) -> None:
        if self._parameterNode and getattr(self._parameterNode, name) != text.strip():
            setattr(self._parameterNode, name, text.strip())

    def _updateGUI(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p is None:
            return
        for name, widgetName in PATH_FIELDS.items():
            pathEdit = getattr(self.ui, widgetName)
            if pathEdit.currentPath != getattr(p, name):
                pathEdit.currentPath = getattr(p, name)  # an unset path shows as empty
        running = self.logic.isRunning
        ready = bool((p.dataFolder or p.movingImagesFolder) and p.outputModel)
        self.ui.startButton.enabled = ready and not running
        self.ui.resumeButton.enabled = ready and not running and self.logic.canResume(p.outputModel)
        self.ui.stopButton.enabled = running
        self.ui.statusLabel.text = p.status

    def onCheckData(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not check the data."), waitCursor=True):
            if self.logic.ensureDependencies(askUser=True):
                self.ui.dataSummaryLabel.text = self.logic.summariseData(self._parameterNode)[0]

    def onStart(self, resume: bool) -> None:
        with slicer.util.tryWithErrorDisplay(_("Training could not start."), waitCursor=True):
            if not self.logic.ensureDependencies(askUser=True):
                return
            overwrite = not resume and self.logic.holdsTraining(self._parameterNode.outputModel)
            if overwrite and not slicer.util.confirmOkCancelDisplay(
                _(
                    "{model} (or its training folder) exists. Replace it with a new training? Resume continues it instead."
                ).format(model=self._parameterNode.outputModel)
            ):
                return
            self.ui.dataSummaryLabel.text = self.logic.start(self._parameterNode, resume=resume, overwrite=overwrite)
            slicer.modules.plots.logic().ShowChartInLayout(self.logic.plotChartNode(self._parameterNode.progressTable))
            self._timer.start()
            self._updateGUI()

    def onStop(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not stop the training."), waitCursor=True):
            self.logic.stop()
            self._updateGUI()

    def onTimer(self) -> None:
        self.logic.poll()
        progress = self.logic.progress
        self.ui.progressBar.value = int(100 * progress.get("step", 0) / max(1, progress.get("total", 1)))
        self.ui.latestLabel.text = self.logic.latestText()
        if not self.logic.isRunning:
            self._timer.stop()
        self._updateGUI()


class LabelRegTrainingLogic(ScriptedLoadableModuleLogic):
    """Starts, watches, stops and resumes a training process; callable without any GUI.

    ``poll()`` must be called regularly (the panel does it every 0.5 s): it
    adds the process's new progress rows to the table node, updates the
    parameter node's status and notices the end of the process.
    """

    RECIPE = "labelreg_localnet.ini"  # the from-scratch recipe of the bundled model, in LabelReg/Resources/Models

    def __init__(self) -> None:
        from LabelRegLib.training_process import TrainingProcess

        ScriptedLoadableModuleLogic.__init__(self)
        self.training = TrainingProcess(
            launch=lambda args: slicer.util.launchConsoleProcess(args, useStartupEnvironment=False)
        )
        self._parameterNode = None

    def getParameterNode(self):
        return LabelRegTrainingParameterNode(super().getParameterNode())

    @staticmethod
    def ensureDependencies(askUser: bool = True) -> bool:
        """Training reads NIfTI (nibabel) and trains with torch: the LabelReg module installs them."""
        import LabelReg

        return LabelReg.LabelRegLogic.ensureDependencies(askUser)

    # the process's state, for the panel and tests
    @property
    def isRunning(self) -> bool:
        return self.training.is_running

    @property
    def state(self) -> str:
        return self.training.state

    @property
    def progress(self) -> dict:
        return self.training.progress

    @property
    def process(self):
        return self.training.process

    def latestText(self) -> str:
        return self.training.latest_text()

    # ---------------------------------------------------------------- data
    def summariseData(self, parameterNode) -> tuple:
        """``(text, problems)``: pairs found, landmarks per pair, and every problem (the checks of ``labelreg train``)."""
        from collections import Counter

        from LabelRegLib.data import FOLDERS, load_cases, resolve_folders, scan_case_files

        p = parameterNode
        given = (p.movingImagesFolder, p.fixedImagesFolder, p.movingLabelsFolder, p.fixedLabelsFolder)
        folders = resolve_folders(p.dataFolder or None, **{name: path or None for name, path in zip(FOLDERS, given)})
        caseFiles, problems = scan_case_files(folders)
        cases, loadProblems = load_cases(caseFiles)
        problems = problems + loadProblems
        if not caseFiles and not problems:
            problems.append(_("no image pairs found"))
        landmarks = Counter(case.num_landmarks for case in cases)
        text = _("{pairs} usable pair(s); landmarks per pair: {landmarks}").format(
            pairs=len(cases),
            landmarks=", ".join(f"{n} ({count} pairs)" for n, count in sorted(landmarks.items())) or "-",
        )
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
        from LabelRegLib.outputs import CHECKPOINT_NAME

        return bool(outputModel) and os.path.isfile(os.path.join(self.outputDirectory(outputModel), CHECKPOINT_NAME))

    def holdsTraining(self, outputModel: str) -> bool:
        """Whether a new training there would replace a model or a checkpoint."""
        return bool(outputModel) and (os.path.exists(outputModel) or self.canResume(outputModel))

    @classmethod
    def recipePath(cls) -> str:
        from LabelRegLib.model_file import MODELS_DIR

        return str(MODELS_DIR / cls.RECIPE)

    def trainArguments(self, p, resume: bool, overwrite: bool = False) -> list:
        """The ``labelreg train`` arguments for the parameter node: the bundled model's recipe, then the data,
        the output and the panel's settings as overrides (with default settings: the recipe unchanged)."""
        from LabelRegLib.config import train_config_from_ini
        from LabelRegLib.model_file import model_settings_flags, peek_model_header

        recipe = train_config_from_ini(self.recipePath())
        args = [
            self.recipePath(),
            "--output_dir",
            self.outputDirectory(p.outputModel),
            "--file_model_save",
            os.path.abspath(p.outputModel),
        ]
        # a row every step and a checkpoint every tenth of the run for short trainings; the recipe's otherwise
        args += [
            "--freq_info_print",
            str(min(recipe.freq_info_print, max(1, p.iterations // 100))),
            "--freq_model_save",
            str(min(recipe.freq_model_save, max(1, p.iterations // 10))),
        ]
        args += ["--data_dir", p.dataFolder]  # "" clears the recipe's data folder when the four folders are given
        for flag, value in (
            ("--dir_moving_image", p.movingImagesFolder),
            ("--dir_fixed_image", p.fixedImagesFolder),
            ("--dir_moving_label", p.movingLabelsFolder),
            ("--dir_fixed_label", p.fixedLabelsFolder),
        ):
            if value:
                args += [flag, value]
        for parameter, key in PANEL_SETTINGS.items():
            value = getattr(p, parameter)
            args += [f"--{key}", repr(float(value)) if isinstance(value, float) else str(value)]
        if (
            p.initialModel
        ):  # fine-tuning: the model's own architecture, working spacing and alignment override the panel's
            args += [
                "--initial_model",
                os.path.abspath(p.initialModel),
                *model_settings_flags(peek_model_header(p.initialModel)),
            ]
        return args + (["--resume"] if resume else []) + (["--overwrite"] if overwrite else [])

    def command(self, p, resume: bool, overwrite: bool = False) -> list:
        """The whole command line: Slicer's Python running ``labelreg train`` from this extension's LabelRegLib."""
        from LabelRegLib.training_process import train_command

        python = shutil.which("PythonSlicer") or sys.executable
        return train_command(python, self.trainArguments(p, resume, overwrite), parent_pid=os.getpid())

    def start(self, parameterNode, resume: bool = False, overwrite: bool = False) -> str:
        """Check the data, then start (or resume) training in a background process; returns the data summary at once.

        Raises ``ValueError`` listing every problem before anything starts; a new training over an existing model
        or checkpoint only with ``overwrite``."""
        p = parameterNode
        if self.isRunning:
            raise RuntimeError(_("A training is already running; stop it first."))
        if not p.outputModel:
            raise ValueError(_("Choose the output model file."))
        if resume and not self.canResume(p.outputModel):
            raise ValueError(
                _("There is no checkpoint to resume in {folder}").format(folder=self.outputDirectory(p.outputModel))
            )
        if not resume and not overwrite and self.holdsTraining(p.outputModel):
            raise ValueError(
                _(
                    "{model} or its training folder exists: Resume continues it; to start again, confirm replacing it."
                ).format(model=p.outputModel)
            )
        summary, problems = self.summariseData(p)
        if problems:
            raise ValueError(_("Fix the data first:") + "\n" + "\n".join(problems))
        self._parameterNode = p
        if not p.progressTable:
            p.progressTable = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "LabelReg training curves")
        if not resume or p.progressTable.GetNumberOfColumns() == 0:
            p.progressTable.RemoveAllColumns()
            for name in TABLE_COLUMNS:
                column = vtk.vtkDoubleArray()
                column.SetName(name)
                p.progressTable.AddColumn(column)
        pid = self.training.start(self.command(p, resume, overwrite))
        p.status = _("Training started (process {pid})").format(pid=pid)
        return summary

    def stop(self) -> None:
        """End the training process tree; the last checkpoint stays usable for Resume."""
        if self.isRunning:
            self.training.stop()
            self.poll()

    def poll(self) -> None:
        """Take the process's new progress into the table and the status (never blocks); react to its end."""
        p = self._parameterNode
        if p is None:
            return
        wasRunning = self.state in ("running", "stopping")
        for record in self.training.poll():
            if record["event"] == "step" or (record["event"] == "validation" and record.get("step") == 0):
                self._appendRow(p.progressTable, record)
                p.status = self.latestText()
        if wasRunning and self.state == "finished":
            p.status = _("Finished: model written to {path}").format(path=p.outputModel)
            import LabelReg

            LabelReg.LabelRegLogic.modelCatalogue().add(p.outputModel)
        elif wasRunning and self.state == "stopped":
            p.status = _("Stopped at step {step}; Resume continues from the last checkpoint.").format(
                step=self.progress.get("step", 0)
            )
        elif wasRunning and self.state == "crashed":
            p.status = "\n".join(
                [
                    _("The training process ended unexpectedly ({reason}).").format(reason=self.training.end_reason()),
                    *self.training.output_tail[-5:],
                ]
            )
            logging.error(p.status)

    # ---------------------------------------------------------------- curves
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
        """A plot of the loss and the validation Dice against the step (created once, saved with the scene;
        the panel shows it in the layout's plot view)."""
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
        import LabelReg

        LabelReg.LabelRegLogic.runSelfTests(self, "LabelRegTraining", self.test_TrainStopResumeRegister)

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
        p.dataFolder, p.outputModel = data, os.path.join(self.folder, "tiny.pt")
        p.numChannels, p.iterations, p.minibatchSize, p.validationFraction, p.device = 4, 6, 2, 0.25, "cpu"
        self.assertEqual(logic.summariseData(p)[1], [])
        logic.start(p)
        self.assertTrue(
            self.waitFor(logic, lambda: logic.canResume(p.outputModel) and logic.progress.get("step", 0) >= 2),
            "a checkpoint was written",
        )
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
        self.assertTrue(os.path.realpath(p.outputModel) in LabelReg.LabelRegLogic.modelCatalogue().extra)
        transform = LabelReg.LabelRegLogic().register(moving, fixed, modelPath=p.outputModel, device="cpu")
        self.assertIsNotNone(transform)
        self.delayDisplay("Trained, stopped, resumed, finished and registered")
