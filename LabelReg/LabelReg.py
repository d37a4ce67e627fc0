"""LabelReg: deep-learning MR to transrectal ultrasound (TRUS) registration of the prostate.

Module, parameter node, widget, logic and self-test after Slicer's scripted
module template. The engine is ``LabelRegLib`` (torch is imported only when a
registration runs); this file only moves data between MRML nodes and it.
"""

import logging
import os
import time
import warnings
from typing import Annotated

import vtk

import slicer
from slicer import vtkMRMLGridTransformNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

SEGMENTATION_MODES = ["transform", "harden"]


#
# LabelReg
#
class LabelReg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LabelReg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]
        self.parent.dependencies = []
        self.parent.contributors = ["LabelReg developers"]
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


#
# LabelRegParameterNode
#
@parameterNodeWrapper
class LabelRegParameterNode:
    """Everything the user sets in the panel; saved with the scene."""

    movingVolume: vtkMRMLScalarVolumeNode
    fixedVolume: vtkMRMLScalarVolumeNode
    modelPath: str = ""  # empty: the bundled model
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    initialAlignment: Annotated[str, Choice(["centers", "physical"])] = "centers"
    outputTransform: vtkMRMLGridTransformNode
    applyToMoving: bool = True
    segmentation: vtkMRMLSegmentationNode
    segmentationMode: Annotated[str, Choice(SEGMENTATION_MODES)] = "transform"
    createLabelmap: bool = False
    autoUpdate: bool = False
    status: str = ""


#
# LabelRegWidget
#
class LabelRegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: binds the .ui to the parameter node and calls the logic. No computation here."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LabelReg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LabelRegLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.registerButton.connect("clicked(bool)", self.onRegisterButton)
        self.ui.browseModelButton.connect("clicked(bool)", self.onBrowseModel)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChosen)
        self.ui.autoUpdateCheckBox.connect("toggled(bool)", self.onAutoUpdateToggled)
        LabelRegLogic.modelListObservers.append(self.refreshModelList)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.logic.stopLiveUpdate()
        if self.refreshModelList in LabelRegLogic.modelListObservers:
            LabelRegLogic.modelListObservers.remove(self.refreshModelList)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.logic.stopLiveUpdate()
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
            self.refreshModelList()
            self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        ready = bool(self._parameterNode and self._parameterNode.movingVolume and self._parameterNode.fixedVolume)
        self.ui.statusLabel.text = self._parameterNode.status if self._parameterNode else ""
        self.ui.registerButton.enabled = ready
        self.ui.registerButton.toolTip = _("Register the MR to the US") if ready else _("Select the moving MR and the fixed US volumes")
        self.ui.deviceInfoLabel.text = self.logic.deviceSummary()

    def refreshModelList(self) -> None:
        """Bundled model, models trained in LabelRegTraining this session, and files the user picked."""
        chosen = self._parameterNode.modelPath if self._parameterNode else ""
        self.ui.modelComboBox.blockSignals(True)
        self.ui.modelComboBox.clear()
        for label, path in self.logic.availableModels(extra=[chosen] if chosen else []):
            self.ui.modelComboBox.addItem(label, path)
        index = self.ui.modelComboBox.findData(chosen or self.logic.defaultModelPath())
        self.ui.modelComboBox.setCurrentIndex(max(index, 0))
        self.ui.modelComboBox.blockSignals(False)
        self._showModelHeader()

    def onModelChosen(self, index: int) -> None:
        path = self.ui.modelComboBox.itemData(index) or ""
        if self._parameterNode:
            self._parameterNode.modelPath = "" if path == self.logic.defaultModelPath() else path
        self._showModelHeader()

    def onBrowseModel(self) -> None:
        import qt

        path = qt.QFileDialog.getOpenFileName(self.parent, _("Choose a LabelReg model file"), "", _("LabelReg model (*.pt)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("This file is not a usable LabelReg model."), waitCursor=True):
                self.logic.modelSummary(path)  # rejects a bad file before it is offered
                LabelRegLogic.addModel(path)
                self._parameterNode.modelPath = path
                self.refreshModelList()

    def _showModelHeader(self) -> None:
        path = self.ui.modelComboBox.currentData
        try:
            self.ui.modelInfoLabel.text = self.logic.modelSummary(path) if path else ""
        except Exception as error:  # a broken file: say so in the panel, the Register button will refuse it
            self.ui.modelInfoLabel.text = str(error)

    def onAutoUpdateToggled(self, enabled: bool) -> None:
        if not enabled:
            self.logic.stopLiveUpdate()
        elif self._parameterNode.outputTransform:
            self._startLive()

    def _startLive(self) -> None:
        p = self._parameterNode
        # the segmentation already follows the transform; live frames only update the transform
        options = {**self._registerOptions(), "segmentationNode": None, "createLabelmap": False}
        self.logic.startLiveUpdate(p.movingVolume, p.fixedVolume, p.outputTransform, onUpdate=lambda message: setattr(self._parameterNode, "status", message), **options)

    def _registerOptions(self) -> dict:
        p = self._parameterNode
        return dict(
            modelPath=p.modelPath or None, device=p.device, initialAlignment=p.initialAlignment, applyToMoving=p.applyToMoving,
            segmentationNode=p.segmentation, segmentationMode=p.segmentationMode, createLabelmap=p.createLabelmap,
        )

    def onRegisterButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Registration failed."), waitCursor=True):
            if not self.logic.ensureDependencies(askUser=True):
                return
            p = self._parameterNode
            p.outputTransform = self.logic.register(p.movingVolume, p.fixedVolume, p.outputTransform, **self._registerOptions())
            p.status = self.logic.lastStatus
            if p.autoUpdate:
                self._startLive()


#
# LabelRegLogic
#
class LabelRegLogic(ScriptedLoadableModuleLogic):
    """Registration on MRML nodes, callable without any GUI (the batch script and the self-test use it).

    The model is loaded once per (model file, device) and shared by every logic
    instance of the session.
    """

    _registrars = {}  # (model path, device name) -> LabelRegLib.registration.Registrar
    extraModels = []  # model files offered in the panel besides the bundled one (trained or browsed this session)
    modelListObservers = []  # callables run when extraModels changes (the LabelReg panel refreshes its list)

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.lastStatus = ""
        self.lastWarnings: list[str] = []  # what the engine warned of in the last registration
        self.lastRuntime = None
        self.registrationCount = 0
        self._live = None

    def getParameterNode(self):
        return LabelRegParameterNode(super().getParameterNode())

    # ---------------------------------------------------------------- dependencies and models
    @staticmethod
    def ensureDependencies(askUser: bool = True) -> bool:
        """Make torch and nibabel importable: torch through the PyTorch extension's PyTorchUtils (after asking),
        nibabel through Slicer's pip. Slicer's own numpy and SimpleITK are used as they are."""
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            if askUser and not slicer.util.confirmOkCancelDisplay(_("LabelReg needs PyTorch, which is not installed yet. Install it now? (this can take several minutes)")):
                return False
            import PyTorchUtils  # provided by the PyTorch extension, a declared dependency

            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False) is None:
                raise RuntimeError(_("PyTorch could not be installed; see the PyTorch extension's messages."))
        if importlib.util.find_spec("nibabel") is None:
            slicer.util.pip_install("nibabel")
        return True

    @staticmethod
    def defaultModelPath() -> str:
        from LabelRegLib.model_file import default_model_path

        return str(default_model_path())

    @classmethod
    def addModel(cls, path: str) -> None:
        """Offer a model file in the LabelReg panel (used by LabelRegTraining when a training ends)."""
        path = str(path)
        if path not in cls.extraModels:
            cls.extraModels.append(path)
        for observer in list(cls.modelListObservers):
            observer()

    def availableModels(self, extra=()) -> list:
        """``(label, path)`` of the bundled model and every other model offered this session."""
        models = [(_("Bundled LocalNet (default)"), self.defaultModelPath())]
        for path in list(self.extraModels) + [p for p in extra if p not in self.extraModels]:
            if path and path != self.defaultModelPath():
                models.append((os.path.basename(os.path.dirname(path)) + "/" + os.path.basename(path), path))
        return models

    def modelSummary(self, path: str | None) -> str:
        """One paragraph about a model file: what it was trained on and how well it validated."""
        from LabelRegLib.model_file import read_model_header

        header = read_model_header(path or self.defaultModelPath())
        training, validation = header.get("training", {}), header.get("validation", {})
        architecture = header.get("architecture", {})
        text = _("{network} net, {channels} channels; trained on {pairs} pairs ({data}), {steps} steps").format(
            network=architecture.get("network_type", "?"), channels=architecture.get("num_channel_initial", "?"),
            pairs=training.get("n_train_pairs", "?"), data=training.get("data", "?"), steps=training.get("steps", "?"))
        if validation:
            text += _("; validation: gland Dice {dice:.2f}, TRE {tre:.1f} mm").format(dice=validation.get("val_dice", float("nan")), tre=validation.get("val_tre_mm", float("nan")))
        return text

    @staticmethod
    def deviceSummary() -> str:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return _("PyTorch not installed yet")
        from LabelRegLib.device import available_devices

        return _("available: {devices}").format(devices=", ".join(available_devices()))

    def registrar(self, modelPath: str | None = None, device: str = "auto"):
        """The loaded model for (file, device), loaded on first use."""
        from LabelRegLib.device import select_device
        from LabelRegLib.registration import Registrar

        path = os.path.abspath(modelPath or self.defaultModelPath())
        key = (path, str(select_device(device)))
        if key not in self._registrars:
            self._registrars[key] = Registrar(path, device)
        return self._registrars[key]

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
    ):
        """Register the moving MR to the fixed US; return the grid transform node (created if not given).

        The transform maps fixed world RAS to the moving volume's own RAS (any
        parent transform of the moving volume is part of the result), so the MR
        placed directly under it lands on the US. A segmentation drawn on the MR
        (with the same parent transform as the MR) is put under the transform
        (``transform``) or copied and hardened onto the US (``harden``); with
        ``createLabelmap`` its segments are also exported as a labelmap on the US
        grid (``self.lastLabelmapNode``; the carried segmentation is
        ``self.lastCarriedSegmentationNode``). On any error no new node is left
        behind and the MR and segmentation keep their parent transforms.
        """
        import numpy as np

        from LabelRegLib.errors import InputError
        from LabelRegLib.mrml import displacement_to_local, set_grid_transform, volume_from_node

        started = time.perf_counter()
        for node, role in ((movingVolumeNode, _("moving volume")), (fixedVolumeNode, _("fixed volume"))):
            if node is None:
                raise InputError(role, _("no volume selected"))
        if segmentationMode not in SEGMENTATION_MODES:
            raise ValueError(f"segmentationMode must be one of {SEGMENTATION_MODES}")
        frameToWorld, frameID = self._movingFrame(movingVolumeNode, outputTransformNode)
        moving = volume_from_node(movingVolumeNode, _("moving volume"), frameToWorld)
        fixed = volume_from_node(fixedVolumeNode, _("fixed volume"))
        sameFrame = {frameID} | ({outputTransformNode.GetID()} if outputTransformNode else set())
        if segmentationNode is not None and segmentationNode.GetTransformNodeID() not in sameFrame:
            raise InputError(segmentationNode.GetName(), "is not in the moving volume's frame: give it the same parent transform as the MR (or none), then register again")
        registrar = self.registrar(modelPath, device)
        with warnings.catch_warnings(record=True) as caught:  # e.g. a US larger than the model's training volumes
            warnings.simplefilter("always")
            result = registrar.register(moving, fixed, initialAlignment)
        self.lastWarnings = [str(warning.message) for warning in caught]
        for message in self.lastWarnings:
            logging.warning(message)
        # the transform maps world to the MR's own RAS: its parent transform (if any) is folded in
        displacement = displacement_to_local(result.displacement, np.linalg.inv(frameToWorld))

        created = []
        originalParents = [(node, node.GetTransformNodeID()) for node in (movingVolumeNode, segmentationNode) if node is not None]
        try:
            if outputTransformNode is None:
                outputTransformNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode", f"{movingVolumeNode.GetName()} to {fixedVolumeNode.GetName()}")
                created.append(outputTransformNode)
            outputTransformNode.SetAndObserveTransformNodeID(None)
            outputTransformNode.SetAttribute(self.MOVING_FRAME_ATTRIBUTE, frameID or "")
            set_grid_transform(outputTransformNode, displacement)
            if applyToMoving:
                movingVolumeNode.SetAndObserveTransformNodeID(outputTransformNode.GetID())
            self.lastLabelmapNode = self.lastCarriedSegmentationNode = None
            if segmentationNode is not None:
                self.lastCarriedSegmentationNode = self._carrySegmentation(segmentationNode, outputTransformNode, segmentationMode, created)
                if createLabelmap:
                    self.lastLabelmapNode = self._exportLabelmap(segmentationNode, fixedVolumeNode, displacement, created)
        except Exception:
            for node, parentID in originalParents:
                node.SetAndObserveTransformNodeID(parentID)
            for node in created:
                slicer.mrmlScene.RemoveNode(node)
            raise
        self.registrationCount += 1
        self.lastRuntime = time.perf_counter() - started
        self.lastStatus = "\n".join([
            _("Registered in {seconds:.2f} s on {device} (network {network:.2f} s)").format(seconds=self.lastRuntime, device=result.device, network=result.runtime_s),
            *(_("Warning: {message}").format(message=message) for message in self.lastWarnings),
        ])
        logging.info(self.lastStatus)
        return outputTransformNode

    MOVING_FRAME_ATTRIBUTE = "LabelReg.MovingParentTransformID"

    @classmethod
    def _movingFrame(cls, movingVolumeNode, outputTransformNode):
        """``(matrix from the MR's own RAS to world, ID of its original parent transform)``.

        When the MR is already under the output transform (a re-registration,
        live mode), its original parent is the one recorded on that transform.
        """
        from LabelRegLib.mrml import transform_to_world

        parentID = movingVolumeNode.GetTransformNodeID()
        if outputTransformNode is not None and parentID == outputTransformNode.GetID():
            parentID = outputTransformNode.GetAttribute(cls.MOVING_FRAME_ATTRIBUTE) or None
        parent = slicer.mrmlScene.GetNodeByID(parentID) if parentID else None
        return transform_to_world(parent, _("moving volume '{name}'").format(name=movingVolumeNode.GetName())), parentID

    def _carrySegmentation(self, segmentationNode, transformNode, mode: str, created: list):
        if mode == "transform":
            segmentationNode.SetAndObserveTransformNodeID(transformNode.GetID())
            return segmentationNode
        # "harden": a copy on the US, so that the MR segmentation the user drew is kept as it was
        copy = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{segmentationNode.GetName()} on US")
        created.append(copy)
        copy.GetSegmentation().DeepCopy(segmentationNode.GetSegmentation())
        copy.SetAndObserveTransformNodeID(transformNode.GetID())
        slicer.vtkSlicerTransformLogic.hardenTransform(copy)
        return copy

    @staticmethod
    def _exportLabelmap(segmentationNode, fixedVolumeNode, displacementLocal, created: list):
        """The MR segmentation's segments as a labelmap on the US grid.

        Slicer's segmentation logic exports the segments in the MR frame (an
        exact copy of its binary labelmaps); the engine then resamples that
        labelmap once, nearest neighbour, through the registration's field.
        Exporting straight through a non-linear transform would resample twice
        (Slicer transforms onto an intermediate grid first), moving small
        targets by up to a voxel.
        """
        import numpy as np

        from LabelRegLib.mrml import update_volume_node, volume_from_node
        from LabelRegLib.spatial import resample_volume

        inMrFrame = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__LabelReg_labelmap_in_MR_frame__")
        created.append(inMrFrame)
        segmentIds = vtk.vtkStringArray()
        segmentationNode.GetSegmentation().GetSegmentIDs(segmentIds)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentationNode, segmentIds, inMrFrame):
            raise RuntimeError(f"Exporting the segments of '{segmentationNode.GetName()}' to a labelmap failed")
        labels = volume_from_node(inMrFrame, "exported labelmap", to_world=np.eye(4)).padded(1)  # in the MR's own RAS; empty outside
        fixed = volume_from_node(fixedVolumeNode, "fixed volume")
        onUs = resample_volume(labels, fixed.shape, fixed.ijk_to_ras, displacement_ras=displacementLocal.array, interpolation="nearest")
        slicer.mrmlScene.RemoveNode(inMrFrame)
        created.remove(inMrFrame)

        labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{segmentationNode.GetName()} labelmap on US")
        created.append(labelmap)
        localMatrix = vtk.vtkMatrix4x4()
        fixedVolumeNode.GetIJKToRASMatrix(localMatrix)
        labelmap.SetAndObserveTransformNodeID(fixedVolumeNode.GetTransformNodeID())
        update_volume_node(labelmap, onUs.with_array(np.rint(onUs.array).astype(np.int16)))
        labelmap.SetIJKToRASMatrix(localMatrix)  # same grid as the US node, under the same parent
        return labelmap

    # ---------------------------------------------------------------- live ultrasound
    def startLiveUpdate(self, movingVolumeNode, fixedVolumeNode, outputTransformNode, schedule=None, onUpdate=None, **registerOptions) -> None:
        """Re-register into ``outputTransformNode`` whenever the fixed volume's voxels change.

        Frames that arrive while a registration runs are not queued: when it
        ends, one more registration runs on the latest frame (the latest wins).
        ``schedule(callable)`` defers work to the event loop (default: a zero
        Qt timer in Slicer; immediate where there is no Qt event loop).
        """
        self.stopLiveUpdate()
        if schedule is None:
            schedule = self._defaultSchedule()
        live = {
            "nodes": (movingVolumeNode, fixedVolumeNode, outputTransformNode),
            "options": registerOptions,
            "schedule": schedule,
            "onUpdate": onUpdate,
            "pending": False,
            "running": False,
            "scheduled": False,
            "frameTime": None,
            "stamp": self._imageStamp(fixedVolumeNode),
            "observers": [],
        }
        self._live = live
        for event in (slicer.vtkMRMLVolumeNode.ImageDataModifiedEvent, vtk.vtkCommand.ModifiedEvent):
            live["observers"].append(fixedVolumeNode.AddObserver(event, self._onFixedModified))

    def stopLiveUpdate(self) -> None:
        if self._live:
            fixedVolumeNode = self._live["nodes"][1]
            for tag in self._live["observers"]:
                fixedVolumeNode.RemoveObserver(tag)
        self._live = None

    @staticmethod
    def _imageStamp(volumeNode) -> int:
        """Changes whenever the voxels change (image data or its scalars array were modified)."""
        image = volumeNode.GetImageData()
        if image is None:
            return -1
        scalars = image.GetPointData().GetScalars()
        return max(image.GetMTime(), scalars.GetMTime() if scalars is not None else 0)

    @staticmethod
    def _defaultSchedule():
        try:
            import qt

            return lambda callback: qt.QTimer.singleShot(0, callback)
        except (ImportError, AttributeError):
            return lambda callback: callback()

    def _onFixedModified(self, caller, event) -> None:
        live = self._live
        if live is None:
            return
        stamp = self._imageStamp(caller)
        if stamp == live["stamp"]:
            return  # a rename or display change: the voxels are the same
        live["stamp"] = stamp
        live["pending"] = True
        live["frameTime"] = time.perf_counter()
        if not live["running"] and not live["scheduled"]:
            live["scheduled"] = True
            live["schedule"](self._runLive)

    def _runLive(self) -> None:
        live = self._live
        if live is None:
            return
        live["scheduled"] = False
        moving, fixed, transform = live["nodes"]
        while live["pending"] and self._live is live:
            live["pending"] = False
            frameTime = live["frameTime"]
            live["running"] = True
            try:
                self.register(moving, fixed, transform, **live["options"])
            except Exception as error:
                self.lastStatus = _("Live update failed: {error}").format(error=error)
                logging.error(self.lastStatus)
                self.stopLiveUpdate()
                live["running"] = False
                break
            live["running"] = False
            self.lastLatency = time.perf_counter() - frameTime
            self.lastStatus += _("; live latency {latency:.2f} s").format(latency=self.lastLatency)
            if live["onUpdate"]:
                live["onUpdate"](self.lastStatus)


#
# LabelRegTest
#
class LabelRegTest(ScriptedLoadableModuleTest):
    """Self-test: a built-in phantom pair registered with the default model, checked through MRML nodes."""

    def setUp(self):
        from LabelRegLib.mrml import node_ids

        self.nodesBefore = node_ids(slicer.mrmlScene)

    def tearDown(self):
        """Remove every node the test added (with their display and storage nodes), and nothing else."""
        from LabelRegLib.mrml import remove_nodes_added_since

        remove_nodes_added_since(slicer.mrmlScene, self.nodesBefore)

    def runTest(self):
        self.setUp()
        try:
            self.test_RegisterPhantom()
            self.test_LiveUpdate()
        finally:
            self.tearDown()

    def _loadPhantom(self, seed: int = 1001):
        from LabelRegLib.mrml import update_volume_node
        from LabelRegLib.phantom import make_phantom_pair

        pair = make_phantom_pair(seed)
        moving = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "LabelRegTest MR")
        fixed = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "LabelRegTest US")
        update_volume_node(moving, pair.moving_image)
        update_volume_node(fixed, pair.fixed_image)
        gland = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "LabelRegTest MR gland")
        update_volume_node(gland, pair.moving_labels[0].with_array(pair.moving_labels[0].array.astype("uint8")))
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "LabelRegTest MR segmentation")
        slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(gland, segmentation)
        return pair, moving, fixed, segmentation

    def test_RegisterPhantom(self):
        import numpy as np

        from LabelRegLib.metrics import dice, tre_mm
        from LabelRegLib.mrml import volume_from_node
        from LabelRegLib.spatial import initial_alignment, resample_volume

        self.delayDisplay("Registering a phantom MR/US pair")
        pair, moving, fixed, segmentation = self._loadPhantom()
        logic = LabelRegLogic()
        transform = logic.register(moving, fixed, segmentationNode=segmentation, createLabelmap=True)
        self.assertEqual(moving.GetTransformNodeID(), transform.GetID())
        after = volume_from_node(logic.lastLabelmapNode, "exported labelmap")
        after = after.with_array((after.array > 0).astype(np.float32))
        target = pair.fixed_labels[0]
        start = initial_alignment(pair.moving_image, pair.fixed_image, "centers")
        before = resample_volume(pair.moving_labels[0], target.shape, target.ijk_to_ras, start)
        self.assertTrue(after.same_geometry(target), "the labelmap is on the US grid")
        self.assertGreater(dice(after.array, target.array), dice(before.array, target.array))
        self.assertLess(tre_mm(after, target), tre_mm(before, target))
        self.delayDisplay(f"Gland Dice {dice(before.array, target.array):.3f} -> {dice(after.array, target.array):.3f}; {logic.lastStatus}")

    def test_LiveUpdate(self):
        import numpy as np

        self.delayDisplay("Live update: the US changes, the transform follows")
        pair, moving, fixed, _segmentation = self._loadPhantom(1002)
        logic = LabelRegLogic()
        transform = logic.register(moving, fixed)
        before = logic.registrationCount
        logic.startLiveUpdate(moving, fixed, transform, schedule=lambda callback: callback())
        try:
            for shift in (1, 2, 3):
                slicer.util.updateVolumeFromArray(fixed, np.roll(pair.fixed_image.array, shift, axis=2))
        finally:
            logic.stopLiveUpdate()
        self.assertEqual(logic.registrationCount - before, 3)
        self.assertEqual(moving.GetTransformNodeID(), transform.GetID())
        self.delayDisplay(logic.lastStatus)
