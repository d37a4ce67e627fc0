"""The bodies of the two modules' Slicer self-tests (``LabelRegTest``, ``LabelRegTrainingTest``).

Each takes the test case (for ``delayDisplay`` and the assertions of
``unittest``) and the module's logic class, and works on ``slicer.mrmlScene``
with the built-in phantom: they run in a real Slicer, and under pytest on
slicer-core (``Testing/test_slicer_*.py`` run them too).
"""

from __future__ import annotations

import os
import time

import numpy as np


class SceneGuard:
    """The nodes of the scene before a test, and a scratch folder: :meth:`restore` removes what the test added."""

    def __init__(self, scene):
        import tempfile

        from .mrml import node_ids

        self.scene = scene
        self.nodes = node_ids(scene)
        self.folder = tempfile.mkdtemp(prefix="labelreg-self-test-")

    def restore(self) -> None:
        import shutil

        from .mrml import remove_nodes_added_since

        remove_nodes_added_since(self.scene, self.nodes)
        shutil.rmtree(self.folder, ignore_errors=True)


def phantom_nodes(scene, seed: int = 1001) -> tuple:
    """``(pair, MR node, US node, MR gland segmentation)`` of a phantom pair added to ``scene``."""
    from ..data.phantom import make_phantom_pair
    from .mrml import add_phantom_nodes

    pair = make_phantom_pair(seed)
    return (pair, *add_phantom_nodes(scene, pair, prefix="LabelRegTest "))


def register_phantom(test, logicClass) -> None:
    """Register a phantom pair with the default model: the gland labelmap on the US overlaps the true gland
    better than the centres-aligned start, and its centroid is closer."""
    import slicer

    from ..core.metrics import dice, tre_mm
    from ..core.spatial import initial_alignment, resample_volume
    from .mrml import volume_from_node

    test.delayDisplay("Registering a phantom MR/US pair")
    pair, moving, fixed, segmentation = phantom_nodes(slicer.mrmlScene)
    logic = logicClass()
    transform = logic.register(moving, fixed, segmentationNode=segmentation, createLabelmap=True)
    test.assertEqual(moving.GetTransformNodeID(), transform.GetID())
    after = volume_from_node(logic.lastLabelmapNode, "exported labelmap")
    after = after.with_array((after.array > 0).astype(np.float32))
    target = pair.fixed_labels[0]
    start = initial_alignment(pair.moving_image, pair.fixed_image, "centers")
    before = resample_volume(pair.moving_labels[0], target.shape, target.ijk_to_ras, start)
    test.assertTrue(after.same_geometry(target), "the labelmap is on the US grid")
    test.assertGreater(dice(after.array, target.array), dice(before.array, target.array))
    test.assertLess(tre_mm(after, target), tre_mm(before, target))
    test.delayDisplay(
        f"Gland Dice {dice(before.array, target.array):.3f} -> {dice(after.array, target.array):.3f}; {logic.lastStatus}"
    )


def live_update(test, logicClass) -> None:
    """Live mode: three US frames, each registered once or dropped for a newer one, into the same transform."""
    import slicer

    test.delayDisplay("Live update: the US changes, the transform follows")
    pair, moving, fixed, _segmentation = phantom_nodes(slicer.mrmlScene, 1002)
    logic = logicClass()
    transform = logic.register(moving, fixed)
    before = logic.registrationCount
    logic.startLiveUpdate(moving, fixed, transform)
    try:
        for shift in (1, 2, 3):
            slicer.util.updateVolumeFromArray(fixed, np.roll(pair.fixed_image.array, shift, axis=2))
            slicer.app.processEvents()
        test.assertTrue(logic.waitForLiveResults(timeout=120), "the worker finished")
    finally:
        logic.stopLiveUpdate()
    stats = logic.liveStatistics
    test.assertEqual(stats["frames"], 3)
    test.assertEqual(stats["processed"] + stats["dropped"], 3)  # each frame registered once, or dropped
    test.assertEqual(logic.registrationCount - before, stats["processed"])
    test.assertEqual(moving.GetTransformNodeID(), transform.GetID())
    test.delayDisplay(logic.lastStatus)


def wait_for(logic, condition, timeout: float = 300.0) -> bool:
    """Poll a training logic until ``condition()`` (letting Slicer process events); False on time-out."""
    import slicer

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logic.poll()
        if condition():
            return True
        slicer.app.processEvents()
        time.sleep(0.2)
    return False


def train_stop_resume_register(test, trainingLogicClass, registrationLogicClass, folder: str) -> None:
    """Train a tiny network on phantoms, stop it, resume it, finish it, and register with the model."""
    import slicer

    from ..data.phantom import make_phantom_pair, write_phantom_folder
    from .mrml import update_volume_node
    from .training_panel import can_resume

    test.delayDisplay("Training a tiny network on phantom data")
    data = os.path.join(folder, "data")
    write_phantom_folder(data, n_pairs=4)
    logic = trainingLogicClass()
    p = logic.getParameterNode()
    p.dataFolder, p.outputModel = data, os.path.join(folder, "tiny.pt")
    p.numChannels, p.iterations, p.minibatchSize, p.validationFraction, p.device = 4, 6, 2, 0.25, "cpu"
    test.assertEqual(logic.summariseData(p)[1], [])
    logic.start(p)
    test.assertTrue(
        wait_for(logic, lambda: can_resume(p.outputModel) and logic.progress.get("step", 0) >= 2),
        "a checkpoint was written",
    )
    logic.stop()
    test.assertEqual(logic.state, "stopped")
    stoppedAt = logic.progress["step"]
    logic.start(p, resume=True)
    test.assertTrue(wait_for(logic, lambda: not logic.isRunning and logic.state in ("finished", "crashed")))
    test.assertEqual(logic.state, "finished", p.status)
    test.assertGreater(logic.progress["step"], stoppedAt - 1)

    pair = make_phantom_pair(1001)
    moving = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MR")
    fixed = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "US")
    update_volume_node(moving, pair.moving_image)
    update_volume_node(fixed, pair.fixed_image)
    test.assertTrue(os.path.realpath(p.outputModel) in registrationLogicClass.modelCatalogue().extra)
    transform = registrationLogicClass().register(moving, fixed, modelPath=p.outputModel, device="cpu")
    test.assertIsNotNone(transform)
    test.delayDisplay("Trained, stopped, resumed, finished and registered")


def run_self_tests(test, moduleName: str, *tests) -> None:
    """Run ``tests`` between ``test.setUp()`` and ``test.tearDown()``; skipped, saying so, where torch or
    nibabel is missing (e.g. on the extension build machines: nothing to register or train with)."""
    from .dependencies import missing_dependencies

    missing = missing_dependencies()
    if missing:
        test.delayDisplay(f"{moduleName} self-test skipped: {', '.join(missing)} not installed")
        return
    test.setUp()
    try:
        for run in tests:
            run()
    finally:
        test.tearDown()
