"""LabelRegTraining: train LabelReg registration networks from folders of images and segmentations.

Training runs in a separate process (``labelreg train ... --progress-json``
with Slicer's Python, launched by ``slicer.util.launchConsoleProcess``), and
so does the data check: the GUI thread never reads the images.
``LabelRegLib.slicer.training_process`` does the process work (progress lines read
without blocking, Stop ends the whole process tree on Windows, macOS and Linux,
the training ends with Slicer), ``LabelRegLib.slicer.training_panel`` the arguments
and the progress table; this file binds the panel, polls on a timer and offers
the finished model in the LabelReg module. The training is the session's
(``LabelRegLib.slicer.session``): a Reload of this module finds it again.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

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
        self._timer = None  # polls the training and the data check while they run
        self.logic = None
        self.panel = None  # the .ui bound to the parameter node, made in setup() (LabelRegLib.slicer.panel)
        self._parameterNode = None  # kept current by self.panel

    def setup(self) -> None:
        import qt
        from LabelRegLib.slicer.panel import ParameterNodePanel

        ScriptedLoadableModuleWidget.setup(self)
        self._timer = qt.QTimer()
        self._timer.setInterval(500)
        self._timer.connect("timeout()", self.onTimer)
        self.logic = LabelRegTrainingLogic()
        self.panel = ParameterNodePanel(self, "UI/LabelRegTraining.ui", self.logic, self._updateGUI)
        for name, widgetName in PATH_FIELDS.items():
            # the text as typed, every change: CTK signals a path only while it is valid, so a field emptied by
            # backspacing would keep its last valid prefix (ctkPathLineEdit's currentPathChanged)
            getattr(self.ui, widgetName).comboBox().connect(
                "editTextChanged(QString)", lambda text, n=name: self.onPathEdited(n, text)
            )
        self.ui.startButton.connect("clicked(bool)", lambda: self.onStart(resume=False))
        self.ui.resumeButton.connect("clicked(bool)", lambda: self.onStart(resume=True))
        self.ui.stopButton.connect("clicked(bool)", self.onStop)
        self.ui.checkDataButton.connect("clicked(bool)", self.onCheckData)
        self.panel.bind()
        if self.logic.isRunning:  # a training started before a Reload of this module
            self._timer.start()

    def cleanup(self) -> None:
        if self._timer:
            self._timer.stop()
        self.panel.cleanup()

    def onReload(self) -> None:
        """Reload LabelRegLib too (Slicer reloads the module file only); the training goes on."""
        from LabelRegLib.slicer.session import reload_library

        reload_library()
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self) -> None:
        self.panel.bind()

    def exit(self) -> None:
        self.panel.release()

    def onPathEdited(self, name: str, text: str) -> None:
        if self._parameterNode and getattr(self._parameterNode, name) != text.strip():
            setattr(self._parameterNode, name, text.strip())

    def _updateGUI(self, caller=None, event=None) -> None:
        from LabelRegLib.slicer.training_panel import can_resume

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
        self.ui.resumeButton.enabled = ready and not running and can_resume(p.outputModel)
        self.ui.stopButton.enabled = running
        self.ui.checkDataButton.enabled = not self.logic.isChecking
        self.ui.statusLabel.text = p.status

    def onCheckData(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not check the data."), waitCursor=True):
            if self.logic.ensureDependencies(askUser=True):
                self.ui.dataSummaryLabel.text = self.logic.checkData(self._parameterNode)
                self._timer.start()

    def onStart(self, resume: bool) -> None:
        with slicer.util.tryWithErrorDisplay(_("Training could not start."), waitCursor=True):
            if not self.logic.ensureDependencies(askUser=True):
                return
            from LabelRegLib.slicer.training_panel import holds_training

            overwrite = not resume and holds_training(self._parameterNode.outputModel)
            if overwrite and not slicer.util.confirmOkCancelDisplay(
                _(
                    "{model} (or its training folder) exists. Replace it with a new training? Resume continues it instead."
                ).format(model=self._parameterNode.outputModel)
            ):
                return
            self.logic.start(self._parameterNode, resume=resume, overwrite=overwrite)
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
        if self.logic.dataSummary:
            self.ui.dataSummaryLabel.text = self.logic.dataSummary
        if not self.logic.isRunning and not self.logic.isChecking:
            self._timer.stop()
        self._updateGUI()


class LabelRegTrainingLogic(ScriptedLoadableModuleLogic):
    """Starts, watches, stops and resumes the session's training process, and checks data folders in a process
    of their own; callable without any GUI.

    ``poll()`` must be called regularly (the panel does it every 0.5 s): it adds the training's new progress
    rows to the table node (a new one when the user deleted it or closed the scene), updates the parameter
    node's status, notices the end of the process, and takes the data check's answer.
    """

    RECIPE = "labelreg_localnet.ini"  # the from-scratch recipe of the bundled model, in LabelReg/Resources/Models

    def __init__(self) -> None:
        from LabelRegLib.slicer.data_check import DataCheck
        from LabelRegLib.slicer.session import shared
        from LabelRegLib.slicer.training_process import TrainingProcess

        ScriptedLoadableModuleLogic.__init__(self)

        def launch(args):
            return slicer.util.launchConsoleProcess(args, useStartupEnvironment=False)

        self.training = shared("training", lambda: TrainingProcess(launch=launch))
        self.check = DataCheck(launch)
        self.dataSummary = ""

    def getParameterNode(self):
        return LabelRegTrainingParameterNode(super().getParameterNode())

    @staticmethod
    def ensureDependencies(askUser: bool = True) -> bool:
        """Training reads NIfTI (nibabel) and trains with torch: the LabelReg module installs them."""
        import LabelReg

        return LabelReg.LabelRegLogic.ensureDependencies(askUser)

    # the processes' state, for the panel and tests
    @property
    def isRunning(self) -> bool:
        return self.training.is_running

    @property
    def isChecking(self) -> bool:
        return self.check.is_running

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
    @staticmethod
    def _dataFolders(p) -> tuple:
        from LabelRegLib.data.cases import FOLDERS

        given = (p.movingImagesFolder, p.fixedImagesFolder, p.movingLabelsFolder, p.fixedLabelsFolder)
        return p.dataFolder, dict(zip(FOLDERS, given))

    def checkData(self, parameterNode) -> str:
        """Start checking the data folders in a process of its own; :meth:`poll` puts its answer in
        ``dataSummary``. Returns what to show meanwhile."""
        self.check.start(*self._dataFolders(parameterNode))
        self.dataSummary = ""
        return _("Checking the data (reading every image)...")

    def summariseData(self, parameterNode) -> tuple:
        """``(text, problems)`` of the data folders, read here and now (for scripts; the panel uses :meth:`checkData`)."""
        from LabelRegLib.data.cases import resolve_folders
        from LabelRegLib.slicer.data_check import summarise

        dataFolder, folders = self._dataFolders(parameterNode)
        return summarise(resolve_folders(dataFolder or None, **{k: v or None for k, v in folders.items()}))

    # ---------------------------------------------------------------- process
    @classmethod
    def recipePath(cls) -> str:
        from LabelRegLib.nets.model_file import MODELS_DIR

        return str(MODELS_DIR / cls.RECIPE)

    def trainArguments(self, p, resume: bool, overwrite: bool = False) -> list:
        """The ``labelreg train`` arguments for the parameter node: the bundled model's recipe, then the data,
        the output and the panel's settings as overrides (with default settings: the recipe unchanged)."""
        from LabelRegLib.core.config import FOLDER_KEYS
        from LabelRegLib.slicer.training_panel import train_arguments

        dataFolder, folders = self._dataFolders(p)
        data = {"data_dir": dataFolder, **{FOLDER_KEYS[name]: path for name, path in folders.items()}}
        settings = {key: getattr(p, parameter) for parameter, key in PANEL_SETTINGS.items()}
        args = train_arguments(self.recipePath(), p.outputModel, data, settings, p.initialModel)
        return args + (["--resume"] if resume else []) + (["--overwrite"] if overwrite else [])

    def command(self, p, resume: bool, overwrite: bool = False) -> list:
        """The whole command line: Slicer's Python running ``labelreg train`` from this extension's LabelRegLib."""
        from LabelRegLib.slicer.training_process import train_command

        return train_command(None, self.trainArguments(p, resume, overwrite), parent_pid=os.getpid())

    def start(self, parameterNode, resume: bool = False, overwrite: bool = False) -> None:
        """Start (or resume) training in a background process; returns at once. The training process checks the
        data itself (a problem ends it, and its message is the status); a new training over an existing model or
        checkpoint only with ``overwrite``."""
        from LabelRegLib.slicer.training_panel import check_start, progress_table

        p = parameterNode
        if self.isRunning:
            raise RuntimeError(_("A training is already running; stop it first."))
        check_start(p.outputModel, resume, overwrite)  # the data are checked by the training process itself
        p.progressTable = progress_table(slicer.mrmlScene, p.progressTable, [], reset=not resume)
        pid = self.training.start(self.command(p, resume, overwrite))
        self.training.context = {"outputModel": os.path.abspath(p.outputModel), "table": p.progressTable, "rows": []}
        p.status = _("Training started (process {pid}); reading the data").format(pid=pid)

    def stop(self) -> None:
        """End the training process tree; the last checkpoint stays usable for Resume."""
        if self.isRunning:
            self.training.stop()
            self.poll()

    def poll(self) -> None:
        """Take the processes' new output into the table, the status and ``dataSummary`` (never blocks)."""
        from LabelRegLib.slicer.training_panel import add_rows

        self.dataSummary = self.check.poll() or self.dataSummary
        run = self.training.context
        if not run:
            return
        p = self.getParameterNode()  # the scene's node now (closing the scene resets it)
        wasRunning = self.state in ("running", "stopping")
        count = len(run["rows"])
        table = add_rows(slicer.mrmlScene, run, self.training.poll())  # a new table if the old one left the scene
        if p.progressTable is not table:
            p.progressTable = table
        if len(run["rows"]) > count:
            p.status = self.latestText()
        if wasRunning and self.state == "finished":
            p.status = _("Finished: model written to {path}").format(path=run["outputModel"])
            import LabelReg

            LabelReg.LabelRegLogic.modelCatalogue().add(run["outputModel"])
        elif wasRunning and self.state == "stopped":
            p.status = _("Stopped at step {step}; Resume continues from the last checkpoint.").format(
                step=self.progress.get("step", 0)
            )
        elif wasRunning and self.state == "crashed":
            reason = _("The training process ended unexpectedly ({reason}).").format(reason=self.training.end_reason())
            p.status = "\n".join([reason, *self.training.output_tail[-5:]])
            logging.error(p.status)

    def plotChartNode(self, table):
        """A plot of the loss and the validation Dice against the step (made once, saved with the scene)."""
        from LabelRegLib.slicer.training_panel import plot_chart_node

        return plot_chart_node(slicer.mrmlScene, table)


class LabelRegTrainingTest(ScriptedLoadableModuleTest):
    """Self-test: train a tiny network on phantoms, stop, resume, finish, register with it in LabelReg
    (``LabelRegLib.slicer.self_tests``); what the test adds to the scene and the disk is removed again."""

    def setUp(self):
        from LabelRegLib.slicer.self_tests import SceneGuard

        self.guard = SceneGuard(slicer.mrmlScene)

    def tearDown(self):
        self.guard.restore()

    def runTest(self):
        from LabelRegLib.slicer.self_tests import run_self_tests

        run_self_tests(self, "LabelRegTraining", self.test_TrainStopResumeRegister)

    def test_TrainStopResumeRegister(self):
        import LabelReg
        from LabelRegLib.slicer.self_tests import train_stop_resume_register

        train_stop_resume_register(self, LabelRegTrainingLogic, LabelReg.LabelRegLogic, self.guard.folder)
