"""LabelReg: deep-learning MR to transrectal ultrasound (TRUS) registration of the prostate.

Module, parameter node, widget, logic and self-test after Slicer's scripted
module template. The engine is ``LabelRegLib``. Registration runs in a worker
process (``LabelRegLib.registration.worker_client``) that keeps the model loaded: Slicer's
main thread holds Python's GIL in its event loop, so no Python thread in this
process computes, and torch is never imported here. This file only moves data
between MRML nodes and the worker (``LabelRegLib.slicer.mrml_outputs``,
``LabelRegLib.slicer.live``).
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

import slicer
from slicer import (
    vtkMRMLGridTransformNode,
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)


class LabelReg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LabelReg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]
        self.parent.dependencies = []  # PyTorch comes from the PyTorch extension (LabelReg.s4ext depends on it)
        self.parent.contributors = ["The LabelReg project"]
        self.parent.helpText = _(
            "Registers a moving MR volume to a fixed transrectal ultrasound volume with a deep network "
            "(LocalNet, trained weakly-supervised from anatomical labels), and carries MR segmentations onto the US. "
            "Pick the MR and the US, click Register, and put the MR or its segmentation under the output transform. "
            "Method: Y. Hu et al., Weakly-supervised convolutional neural networks for multimodal image registration, "
            "Medical Image Analysis 49:1-13, 2018 (doi:10.1016/j.media.2018.07.002)."
        )
        self.parent.acknowledgementText = _(
            "A PyTorch re-implementation of the label-reg tutorial by Yipeng Hu and colleagues (University College London). "
            "The bundled model is trained on their public make-believe MR/TRUS example data; retrain on clinical data "
            "with the LabelRegTraining module before any clinical use."
        )


@parameterNodeWrapper
class LabelRegParameterNode:
    """Everything the user sets in the panel; saved with the scene (the status line is not: it changes every frame)."""

    movingVolume: vtkMRMLScalarVolumeNode
    fixedVolume: vtkMRMLScalarVolumeNode
    modelPath: str = ""  # empty: the bundled model
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    initialAlignment: Annotated[str, Choice(["auto", "centers", "physical", "glands", "best"])] = "auto"
    outputTransform: vtkMRMLGridTransformNode
    applyToMoving: bool = True
    segmentation: vtkMRMLSegmentationNode
    segmentationMode: Annotated[str, Choice(["transform", "harden"])] = "transform"
    createLabelmap: bool = False
    targets: vtkMRMLMarkupsFiducialNode  # biopsy targets on the MR, shown on the US
    showGlands: bool = False
    autoUpdate: bool = False


class LabelRegWidget(ScriptedLoadableModuleWidget):
    """The panel: binds the .ui to the parameter node and calls the logic. No computation here."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None
        self.panel = None  # the .ui bound to the parameter node, made in setup() (LabelRegLib.slicer.panel)
        self._parameterNode = None  # kept current by self.panel

    def setup(self) -> None:
        from LabelRegLib.slicer.panel import ParameterNodePanel

        ScriptedLoadableModuleWidget.setup(self)
        self.logic = LabelRegLogic()
        self.panel = ParameterNodePanel(
            self,
            "UI/LabelReg.ui",
            self.logic,
            self._updateButtons,
            onBound=self.refreshModelList,
            beforeSceneClose=self.logic.stopLiveUpdate,
        )
        self.ui.registerButton.connect("clicked(bool)", self.onRegisterButton)
        self.ui.browseModelButton.connect("clicked(bool)", self.onBrowseModel)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChosen)
        # clicked, not toggled: binding a saved scene's "on" to the checkbox must not start live mode
        self.ui.autoUpdateCheckBox.connect("clicked(bool)", self.onAutoUpdateClicked)
        self.logic.modelCatalogue().observers.append(self.refreshModelList)
        self.panel.bind()

    def onReload(self) -> None:
        """Reload LabelRegLib too (Slicer reloads the module file only); see ``LabelRegLib.slicer.session``."""
        from LabelRegLib.slicer.session import reload_library

        self.logic.stopLiveUpdate()
        reload_library()
        ScriptedLoadableModuleWidget.onReload(self)

    def cleanup(self) -> None:
        self.logic.stopLiveUpdate()
        if self.refreshModelList in self.logic.modelCatalogue().observers:
            self.logic.modelCatalogue().observers.remove(self.refreshModelList)
        self.panel.cleanup()

    def enter(self) -> None:
        self.panel.bind()

    def exit(self) -> None:
        self.panel.release()

    def _updateButtons(self, caller=None, event=None) -> None:
        ready = bool(self._parameterNode and self._parameterNode.movingVolume and self._parameterNode.fixedVolume)
        self.ui.registerButton.enabled = ready
        self.ui.registerButton.toolTip = (
            _("Register the MR to the US") if ready else _("Select the moving MR and the fixed US volumes")
        )
        self.ui.deviceInfoLabel.text = self.logic.modelCatalogue().device_summary()

    def _showStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text

    def refreshModelList(self) -> None:
        """Bundled model, models trained in LabelRegTraining this session, and files the user picked."""
        from LabelRegLib.slicer.panel import fill_model_list

        chosen = self._parameterNode.modelPath if self._parameterNode else ""
        fill_model_list(self.ui.modelComboBox, self.logic.modelCatalogue(), chosen)
        self._showModelHeader()

    def onModelChosen(self, index: int) -> None:
        path = self.ui.modelComboBox.itemData(index) or ""
        if self._parameterNode:
            self._parameterNode.modelPath = "" if path == self.logic.modelCatalogue().bundled else path
        self._showModelHeader()

    def onBrowseModel(self) -> None:
        import qt

        path = qt.QFileDialog.getOpenFileName(
            self.parent, _("Choose a LabelReg model file"), "", _("LabelReg model (*.pt)")
        )
        if path:
            with slicer.util.tryWithErrorDisplay(_("This file is not a usable LabelReg model."), waitCursor=True):
                # a file that is not a LabelReg model is refused before it is offered
                self.logic.modelCatalogue().summary(path)
                self._parameterNode.modelPath = path
                self.logic.modelCatalogue().add(path)

    def _showModelHeader(self) -> None:
        path = self.ui.modelComboBox.currentData
        try:
            self.ui.modelInfoLabel.text = self.logic.modelCatalogue().summary(path) if path else ""
        except Exception as error:  # a broken file: say so in the panel, the Register button will refuse it
            self.ui.modelInfoLabel.text = str(error)

    def onAutoUpdateClicked(self, enabled: bool) -> None:
        """Live mode starts only on the user's click, after the dependency check (and a first registration)."""
        if not enabled:
            self.logic.stopLiveUpdate()
        elif self._parameterNode.outputTransform:
            with slicer.util.tryWithErrorDisplay(_("Live registration could not start."), waitCursor=True):
                if self.logic.ensureDependencies(askUser=True):
                    self._startLive()

    def _options(self) -> dict:
        """The registration options the panel sets (as :meth:`LabelRegLogic.register` names them)."""
        p = self._parameterNode
        names = ("device", "initialAlignment", "applyToMoving")
        return {"modelPath": p.modelPath or None, **{name: getattr(p, name) for name in names}}

    def _startLive(self) -> None:
        p = self._parameterNode
        self.logic.startLiveUpdate(
            p.movingVolume, p.fixedVolume, p.outputTransform, onUpdate=self._showStatus, **self._options()
        )

    def onRegisterButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Registration failed."), waitCursor=True):
            if not self.logic.ensureDependencies(askUser=True):
                return
            p = self._parameterNode
            carried = {
                "segmentationNode": p.segmentation,
                "segmentationMode": p.segmentationMode,
                "targetsNode": p.targets,
            }
            carried.update(createLabelmap=p.createLabelmap, showGlands=p.showGlands)
            p.outputTransform = self.logic.register(
                p.movingVolume, p.fixedVolume, p.outputTransform, **carried, **self._options()
            )
            self._showStatus(self.logic.lastStatus)
            self._updateButtons()  # the device list is known now
            if p.autoUpdate:
                self._startLive()


class LabelRegLogic(ScriptedLoadableModuleLogic):
    """Registration on MRML nodes, callable without any GUI (the batch script and the self-test use it).

    The session's model list (:meth:`modelCatalogue`) and registration worker (:meth:`engine`) are shared by
    every logic; with ``inProcess`` (a headless batch job, which holds no Qt event loop) it registers in this process.
    """

    def __init__(self, inProcess: bool = False) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.inProcess = inProcess
        self._inProcessEngine = None
        self.lastStatus = ""
        self.lastWarnings: list[str] = []  # what the engine warned of in the last registration
        self.lastLabelmapNode = None
        self.lastCarriedSegmentationNode = None
        self.lastGlandNodes = ()
        self.registrationCount = 0
        self._live = None
        # frames, processed, dropped, latency_s and main_thread_s of the current or last live session
        self.liveStatistics: dict = {}

    def getParameterNode(self):
        return LabelRegParameterNode(super().getParameterNode())

    # ---------------------------------------------------------------- dependencies, models, the engine
    @staticmethod
    def missingDependencies() -> list[str]:
        """The Python packages LabelReg needs that are not installed (checked without importing them)."""
        from LabelRegLib.slicer.dependencies import missing_dependencies

        return missing_dependencies()

    @staticmethod
    def ensureDependencies(askUser: bool = True) -> bool:
        """Make torch (through the PyTorch extension) and nibabel importable, asking before each install."""
        from LabelRegLib.slicer.dependencies import ensure_dependencies

        return ensure_dependencies(askUser)

    @staticmethod
    def modelCatalogue():
        """The session's ``LabelRegLib.registration.model_catalogue.ModelCatalogue`` (bundled model, trained ones, loaded ones)."""
        from LabelRegLib.registration.model_catalogue import ModelCatalogue
        from LabelRegLib.slicer.session import shared

        return shared("catalogue", ModelCatalogue)

    def engine(self):
        """Where registrations run: the session's ``RegistrationWorker`` (started on first use, again after it
        ended), or this process's ``InProcessEngine`` with ``inProcess``."""
        from LabelRegLib.registration.worker_client import InProcessEngine, RegistrationWorker
        from LabelRegLib.slicer.session import shared

        if self.inProcess:
            if self._inProcessEngine is None:
                self._inProcessEngine = InProcessEngine(self.modelCatalogue())
            return self._inProcessEngine
        return shared("worker", RegistrationWorker)

    def _request(self, request: dict):
        """Send one request to the engine and wait for its reply (its error raised here)."""
        engine = self.engine()
        reply = engine.wait(engine.submit(request))
        self.modelCatalogue().devices = engine.devices or self.modelCatalogue().devices
        if reply.error is not None:
            raise reply.error
        return reply.value

    # ---------------------------------------------------------------- registration
    def register(
        self,
        movingVolumeNode,
        fixedVolumeNode,
        outputTransformNode=None,
        modelPath: str | None = None,
        device: str = "auto",
        initialAlignment: str | None = None,
        applyToMoving: bool = True,
        segmentationNode=None,
        segmentationMode: str = "transform",
        createLabelmap: bool = False,
        showGlands: bool = False,
        targetsNode=None,
    ):
        """Register the moving MR to the fixed US; return the grid transform node (created if not given).

        The transform maps fixed world RAS to the MR's own RAS (its parent transform is part of the result), so the
        MR put directly under it lands on the US. A segmentation drawn on the MR (same parent as the MR) is put under
        the transform (``transform``) or copied and hardened onto the US (``harden``, ``lastCarriedSegmentationNode``);
        ``createLabelmap`` also resamples its segments onto the US grid, names and colours kept (``lastLabelmapNode``).
        Registering again updates these nodes. The self-check is in the status line and the transform's attributes;
        ``showGlands`` shows the predicted glands (``lastGlandNodes``); a point list of MR targets (``targetsNode``,
        drawn in the MR's frame) is put under the transform, so it is shown on the US and follows every registration
        and live frame. On an error the scene is left as it was.
        """
        from LabelRegLib.slicer import mrml_outputs as outputs

        started = time.perf_counter()
        if segmentationMode not in outputs.SEGMENTATION_MODES:
            raise ValueError(f"segmentationMode must be one of {list(outputs.SEGMENTATION_MODES)}")
        scene = slicer.mrmlScene
        frame = outputs.moving_frame(scene, movingVolumeNode, outputTransformNode)
        fixed = outputs.fixed_volume(fixedVolumeNode)
        outputs.check_same_frame((segmentationNode, targetsNode), frame, outputTransformNode)
        with outputs.unchanged_on_error(scene, movingVolumeNode, segmentationNode, targetsNode):
            labels, colours = (None, None)
            if segmentationNode is not None and createLabelmap:
                labels, colours = outputs.segments_as_labels(scene, segmentationNode)
            request = self._requestOptions(modelPath, device, initialAlignment)
            reply = self._request(
                dict(request, moving=frame.volume, fixed=fixed, labels=labels, world_to_moving=frame.world_to_moving)
            )
            nodes = (movingVolumeNode, fixedVolumeNode, outputTransformNode)
            transform = self._apply(reply, started, nodes, frame, applyToMoving, showGlands)
            if targetsNode is not None:
                targetsNode.SetAndObserveTransformNodeID(transform.GetID())  # Slicer inverts the grid for points
            self.lastCarriedSegmentationNode, self.lastLabelmapNode = (
                outputs.carry_segments(
                    scene, segmentationNode, segmentationMode, transform, fixedVolumeNode, reply.labels, colours
                )
                if segmentationNode is not None
                else (None, None)
            )
        return transform

    @staticmethod
    def _requestOptions(modelPath, device, initialAlignment) -> dict:
        return {"model": modelPath or None, "device": device or "auto", "alignment": initialAlignment}

    def _apply(self, reply, started, nodes: tuple, frame, applyToMoving=True, showGlands=False):
        """Put a registration into MRML (main thread): the transform with its self-check, the MR under it and
        the predicted glands; count it and say how it went. ``nodes``: (moving, fixed, output transform or None)."""
        from LabelRegLib.slicer import mrml_outputs as outputs

        scene = slicer.mrmlScene
        transform = outputs.apply_transform(scene, reply, nodes, frame, applyToMoving)
        if showGlands:
            movingParentID = transform.GetID() if applyToMoving else frame.parent_id
            self.lastGlandNodes = outputs.show_glands(scene, reply, nodes[0], nodes[1], frame, movingParentID)
        self._report(reply, time.perf_counter() - started)
        return transform

    def _report(self, reply, runtime: float) -> None:
        """Count the registration and say how it went (``lastStatus``, ``lastWarnings``, the log)."""
        self.registrationCount += 1
        self.lastWarnings = list(reply.warnings)
        for message in self.lastWarnings:
            logging.warning(message)
        done = _("Registered in {seconds:.2f} s on {device} (network {network:.2f} s)").format(
            seconds=runtime, device=reply.device, network=reply.stage_s.get("network", 0.0)
        )
        setup = self.engine().take_notes()
        if reply.load_s:
            setup.append(_("loaded the model in {seconds:.1f} s").format(seconds=reply.load_s))
        if setup:  # the first registration pays for starting the worker and loading the model
            done += "; " + "; ".join(setup)
        warned = [_("Warning: {message}").format(message=message) for message in self.lastWarnings]
        quality = [reply.quality.text()] if reply.quality is not None and not reply.quality.flagged else []
        self.lastStatus = "\n".join([done, *quality, *warned])
        logging.info(self.lastStatus)

    # ---------------------------------------------------------------- live ultrasound
    def startLiveUpdate(self, movingVolumeNode, fixedVolumeNode, outputTransformNode, onUpdate=None, **options) -> None:
        """Re-register into ``outputTransformNode`` whenever the fixed volume's voxels change (``slicer_live``).

        ``options``: ``modelPath``, ``device``, ``initialAlignment``, ``applyToMoving``, as for :meth:`register`. The
        model is loaded before this returns. Each new frame goes to the worker; a frame that arrives while it is busy
        replaces any frame still waiting. :meth:`processLiveResults` puts replies into MRML (a ``QTimer`` calls it
        every 20 ms; callers without a Qt event loop call it or :meth:`waitForLiveResults`), then ``onUpdate(status)``.
        """
        from LabelRegLib.slicer.live import LiveSession
        from LabelRegLib.slicer.mrml_outputs import moving_frame

        unknown = set(options) - {"modelPath", "device", "initialAlignment", "applyToMoving"}
        if unknown:
            raise TypeError(f"startLiveUpdate() got unknown options {sorted(unknown)}")
        self.stopLiveUpdate()
        frame = moving_frame(slicer.mrmlScene, movingVolumeNode, outputTransformNode)
        request = self._requestOptions(options.get("modelPath"), options.get("device"), options.get("initialAlignment"))
        self._request(dict(request, op="load"))  # a bad model or device is refused here, before the first frame
        nodes = (movingVolumeNode, fixedVolumeNode, outputTransformNode)

        def apply(reply, arrived_s):
            self._apply(reply, arrived_s, nodes, frame, options.get("applyToMoving", True))
            self.lastStatus += _("; live latency {latency:.2f} s").format(latency=time.perf_counter() - arrived_s)
            if onUpdate:
                onUpdate(self.lastStatus)

        def failed(error):
            self._live = None  # the session has stopped itself
            self.lastStatus = _("Live update failed: {error}").format(error=error)
            logging.error(self.lastStatus)
            if onUpdate:
                onUpdate(self.lastStatus)

        self._live = LiveSession(self.engine(), fixedVolumeNode, frame, request, apply, failed)
        self.liveStatistics = self._live.statistics

    def stopLiveUpdate(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def processLiveResults(self) -> int:
        """Put the worker's finished registration into MRML (main thread, never waits); returns how many."""
        return self._live.process() if self._live is not None else 0

    def waitForLiveResults(self, timeout: float = 60.0) -> bool:
        """Process results until no frame is waiting or running (for batch use and tests); False on time-out."""
        return self._live.wait(timeout) if self._live is not None else True


class LabelRegTest(ScriptedLoadableModuleTest):
    """Self-test: built-in phantom pairs registered with the default model, checked through MRML nodes
    (``LabelRegLib.slicer.self_tests``); what the test adds to the scene is removed again."""

    def setUp(self):
        from LabelRegLib.slicer.self_tests import SceneGuard

        self.guard = SceneGuard(slicer.mrmlScene)

    def tearDown(self):
        self.guard.restore()

    def runTest(self):
        from LabelRegLib.slicer.self_tests import run_self_tests

        run_self_tests(self, "LabelReg", self.test_RegisterPhantom, self.test_LiveUpdate)

    def test_RegisterPhantom(self):
        from LabelRegLib.slicer.self_tests import register_phantom

        register_phantom(self, LabelRegLogic)

    def test_LiveUpdate(self):
        from LabelRegLib.slicer.self_tests import live_update

        live_update(self, LabelRegLogic)
