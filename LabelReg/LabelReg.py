"""LabelReg: deep-learning MR to transrectal ultrasound (TRUS) registration of the prostate.

Module, parameter node, widget, logic and self-test after Slicer's scripted
module template. The engine is ``LabelRegLib`` (torch is imported only when a
registration runs); this file only moves data between MRML nodes and it. Live registration runs
the network in a worker thread (``LabelRegLib.live``); only MRML updates
happen on the main thread.
"""

from __future__ import annotations

import logging
import time
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

SEGMENTATION_MODES = ["transform", "harden"]
# the transform node attribute of each quality column (LabelRegLib.quality.QUALITY_COLUMNS)
QUALITY_ATTRIBUTES = {
    "quality_dice": "LabelReg.QualityDice",
    "quality_centroid_mm": "LabelReg.QualityCentroidMm",
    "quality_flag": "LabelReg.QualityFlag",
}
TORCH_REQUIREMENT = (2, 1)  # weights-only model loading and channels_last_3d; what pyproject.toml asks for
MOVING_PARENT_REFERENCE = (
    "labelRegMovingParent"  # output transform -> the MR's own parent transform (remapped on scene import)
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
    segmentationMode: Annotated[str, Choice(SEGMENTATION_MODES)] = "transform"
    createLabelmap: bool = False
    showGlands: bool = False
    autoUpdate: bool = False


class LabelRegWidget(ScriptedLoadableModuleWidget):
    """The panel: binds the .ui to the parameter node and calls the logic. No computation here."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None
        self.panel = None  # the .ui bound to the parameter node, made in setup() (LabelRegLib.slicer_panel)
        self._parameterNode = None  # kept current by self.panel

    def setup(self) -> None:
        from LabelRegLib.slicer_panel import ParameterNodePanel

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
        self.ui.autoUpdateCheckBox.connect("toggled(bool)", self.onAutoUpdateToggled)
        self.logic.modelCatalogue().observers.append(self.refreshModelList)
        self.panel.bind()

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
        chosen = self._parameterNode.modelPath if self._parameterNode else ""
        catalogue = self.logic.modelCatalogue()
        self.ui.modelComboBox.blockSignals(True)
        self.ui.modelComboBox.clear()
        for label, path in catalogue.models(extra=(chosen,) if chosen else ()):
            self.ui.modelComboBox.addItem(label, path)
        index = self.ui.modelComboBox.findData(catalogue.bundled if not chosen else self.logic.resolvedPath(chosen))
        self.ui.modelComboBox.setCurrentIndex(max(index, 0))
        self.ui.modelComboBox.blockSignals(False)
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

    def onAutoUpdateToggled(self, enabled: bool) -> None:
        if not enabled:
            self.logic.stopLiveUpdate()
        elif self._parameterNode.outputTransform:
            with slicer.util.tryWithErrorDisplay(_("Live registration could not start."), waitCursor=True):
                self._startLive()

    def _startLive(self) -> None:
        p = self._parameterNode
        self.logic.startLiveUpdate(
            p.movingVolume,
            p.fixedVolume,
            p.outputTransform,
            onUpdate=self._showStatus,
            modelPath=p.modelPath or None,
            device=p.device,
            initialAlignment=p.initialAlignment,
            applyToMoving=p.applyToMoving,
        )

    def onRegisterButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Registration failed."), waitCursor=True):
            if not self.logic.ensureDependencies(askUser=True):
                return
            p = self._parameterNode
            p.outputTransform = self.logic.register(
                p.movingVolume,
                p.fixedVolume,
                p.outputTransform,
                modelPath=p.modelPath or None,
                device=p.device,
                initialAlignment=p.initialAlignment,
                applyToMoving=p.applyToMoving,
                segmentationNode=p.segmentation,
                segmentationMode=p.segmentationMode,
                createLabelmap=p.createLabelmap,
                showGlands=p.showGlands,
            )
            self._showStatus(self.logic.lastStatus)
            self._updateButtons()  # the device list is known now
            if p.autoUpdate:
                self._startLive()


class LabelRegLogic(ScriptedLoadableModuleLogic):
    """Registration on MRML nodes, callable without any GUI (the batch script and the self-test use it).

    Models are listed, summarised and loaded through one
    :class:`LabelRegLib.model_catalogue.ModelCatalogue` shared by every logic
    instance of the session (:meth:`modelCatalogue`).
    """

    _catalogue = None

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.lastStatus = ""
        self.lastWarnings: list[str] = []  # what the engine warned of in the last registration
        self.lastRuntime = None
        self.lastLabelmapNode = None
        self.lastCarriedSegmentationNode = None
        self.lastGlandNodes = ()
        self.registrationCount = 0
        self.liveStatistics = {"frames": 0, "processed": 0, "dropped": 0, "latency_s": [], "main_thread_s": []}
        self._live = None

    def getParameterNode(self):
        return LabelRegParameterNode(super().getParameterNode())

    # ---------------------------------------------------------------- dependencies and models
    @staticmethod
    def missingDependencies() -> list[str]:
        """The Python packages LabelReg needs that are not installed (checked without importing them)."""
        import importlib.util

        return [name for name in ("torch", "nibabel") if importlib.util.find_spec(name) is None]

    @classmethod
    def runSelfTests(cls, test, moduleName: str, *tests) -> None:
        """Run ``tests`` between ``test.setUp()`` and ``test.tearDown()``; skipped, saying so, where torch or
        nibabel is missing (e.g. on the extension build machines: nothing to register or train with)."""
        missing = cls.missingDependencies()
        if missing:
            test.delayDisplay(f"{moduleName} self-test skipped: {', '.join(missing)} not installed")
            return
        test.setUp()
        try:
            for run in tests:
                run()
        finally:
            test.tearDown()

    @classmethod
    def ensureDependencies(cls, askUser: bool = True) -> bool:
        """Make torch (>= TORCH_REQUIREMENT, through the PyTorch extension's PyTorchUtils) and nibabel (through
        Slicer's pip) importable, asking before each install. False when the user declines."""
        import importlib.metadata

        missing = cls.missingDependencies()
        version = "0"
        if "torch" not in missing:
            version = importlib.metadata.version("torch")
        tooOld = (
            "torch" not in missing
            and tuple(int(part) for part in version.split("+")[0].split(".")[:2]) < TORCH_REQUIREMENT
        )
        requirement = ">=" + ".".join(map(str, TORCH_REQUIREMENT))
        if "torch" in missing or tooOld:
            try:
                import PyTorchUtils  # the PyTorch extension, a declared dependency of this extension
            except ImportError:
                raise RuntimeError(
                    _(
                        "LabelReg needs the PyTorch extension. Install it in the Extensions Manager "
                        "(search for 'PyTorch'), restart Slicer, then try again."
                    )
                ) from None
            question = (
                _("LabelReg needs PyTorch {requirement}, which is not installed yet.")
                if not tooOld
                else _("LabelReg needs PyTorch {requirement}; version {version} is installed.")
            ).format(requirement=requirement, version=version)
            if askUser and not slicer.util.confirmOkCancelDisplay(
                question + " " + _("Install it now? (this can take several minutes)")
            ):
                return False
            if (
                PyTorchUtils.PyTorchUtilsLogic().installTorch(
                    askConfirmation=False, torchVersionRequirement=requirement
                )
                is None
            ):
                raise RuntimeError(_("PyTorch could not be installed; see the PyTorch extension's messages."))
        if "nibabel" in missing:
            if askUser and not slicer.util.confirmOkCancelDisplay(
                _(
                    "LabelReg reads NIfTI files with the Python package nibabel, "
                    "which is not installed yet. Install it now?"
                )
            ):
                return False
            slicer.util.pip_install("nibabel")
        return True

    @classmethod
    def modelCatalogue(cls):
        """The session's :class:`~LabelRegLib.model_catalogue.ModelCatalogue` (bundled model, trained ones, loaded ones)."""
        if cls._catalogue is None:
            from LabelRegLib.model_catalogue import ModelCatalogue

            cls._catalogue = ModelCatalogue()
        return cls._catalogue

    @staticmethod
    def resolvedPath(path: str) -> str:
        import pathlib

        return str(pathlib.Path(path).resolve())

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
    ):
        """Register the moving MR to the fixed US; return the grid transform node (created if not given).

        The transform maps fixed world RAS to the moving volume's own RAS (any
        parent transform of the moving volume is part of the result), so the MR
        placed directly under it lands on the US. A segmentation drawn on the MR
        (with the same parent transform as the MR) is put under the transform
        (``transform``) or copied and hardened onto the US (``harden``); with
        ``createLabelmap`` its segments are also exported as a labelmap on the US
        grid (``self.lastLabelmapNode``; the carried segmentation is
        ``self.lastCarriedSegmentationNode``). The registration's self-check (the
        quality score, when a gland model is loaded) is in the status line and in
        the transform node's attributes ``LabelReg.QualityDice``,
        ``LabelReg.QualityCentroidMm`` and ``LabelReg.QualityFlag``; with
        ``showGlands`` the two predicted glands are shown as segmentation nodes,
        the MR's beside the MR (under the transform with ``applyToMoving``), the
        US's on the US (``self.lastGlandNodes``). On any error no new node is left
        behind and the MR and segmentation keep their parent transforms.
        """
        from LabelRegLib.errors import InputError

        started = time.perf_counter()
        if segmentationMode not in SEGMENTATION_MODES:
            raise ValueError(f"segmentationMode must be one of {SEGMENTATION_MODES}")
        moving, frameToWorld, frameID = self._movingInput(movingVolumeNode, outputTransformNode)
        fixed = self._fixedInput(fixedVolumeNode)
        sameFrame = {frameID} | ({outputTransformNode.GetID()} if outputTransformNode else set())
        if segmentationNode is not None and segmentationNode.GetTransformNodeID() not in sameFrame:
            raise InputError(
                segmentationNode.GetName(),
                "is not in the moving volume's frame: give it the same parent transform as the MR (or none), then register again",
            )
        result = (
            self.modelCatalogue().registrar(modelPath, device).register(moving, fixed, initialAlignment, warn=False)
        )
        nodes, frame = (movingVolumeNode, fixedVolumeNode, outputTransformNode), (frameToWorld, frameID)
        return self._apply(
            result,
            started,
            nodes,
            frame,
            applyToMoving,
            (segmentationNode, segmentationMode, createLabelmap),
            showGlands,
        )

    @staticmethod
    def _fixedInput(fixedVolumeNode):
        from LabelRegLib.mrml import volume_from_node

        return volume_from_node(fixedVolumeNode, _("fixed volume"))

    @staticmethod
    def _movingInput(movingVolumeNode, outputTransformNode):
        """``(MR volume in world RAS, matrix from its own RAS to world, ID of its original parent transform)``.

        When the MR is already under the output transform (a re-registration,
        live mode), its original parent is the one the transform refers to.
        """
        from LabelRegLib.mrml import transform_to_world, volume_from_node

        if movingVolumeNode is None:
            return volume_from_node(None, _("moving volume")), None, None  # raises "no volume selected"
        parentID = movingVolumeNode.GetTransformNodeID()
        if outputTransformNode is not None and parentID == outputTransformNode.GetID():
            parentID = outputTransformNode.GetNodeReferenceID(MOVING_PARENT_REFERENCE)
        parent = slicer.mrmlScene.GetNodeByID(parentID) if parentID else None
        frameToWorld = transform_to_world(parent, _("moving volume '{name}'").format(name=movingVolumeNode.GetName()))
        return volume_from_node(movingVolumeNode, _("moving volume"), frameToWorld), frameToWorld, parentID

    def _apply(
        self,
        result,
        started,
        nodes: tuple,
        frame: tuple,
        applyToMoving=True,
        segmentation=(None, "transform", False),
        showGlands=False,
    ):
        """Put a registration result into MRML (main thread): the transform and its quality attributes, the MR
        under it, the carried segmentation and labelmap, the predicted glands. ``nodes``: (moving, fixed, output
        transform or None); ``frame``: (the MR's own RAS to world, its parent's ID); ``segmentation``: (node or None,
        mode, create a labelmap). On any error the scene is as it was."""
        movingVolumeNode, fixedVolumeNode, outputTransformNode = nodes
        frameToWorld, frameID = frame
        segmentationNode, segmentationMode, createLabelmap = segmentation
        import numpy as np

        from LabelRegLib.mrml import displacement_to_local, node_ids, remove_nodes_added_since, set_grid_transform

        # the transform maps world to the MR's own RAS: its parent transform (if any) is folded in
        displacement = displacement_to_local(result.displacement, np.linalg.inv(frameToWorld))
        nodesBefore = node_ids(slicer.mrmlScene)
        originalParents = [
            (node, node.GetTransformNodeID()) for node in (movingVolumeNode, segmentationNode) if node is not None
        ]
        try:
            if outputTransformNode is None:
                outputTransformNode = slicer.mrmlScene.AddNewNodeByClass(
                    "vtkMRMLGridTransformNode", f"{movingVolumeNode.GetName()} to {fixedVolumeNode.GetName()}"
                )
                outputTransformNode.CreateDefaultDisplayNodes()
            outputTransformNode.SetAndObserveTransformNodeID(None)
            outputTransformNode.SetNodeReferenceID(MOVING_PARENT_REFERENCE, frameID)
            set_grid_transform(outputTransformNode, displacement)
            for name, value in (result.quality.row() if result.quality else {}).items():
                outputTransformNode.SetAttribute(QUALITY_ATTRIBUTES[name], f"{value:.6g}")
            if applyToMoving:
                movingVolumeNode.SetAndObserveTransformNodeID(outputTransformNode.GetID())
            movingParentID = outputTransformNode.GetID() if applyToMoving else frameID
            self.lastGlandNodes = (
                self._showGlands(result, (movingVolumeNode, fixedVolumeNode), frameToWorld, movingParentID)
                if showGlands
                else ()
            )
            self.lastLabelmapNode = self.lastCarriedSegmentationNode = None
            if segmentationNode is not None:
                self.lastCarriedSegmentationNode = self._carrySegmentation(
                    segmentationNode, outputTransformNode, segmentationMode
                )
                if createLabelmap:
                    self.lastLabelmapNode = self._exportLabelmap(segmentationNode, fixedVolumeNode, displacement)
        except Exception:
            for node, parentID in originalParents:
                node.SetAndObserveTransformNodeID(parentID)
            remove_nodes_added_since(slicer.mrmlScene, nodesBefore)  # the new outputs with their display nodes
            raise
        self._report(result, time.perf_counter() - started)
        return outputTransformNode

    def _report(self, result, runtime: float) -> None:
        """Count the registration and say how it went (``lastStatus``, ``lastWarnings``, the log)."""
        self.registrationCount += 1
        self.lastRuntime = runtime
        self.lastWarnings = list(result.warnings)
        for message in self.lastWarnings:
            logging.warning(message)
        done = _("Registered in {seconds:.2f} s on {device} (network {network:.2f} s)")
        warned = [_("Warning: {message}").format(message=message) for message in self.lastWarnings]
        quality = [result.quality.text()] if result.quality is not None and not result.quality.flagged else []
        self.lastStatus = "\n".join(
            [done.format(seconds=runtime, device=result.device, network=result.stage_s["network"]), *quality, *warned]
        )
        logging.info(self.lastStatus)

    def _showGlands(self, result, volumeNodes: tuple, movingToWorld, movingParentID) -> tuple:
        """The predicted (MR, US) glands shown on their volumes: the MR's in the MR's own frame under
        ``movingParentID``, the US's in the US's frame under the US's parent."""
        import numpy as np

        from LabelRegLib.mrml import transform_to_world

        movingNode, fixedNode = volumeNodes
        fixedToWorld = transform_to_world(fixedNode.GetParentTransformNode(), _("fixed volume"))
        placements = (
            (movingNode, movingParentID, np.linalg.inv(movingToWorld)),
            (fixedNode, fixedNode.GetTransformNodeID(), np.linalg.inv(fixedToWorld)),
        )
        return tuple(self._showGland(gland, *placement) for gland, placement in zip(result.glands, placements))

    @staticmethod
    def _showGland(gland, volumeNode, parentID, worldToLocal):
        """The predicted gland of ``volumeNode`` as the segmentation node "<volume> gland (LabelReg)" (re-used on
        the next registration), in the volume's frame under ``parentID``."""
        from LabelRegLib.mrml import set_segments_from_labelmap
        from LabelRegLib.volume import Volume

        reference = "labelRegPredictedGland"
        node = volumeNode.GetNodeReference(reference)
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", f"{volumeNode.GetName()} gland (LabelReg)"
            )
            node.CreateDefaultDisplayNodes()
            volumeNode.SetNodeReferenceID(reference, node.GetID())
        probability = gland.probability
        local = Volume(probability.array, worldToLocal @ probability.ijk_to_ras, probability.name)
        set_segments_from_labelmap(slicer.mrmlScene, node, local, _("predicted gland"))
        node.SetAndObserveTransformNodeID(parentID)
        return node

    @staticmethod
    def _carrySegmentation(segmentationNode, transformNode, mode: str):
        if mode == "transform":
            segmentationNode.SetAndObserveTransformNodeID(transformNode.GetID())
            return segmentationNode
        # "harden": a copy on the US, so that the MR segmentation the user drew is kept as it was
        copy = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{segmentationNode.GetName()} on US")
        copy.CreateDefaultDisplayNodes()
        copy.GetSegmentation().DeepCopy(segmentationNode.GetSegmentation())
        copy.SetAndObserveTransformNodeID(transformNode.GetID())
        copy.HardenTransform()
        return copy

    @staticmethod
    def _exportLabelmap(segmentationNode, fixedVolumeNode, displacementLocal):
        """The MR segmentation's segments as a labelmap on the US grid.

        Slicer's segmentation logic exports the segments in the MR frame (an
        exact copy of its binary labelmaps); the engine then resamples that
        labelmap once, nearest neighbour, through the registration's field.
        Exporting straight through a non-linear transform would resample twice
        (Slicer transforms onto an intermediate grid first), moving small
        targets by up to a voxel.
        """
        import numpy as np

        from LabelRegLib.mrml import node_ids, remove_nodes_added_since, update_volume_node, volume_from_node
        from LabelRegLib.registration import warp_volume

        scratch = node_ids(slicer.mrmlScene)
        try:  # the export adds a labelmap, and a display node and a color table for it: all removed below
            inMrFrame = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLLabelMapVolumeNode", "__LabelReg_labelmap_in_MR_frame__"
            )
            segmentIds = vtk.vtkStringArray()
            segmentationNode.GetSegmentation().GetSegmentIDs(segmentIds)
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentationNode, segmentIds, inMrFrame
            ):
                raise RuntimeError(f"Exporting the segments of '{segmentationNode.GetName()}' to a labelmap failed")
            # in the MR's own RAS; empty outside
            labels = volume_from_node(inMrFrame, "exported labelmap", to_world=np.eye(4)).padded(1)
        finally:
            remove_nodes_added_since(slicer.mrmlScene, scratch)
        onUs = warp_volume(labels, displacementLocal, interpolation="nearest")  # on the field's grid: the US's

        labelmap = slicer.mrmlScene.AddNewNodeByClass(
            "vtkMRMLLabelMapVolumeNode", f"{segmentationNode.GetName()} labelmap on US"
        )
        labelmap.CreateDefaultDisplayNodes()
        localMatrix = vtk.vtkMatrix4x4()
        fixedVolumeNode.GetIJKToRASMatrix(localMatrix)
        labelmap.SetAndObserveTransformNodeID(fixedVolumeNode.GetTransformNodeID())
        update_volume_node(labelmap, onUs.with_array(np.rint(onUs.array).astype(np.int16)))
        labelmap.SetIJKToRASMatrix(localMatrix)  # same grid as the US node, under the same parent
        return labelmap

    # ---------------------------------------------------------------- live ultrasound
    LIVE_POLL_MS = 20  # how often the main thread takes the worker's results

    def startLiveUpdate(self, movingVolumeNode, fixedVolumeNode, outputTransformNode, onUpdate=None, **options) -> None:
        """Re-register into ``outputTransformNode`` whenever the fixed volume's voxels change.

        ``options``: ``modelPath``, ``device``, ``initialAlignment`` and ``applyToMoving``, as for :meth:`register`.
        The network runs in a worker thread; a frame that arrives while it runs
        replaces any frame still waiting (the latest wins, none is processed
        twice). Results are put into MRML on the main thread by
        :meth:`processLiveResults`, which a ``QTimer`` calls every
        ``LIVE_POLL_MS`` in Slicer (callers without a Qt event loop call it
        themselves, or :meth:`waitForLiveResults`). ``onUpdate(status)`` is
        called after each result. ``liveStatistics`` counts frames, drops,
        latencies and the main thread's time per registration.
        """
        from LabelRegLib.live import LatestFrameWorker

        unknown = set(options) - {"modelPath", "device", "initialAlignment", "applyToMoving"}
        if unknown:
            raise TypeError(f"startLiveUpdate() got unknown options {sorted(unknown)}")
        self.stopLiveUpdate()
        moving, frameToWorld, frameID = self._movingInput(movingVolumeNode, outputTransformNode)
        # the model is loaded here, before the first frame
        registrar = self.modelCatalogue().registrar(options.get("modelPath"), options.get("device", "auto"))
        alignment = options.get("initialAlignment")
        worker = LatestFrameWorker(lambda fixed: registrar.register(moving, fixed, alignment, warn=False))
        live = {
            "nodes": (movingVolumeNode, fixedVolumeNode, outputTransformNode),
            "frame": (frameToWorld, frameID),
            "applyToMoving": options.get("applyToMoving", True),
            "onUpdate": onUpdate,
            "worker": worker,
            "stamp": self._imageStamp(fixedVolumeNode),
            "observers": [
                fixedVolumeNode.AddObserver(event, self._onFixedModified)
                for event in (slicer.vtkMRMLVolumeNode.ImageDataModifiedEvent, vtk.vtkCommand.ModifiedEvent)
            ],
            "timer": self._pollTimer(self.LIVE_POLL_MS),
            "mainThreadSeconds": {},  # frame id -> seconds spent on the main thread for it
        }
        self._live = live
        self.liveStatistics = {"frames": 0, "processed": 0, "dropped": 0, "latency_s": [], "main_thread_s": []}

    def stopLiveUpdate(self) -> None:
        live, self._live = self._live, None
        if live:
            for tag in live["observers"]:
                live["nodes"][1].RemoveObserver(tag)
            if live["timer"] is not None:
                live["timer"].stop()
            live["worker"].stop()
            self.liveStatistics.update(
                frames=live["worker"].submitted, processed=live["worker"].processed, dropped=live["worker"].dropped
            )

    def _pollTimer(self, intervalMs: int):
        """A Qt timer calling :meth:`processLiveResults` on the main thread; None without a Qt event loop."""
        try:
            import qt

            timer = qt.QTimer()
        except (ImportError, AttributeError):
            return None
        timer.setInterval(intervalMs)
        timer.connect("timeout()", self.processLiveResults)
        timer.start()
        return timer

    @staticmethod
    def _imageStamp(volumeNode) -> int:
        """Changes whenever the voxels change (image data or its scalars array were modified)."""
        image = volumeNode.GetImageData()
        if image is None:
            return -1
        scalars = image.GetPointData().GetScalars()
        return max(image.GetMTime(), scalars.GetMTime() if scalars is not None else 0)

    def _onFixedModified(self, caller, event) -> None:
        """A new frame (main thread): copy the US voxels and hand them to the worker."""
        live = self._live
        if live is None:
            return
        stamp = self._imageStamp(caller)
        if stamp == live["stamp"]:
            return  # a rename or display change: the voxels are the same
        started = time.perf_counter()
        live["stamp"] = stamp
        try:
            fixed = self._fixedInput(caller)
        except Exception as error:
            self._liveFailed(error)
            return
        frameId = live["worker"].submit(fixed)
        live["mainThreadSeconds"][frameId] = time.perf_counter() - started

    def processLiveResults(self) -> int:
        """Put the worker's finished registrations into MRML (main thread); returns how many were applied."""
        live = self._live
        if live is None:
            return 0
        applied = 0
        for frame in live["worker"].poll():
            if frame.error is not None:
                self._liveFailed(frame.error)
                return applied
            started = time.perf_counter()
            try:
                self._apply(frame.value, frame.submitted_s, live["nodes"], live["frame"], live["applyToMoving"])
            except Exception as error:
                self._liveFailed(error)
                return applied
            applied += 1
            # the copies of this frame and of the frames dropped before it, and this MRML update
            copies = live["mainThreadSeconds"]
            mainThread = (
                sum(copies.pop(n) for n in [n for n in copies if n <= frame.frame_id]) + time.perf_counter() - started
            )
            stats = self.liveStatistics
            stats["latency_s"].append(time.perf_counter() - frame.submitted_s)
            stats["main_thread_s"].append(mainThread)
            stats.update(
                frames=live["worker"].submitted, processed=live["worker"].processed, dropped=live["worker"].dropped
            )
            self.lastStatus += _("; live latency {latency:.2f} s").format(latency=stats["latency_s"][-1])
            if live["onUpdate"]:
                live["onUpdate"](self.lastStatus)
        return applied

    def waitForLiveResults(self, timeout: float = 60.0) -> bool:
        """Process results until no frame is waiting or running (for batch use and tests); False on time-out."""
        deadline = time.monotonic() + timeout
        while self._live is not None and time.monotonic() < deadline:
            idle = self._live["worker"].idle
            self.processLiveResults()
            if idle:
                return True
            time.sleep(0.005)
        return self._live is None

    def _liveFailed(self, error) -> None:
        onUpdate = self._live["onUpdate"] if self._live else None
        self.lastStatus = _("Live update failed: {error}").format(error=error)
        logging.error(self.lastStatus)
        self.stopLiveUpdate()
        if onUpdate:
            onUpdate(self.lastStatus)


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
        LabelRegLogic.runSelfTests(self, "LabelReg", self.test_RegisterPhantom, self.test_LiveUpdate)

    def _loadPhantom(self, seed: int = 1001):
        from LabelRegLib.mrml import add_phantom_nodes
        from LabelRegLib.phantom import make_phantom_pair

        pair = make_phantom_pair(seed)
        return (pair, *add_phantom_nodes(slicer.mrmlScene, pair, prefix="LabelRegTest "))

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
        self.delayDisplay(
            f"Gland Dice {dice(before.array, target.array):.3f} -> {dice(after.array, target.array):.3f}; {logic.lastStatus}"
        )

    def test_LiveUpdate(self):
        import numpy as np

        self.delayDisplay("Live update: the US changes, the transform follows")
        pair, moving, fixed, _segmentation = self._loadPhantom(1002)
        logic = LabelRegLogic()
        transform = logic.register(moving, fixed)
        before = logic.registrationCount
        logic.startLiveUpdate(moving, fixed, transform)
        try:
            for shift in (1, 2, 3):
                slicer.util.updateVolumeFromArray(fixed, np.roll(pair.fixed_image.array, shift, axis=2))
                slicer.app.processEvents()
            self.assertTrue(logic.waitForLiveResults(timeout=120), "the worker finished")
        finally:
            logic.stopLiveUpdate()
        stats = logic.liveStatistics
        self.assertEqual(stats["frames"], 3)
        # each frame registered once, or dropped for a newer one
        self.assertEqual(stats["processed"] + stats["dropped"], 3)
        self.assertEqual(logic.registrationCount - before, stats["processed"])
        self.assertEqual(moving.GetTransformNodeID(), transform.GetID())
        self.delayDisplay(logic.lastStatus)
